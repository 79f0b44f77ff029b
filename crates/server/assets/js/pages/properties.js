// Properties: the custom property keys, then the top values of one key.

import { analytics } from "../api.js";
import { navigate } from "../filter.js";
import { h, table, fmtInt, fmtCost, loading } from "../ui.js";

export default async function properties(root, filter, params, ctx) {
  const key = params.get("key");
  const left = h("div.panel", h("h2", "Keys"), loading());
  const right = h("div.panel", h("h2", key ? `Values of ${key}` : "Values"), key ? loading() : h("div.empty", "Pick a key."));
  root.append(h("div.grid.two", left, right));
  const keys = await analytics("properties", filter, { limit: 200 });
  if (!ctx.isCurrent()) return;
  left.lastChild.replaceWith(table(
    [{ label: "Key", key: "key" }, { label: "Requests", num: true, fmt: (r) => fmtInt(r.requests) }],
    keys.keys, (r) => navigate("properties", filter, { key: r.key }), "property-keys"));
  if (!key) return;
  const vals = await analytics(`properties/${encodeURIComponent(key)}`, filter, { limit: 100 });
  if (!ctx.isCurrent()) return;
  right.lastChild.replaceWith(table(
    [
      { label: "Value", key: "value" },
      { label: "Requests", num: true, fmt: (r) => fmtInt(r.requests) },
      { label: "Errors", num: true, fmt: (r) => fmtInt(r.errors) },
      { label: "Cost", num: true, fmt: (r) => fmtCost(r.cost_usd) },
    ],
    vals.values, (r) => navigate("requests", filter.withProperty(key, r.value)), "property-values"));
}
