// Requests: a cursor-paged table (newest first) and a detail drawer.

import { analytics, get } from "../api.js";
import { navigate } from "../filter.js";
import { h, table, statusBadge, fmtInt, fmtCost, fmtMs, fmtTime, prettyJson, bodyView, errorBox, loading } from "../ui.js";

const PAGE = 50;

export default async function requests(root, filter, params, ctx) {
  const holder = h("div.panel");
  root.append(holder);
  const rows = [];
  let cursor = null;
  const more = h("button", { "data-testid": "load-more" }, "Load more");
  const info = h("span.muted");
  const open = (r) => openRequest(ctx.drawer, r.request_id, r.created_at, filter);
  const cols = [
    { label: "Time", fmt: (r) => fmtTime(r.created_at) },
    { label: "Model", key: "model" },
    { label: "Provider", key: "provider" },
    { label: "Status", fmt: (r) => statusBadge(r.status) },
    { label: "Latency", num: true, fmt: (r) => fmtMs(r.latency_ms) },
    { label: "Tokens", num: true, fmt: (r) => fmtInt(r.total_tokens) },
    { label: "Cost", num: true, fmt: (r) => fmtCost(r.cost_usd) },
    { label: "User", key: "user_id" },
    { label: "Properties", fmt: (r) => Object.entries(r.properties || {}).map(([k, v]) => `${k}=${v}`).join(" ") },
  ];
  const draw = () => {
    holder.replaceChildren(table(cols, rows, open, "requests-table"), h("div.pager", cursor ? more : null, info));
    info.textContent = `${rows.length} request${rows.length === 1 ? "" : "s"} shown${cursor ? "" : " (end)"}`;
  };
  const load = async () => {
    more.disabled = true;
    const r = await analytics("requests", filter, { limit: PAGE, cursor });
    if (!ctx.isCurrent()) return;
    rows.push(...r.requests);
    cursor = r.next_cursor;
    more.disabled = false;
    draw();
  };
  more.onclick = () => load().catch((e) => holder.append(errorBox(e)));
  holder.append(loading());
  await load();
  const id = params.get("id");
  if (id) openRequest(ctx.drawer, id, params.get("at"), filter);
}

/** An exact decimal string without trailing zeros. */
const exact = (v) => (v === null || v === undefined ? "–" : String(v).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, ""));

/** Opens one request in the drawer. */
export async function openRequest(drawer, id, at, filter) {
  const body = h("div", loading());
  drawer.open(`Request ${id}`, body);
  let d;
  try {
    const q = at ? `?at=${encodeURIComponent(at)}` : "";
    d = await get(`/v1/analytics/requests/${encodeURIComponent(id)}${q}`);
  } catch (e) {
    body.replaceChildren(errorBox(e));
    return;
  }
  const r = d.request;
  const kv = (pairs) => h("dl.kv", pairs.filter(([, v]) => v !== undefined).map(([k, v]) => [h("dt", k), h("dd", v === null || v === "" ? "–" : v)]));
  const sessionLink = r.session_id
    ? h("a", { href: "#", onclick: (e) => { e.preventDefault(); navigate("sessions", filter || { toParams: () => new URLSearchParams() }, { session_view: r.session_id }); } }, r.session_id)
    : null;
  const bd = d.cost_breakdown;
  body.replaceChildren(
    h("div", { "data-testid": "request-detail" },
      kv([
        ["Request id", h("span.mono", r.request_id)],
        ["Time", fmtTime(r.created_at)],
        ["Completed", fmtTime(r.completed_at)],
        ["Status", h("span", statusBadge(r.status), r.error_type ? ` ${r.error_type}` : "")],
        ["Error", r.error_message],
        ["Provider / model", `${r.provider} / ${r.model}${r.response_model && r.response_model !== r.model ? ` (answered by ${r.response_model})` : ""}`],
        ["Path", r.path],
        ["Latency", fmtMs(r.latency_ms)],
        ["Time to first token", r.ttft_ms === null ? null : fmtMs(r.ttft_ms)],
        ["Streamed", r.stream ? "yes" : "no"],
        ["Source", r.source],
        ["User", r.user_id],
        ["Session", sessionLink],
        ["Session path", r.session_path],
        ["Trace / span", r.trace_id ? `${r.trace_id} / ${r.span_id || "–"}` : null],
        ["Gateway cache", r.cache_hit ? "hit" : "miss"],
        ["Answered by attempt", r.attempt ?? null],
        ["Fallback index", r.fallback_index ?? null],
        ["Cost saved (cache)", r.cost_saved_usd ?? null],
        ["Failed attempts", r.attempts === null || r.attempts === undefined ? null : (typeof r.attempts === "object" ? JSON.stringify(r.attempts) : String(r.attempts))],
      ]),
      h("h2", "Tokens and cost"),
      kv([
        ["Prompt tokens", fmtInt(r.prompt_tokens)],
        ["Cache read / write", `${fmtInt(r.cache_read_tokens)} / ${fmtInt(r.cache_write_tokens)}`],
        ["Completion tokens", fmtInt(r.completion_tokens)],
        ["Reasoning tokens", fmtInt(r.reasoning_tokens)],
        ["Total tokens", fmtInt(r.total_tokens)],
        ["Cost", r.price_known ? h("span.mono", `$${exact(r.cost_usd)}`) : "unknown (no price for this model)"],
        ["Cost saved", r.cost_saved_usd === undefined ? undefined : fmtCost(r.cost_saved_usd)],
        ...(bd ? Object.entries(bd).filter(([, v]) => v !== null && Number(v) !== 0).map(([k, v]) => [`  ${k.replace("_", " ")}`, h("span.mono", `$${v}`)]) : []),
      ]),
      h("details", { open: true }, h("summary", "Properties"), prettyJson(r.properties || {})),
      h("details", { open: true }, h("summary", "Request body"), h("div", { "data-testid": "request-body" }, bodyView(r.request_body))),
      h("details", { open: true }, h("summary", "Response body"), bodyView(r.response_body)),
      h("details", null, h("summary", "Upstream headers kept"), prettyJson(r.upstream_headers || {})),
    ),
  );
}
