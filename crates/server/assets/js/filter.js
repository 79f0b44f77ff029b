// The global filter (time range + model/provider/user/status/session/properties), kept in the
// URL hash (`#/page?range=7d&model=gpt-4o&property.feature=chat`) so views can be shared.

import { analytics } from "./api.js";
import { h, clear } from "./ui.js";

export const RANGES = [["1h", "Last hour"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["90d", "Last 90 days"]];
const SINGLE = ["model", "provider", "user", "status", "session"];

export class Filter {
  constructor(params) {
    this.range = params.get("range") || "";
    this.from = params.get("from") || "";
    this.to = params.get("to") || "";
    if (!this.range && !this.from) this.range = "24h";
    for (const k of SINGLE) this[k] = params.get(k) || "";
    this.props = [];
    for (const [k, v] of params) if (k.startsWith("property.")) this.props.push([k.slice(9), v]);
  }

  /** Query-string parameters for the API (and the URL). */
  toParams() {
    const q = new URLSearchParams();
    if (this.from) { q.set("from", this.from); if (this.to) q.set("to", this.to); } else q.set("range", this.range);
    for (const k of SINGLE) if (this[k]) q.set(k, this[k]);
    for (const [k, v] of this.props) q.append(`property.${k}`, v);
    return q;
  }

  with(changes) {
    const f = Object.assign(Object.create(Filter.prototype), this, { props: [...this.props] });
    Object.assign(f, changes);
    return f;
  }

  withProperty(k, v) { const f = this.with({}); f.props = f.props.filter(([a]) => a !== k).concat([[k, v]]); return f; }
}

export function currentRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, query] = hash.split("?");
  return { page: page || "overview", params: new URLSearchParams(query || "") };
}

export function navigate(page, filter, extra = {}) {
  const q = filter.toParams();
  for (const [k, v] of Object.entries(extra)) if (v) q.set(k, v);
  location.hash = `#/${page}?${q}`;
}

let modelOptions = null;

/** Renders the filter bar for the page. */
export function renderFilterBar(el, page, filter) {
  clear(el);
  const go = (f) => navigate(page, f);
  const select = (label, key, options, testid) => {
    const s = h("select", { "data-testid": testid, onchange: () => go(filter.with({ [key]: s.value })) },
      options.map(([v, t]) => h("option", { value: v, selected: v === filter[key] }, t)));
    return h("label", label, s);
  };
  const range = h("select", { "data-testid": "range", onchange: () => go(filter.with({ range: range.value, from: "", to: "" })) },
    RANGES.map(([v, t]) => h("option", { value: v, selected: !filter.from && v === filter.range }, t)),
    filter.from ? h("option", { selected: true, value: "" }, "Custom range") : null);
  el.append(h("label", "Time", range));
  const models = [["", "All models"]];
  if (filter.model) models.push([filter.model, filter.model]);
  const modelSel = select("Model", "model", models, "filter-model");
  el.append(modelSel);
  el.append(select("Status", "status", [["", "Any"], ["ok", "Success (<400)"], ["error", "Errors (≥400)"], ["2xx", "2xx"], ["4xx", "4xx"], ["5xx", "5xx"]], "filter-status"));
  // Property picker: key, then one of its top values.
  const keySel = h("select", { "data-testid": "prop-key" }, h("option", { value: "" }, "Property…"));
  const valSel = h("select", { "data-testid": "prop-value", disabled: true }, h("option", { value: "" }, "value…"));
  keySel.onchange = async () => {
    clear(valSel).append(h("option", { value: "" }, "value…"));
    valSel.disabled = !keySel.value;
    if (!keySel.value) return;
    const r = await analytics(`properties/${encodeURIComponent(keySel.value)}`, filter, { limit: 50 });
    for (const v of r.values) valSel.append(h("option", { value: v.value }, `${v.value} (${v.requests})`));
  };
  valSel.onchange = () => { if (valSel.value) go(filter.withProperty(keySel.value, valSel.value)); };
  el.append(h("label", "Filter", keySel, valSel));
  const userIn = h("input", { placeholder: "user id", value: filter.user, size: 12, "data-testid": "filter-user" });
  userIn.onchange = () => go(filter.with({ user: userIn.value.trim() }));
  el.append(h("label", "User", userIn));
  el.append(h("div.spacer"));
  const chips = h("div.chips", { "data-testid": "chips" });
  for (const k of ["provider", "session"]) {
    if (filter[k]) chips.append(h("span.chip", `${k}: ${filter[k]}`, h("button", { title: "Remove", onclick: () => go(filter.with({ [k]: "" })) }, "×")));
  }
  for (const [k, v] of filter.props) {
    chips.append(h("span.chip", `${k} = ${v}`, h("button", { title: "Remove", onclick: () => { const f = filter.with({}); f.props = f.props.filter(([a]) => a !== k); go(f); } }, "×")));
  }
  el.append(chips);
  // Fill the pickers from the server (top models, property keys) without blocking the page.
  const sel = modelSel.querySelector("select");
  const fillModels = (list) => { for (const m of list) if (m !== filter.model) sel.append(h("option", { value: m }, m)); };
  // The model list is loaded when the picker is first used (pages load only their own data).
  let modelsLoaded = null;
  const loadModels = () => {
    if (modelOptions && modelOptions.key === filter.range + filter.from) {
      modelsLoaded = modelsLoaded || Promise.resolve(fillModels(modelOptions.list));
    }
    modelsLoaded = modelsLoaded || analytics("breakdown", filter.with({ model: "" }), { by: "model", top: 50 }).then((r) => {
      const list = r.groups.map((g) => g.key).filter(Boolean);
      modelOptions = { key: filter.range + filter.from, list };
      fillModels(list);
    }).catch(() => {});
  };
  sel.addEventListener("focus", loadModels);
  sel.addEventListener("mousedown", loadModels);
  // Property keys scan the properties map: load them when the picker is first used.
  let keysLoaded = null;
  const loadKeys = () => {
    keysLoaded = keysLoaded || analytics("properties", filter, { limit: 50 }).then((r) => {
      for (const k of r.keys) keySel.append(h("option", { value: k.key }, k.key));
    }).catch(() => {});
    return keysLoaded;
  };
  keySel.addEventListener("focus", loadKeys);
  keySel.addEventListener("mousedown", loadKeys);
}
