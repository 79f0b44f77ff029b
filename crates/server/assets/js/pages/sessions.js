// Sessions: the list (most recent first) and one session as a tree with a timeline.

import { analytics } from "../api.js";
import { navigate } from "../filter.js";
import { h, table, fmtInt, fmtCost, fmtMs, fmtTime, loading } from "../ui.js";
import { openRequest } from "./requests.js";

const PAGE = 50;

export default async function sessions(root, filter, params, ctx) {
  const id = params.get("session_view");
  if (id) return tree(root, filter, id, ctx);
  const offset = Number(params.get("offset") || 0);
  const panel = h("div.panel", loading());
  root.append(panel);
  const r = await analytics("sessions", filter, { limit: PAGE, offset });
  if (!ctx.isCurrent()) return;
  const cols = [
    { label: "Session", fmt: (s) => s.session_name || s.session_id },
    { label: "Started", fmt: (s) => fmtTime(s.started) },
    { label: "Duration", num: true, fmt: (s) => fmtMs(s.duration_ms) },
    { label: "Requests", num: true, fmt: (s) => fmtInt(s.requests) },
    { label: "Errors", num: true, fmt: (s) => fmtInt(s.errors) },
    { label: "Users", num: true, fmt: (s) => fmtInt(s.users) },
    { label: "Cost", num: true, fmt: (s) => fmtCost(s.cost_usd) },
    { label: "Id", fmt: (s) => h("span.mono", s.session_id) },
  ];
  const pager = h("div.pager");
  if (offset > 0) pager.append(h("button", { onclick: () => navigate("sessions", filter, { offset: String(Math.max(0, offset - PAGE)) }) }, "← Previous"));
  if (r.has_more) pager.append(h("button", { onclick: () => navigate("sessions", filter, { offset: String(offset + PAGE) }) }, "Next →"));
  panel.replaceChildren(table(cols, r.sessions, (s) => navigate("sessions", filter, { session_view: s.session_id }), "sessions-table"), pager);
}

async function tree(root, filter, id, ctx) {
  const panel = h("div.panel", loading());
  root.append(h("p", h("a", { href: "#", onclick: (e) => { e.preventDefault(); navigate("sessions", filter); } }, "← All sessions")), panel);
  const r = await analytics(`sessions/${encodeURIComponent(id)}`, filter);
  if (!ctx.isCurrent()) return;
  const t = r.tree;
  const traces = r.traces || [];
  // One time axis for the request tree and the span trees.
  const times = [];
  const collect = (n) => { for (const k of ["start", "end"]) if (n[k]) times.push(Date.parse(n[k])); (n.children || []).forEach(collect); };
  collect(t);
  traces.forEach(collect);
  const t0 = times.length ? Math.min(...times) : 0;
  const span = Math.max(1, (times.length ? Math.max(...times) : 1) - t0);
  const track = (c) => {
    const start = Date.parse(c.start) - t0;
    const end = Date.parse(c.end || c.start) - t0;
    return h("div.track", h("span", { style: { left: `${(start / span) * 100}%`, width: `${Math.max(0.3, ((end - start) / span) * 100)}%` } }));
  };
  const rows = [];
  const walk = (node, depth) => {
    for (const c of node.children || []) {
      const isReq = c.kind === "request";
      const label = isReq ? `${c.model} · ${c.status}` : `${c.name}/`;
      const row = h(`div.tree-row.${isReq ? "req" : "path"}${c.errors > 0 && isReq ? ".bad" : ""}`,
        { "data-testid": isReq ? "tree-request" : "tree-path", onclick: isReq ? () => openRequest(ctx.drawer, c.request_id, c.start, filter) : null },
        h("div.name", { style: { paddingLeft: `${depth * 18}px` }, title: isReq ? c.request_id : c.path }, isReq ? "● " : "▾ ", label),
        track(c),
        h("div.num", isReq ? fmtMs(c.latency_ms) : `${fmtInt(c.request_count)} req`),
        h("div.num", fmtCost(c.cost_usd)));
      rows.push(row);
      if (!isReq) walk(c, depth + 1);
    }
  };
  walk(t, 0);
  // OpenTelemetry spans: one tree per trace; LLM spans open their request.
  const spanRows = [];
  const walkSpans = (nodes, depth) => {
    for (const c of nodes) {
      const llm = Boolean(c.request_id);
      const bad = c.status === "error" || (c.http_status || 0) >= 400;
      const label = llm && c.model ? `${c.name} · ${c.model}` : c.name;
      spanRows.push(h(`div.tree-row.${llm ? "req" : "path"}${bad ? ".bad" : ""}`,
        { "data-testid": llm ? "span-llm" : "span-node", onclick: llm ? () => openRequest(ctx.drawer, c.request_id, c.start, filter) : null },
        h("div.name", { style: { paddingLeft: `${depth * 18}px` }, title: `${c.span_kind || ""} span ${c.span_id}${c.status_message ? ` — ${c.status_message}` : ""}` },
          llm ? "● " : "◆ ", label, c.service_name ? h("span.muted", ` ${c.service_name}`) : ""),
        track(c),
        h("div.num", fmtMs(c.duration_ms)),
        h("div.num", llm ? fmtCost(c.cost_usd) : "")));
      walkSpans(c.children || [], depth + 1);
    }
  };
  walkSpans(traces, 0);
  const parts = [
    h("h2", r.session_name || "Session", " ", h("span.muted.mono", r.session_id)),
    h("p.muted", `${fmtInt(t.request_count)} requests · ${fmtMs(t.duration_ms)} · ${fmtCost(t.cost_usd)}${t.errors ? ` · ${t.errors} errors` : ""}${r.truncated ? " · showing the first 10,000 requests" : ""}`),
    h("div", { "data-testid": "session-tree" }, rows),
  ];
  if (spanRows.length) {
    parts.push(
      h("h3", "Traces ", h("span.muted", `(${fmtInt(spanRows.length)} OpenTelemetry spans${r.spans_truncated ? ", the first 10,000" : ""})`)),
      h("div", { "data-testid": "session-spans" }, spanRows));
  }
  panel.replaceChildren(...parts);
}
