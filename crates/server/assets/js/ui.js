// Small DOM and formatting helpers shared by the pages.

/** h("div.cls", {attrs}, ...children): builds an element. */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) { el.replaceChildren(); return el; }

const nf = new Intl.NumberFormat("en-US");
export function fmtInt(v) { return v === null || v === undefined ? "–" : nf.format(Math.round(Number(v))); }
export function fmtCompact(v) {
  if (v === null || v === undefined) return "–";
  return new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(Number(v));
}
export function fmtCost(v) {
  if (v === null || v === undefined || v === "") return "–";
  const n = Number(v);
  if (n === 0) return "$0";
  if (Math.abs(n) < 0.01) return "$" + n.toPrecision(3);
  return "$" + n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}
export function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  const n = Number(v);
  return n >= 10000 ? (n / 1000).toFixed(1) + " s" : Math.round(n) + " ms";
}
export function fmtPct(v) { return v === null || v === undefined ? "–" : (Number(v) * 100).toFixed(2) + "%"; }
export function fmtTime(s) {
  if (!s) return "–";
  const d = new Date(s);
  return d.toLocaleString("en-GB", { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: "UTC" }) + " UTC";
}

export function statusBadge(s) {
  if (s === null || s === undefined) return h("span.status", "–");
  return h(`span.status.${s >= 400 ? "bad" : "ok"}`, String(s));
}

/**
 * A table: cols = [{key, label, num, fmt(row) -> node|string}], onRow(row) makes rows clickable.
 */
export function table(cols, rows, onRow, testid) {
  if (!rows.length) return h("div.empty", "No data for these filters and this time range.");
  const head = h("tr", cols.map((c) => h(c.num ? "th.num" : "th", c.label)));
  const body = rows.map((r) =>
    h(onRow ? "tr.click" : "tr", { onclick: onRow ? () => onRow(r) : null },
      cols.map((c) => {
        const v = c.fmt ? c.fmt(r) : r[c.key];
        const td = h(c.num ? "td.num" : "td", v === null || v === undefined ? "–" : v);
        if (typeof v === "string") td.title = v;
        return td;
      })));
  return h("div.table-wrap", h("table.data", { "data-testid": testid }, h("thead", head), h("tbody", body)));
}

export function card(label, value, sub, testid) {
  return h("div.card", { "data-testid": testid }, h("div.label", label), h("div.value", value), sub ? h("div.sub", sub) : null);
}

export function errorBox(err) {
  return h("div.error-box", { "data-testid": "error" }, err.message || String(err));
}

export function loading() { return h("div.loading", "Loading…"); }

/** Syntax-highlighted, indented JSON. */
export function prettyJson(value) {
  const pre = h("pre.json");
  const text = JSON.stringify(value, null, 2);
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    pre.append(text.slice(last, m.index));
    const cls = m[1] ? (m[2] ? "k" : "s") : m[3] ? "b" : "n";
    pre.append(h(`span.${cls}`, m[1] || m[0]));
    if (m[2]) pre.append(m[2]);
    last = m.index + m[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

/** A body as stored: JSON pretty-printed, SSE streams as their events, anything else as text. */
export function bodyView(raw) {
  if (raw === null || raw === undefined || raw === "") return h("div.muted", "Not recorded.");
  try { return prettyJson(JSON.parse(raw)); } catch { /* not JSON */ }
  if (/^(data|event):/m.test(raw)) {
    const events = raw.split(/\n\n+/).map((e) => e.replace(/^data:\s*/gm, "")).filter(Boolean)
      .map((e) => { try { return JSON.parse(e); } catch { return e; } });
    return prettyJson(events);
  }
  return h("pre.json", raw);
}

/** A uPlot time-series chart. series = [{label, values, color}]; returns the container. */
export function timeChart(times, series, { height = 220, fmt = (v) => v } = {}) {
  const el = h("div.chart");
  const make = () => {
    const width = Math.max(300, el.clientWidth || 600);
    const opts = {
      width, height,
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.6, fill: s.fill, value: (u, v) => (v === null ? "–" : fmt(v)) }))],
      axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => fmt(v)) }],
      scales: { x: { time: true } },
      cursor: { drag: { x: false, y: false } },
    };
    el.replaceChildren();
    // eslint-disable-next-line no-undef
    new uPlot(opts, [times, ...series.map((s) => s.values)], el);
  };
  requestAnimationFrame(make);
  return el;
}
