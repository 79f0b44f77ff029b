// Users: per-user spend, volume, latency, error rate, models, first and last seen (server-paged).

import { analytics } from "../api.js";
import { navigate } from "../filter.js";
import { h, table, fmtInt, fmtCost, fmtMs, fmtPct, fmtTime, loading } from "../ui.js";

const PAGE = 50;

export default async function users(root, filter, params, ctx) {
  const sort = params.get("sort") || "cost";
  const offset = Number(params.get("offset") || 0);
  const sortSel = h("select", { onchange: () => navigate("users", filter, { sort: sortSel.value }) },
    [["cost", "Cost"], ["requests", "Requests"], ["error_rate", "Error rate"], ["last_seen", "Last seen"]]
      .map(([v, t]) => h("option", { value: v, selected: v === sort }, t)));
  const panel = h("div.panel", h("div.run-row", h("label.muted", "Sort by ", sortSel)), loading());
  root.append(panel);
  const r = await analytics("users", filter, { sort, limit: PAGE, offset });
  if (!ctx.isCurrent()) return;
  panel.lastChild.remove();
  const cols = [
    { label: "User", key: "user_id" },
    { label: "Requests", num: true, fmt: (u) => fmtInt(u.requests) },
    { label: "Cost", num: true, fmt: (u) => fmtCost(u.cost_usd) },
    { label: "Avg latency", num: true, fmt: (u) => fmtMs(u.avg_latency_ms) },
    { label: "Error rate", num: true, fmt: (u) => fmtPct(u.error_rate) },
    { label: "Models used", fmt: (u) => (u.models_used || []).join(", ") },
    { label: "First seen", fmt: (u) => fmtTime(u.first_seen) },
    { label: "Last seen", fmt: (u) => fmtTime(u.last_seen) },
  ];
  panel.append(table(cols, r.users, (u) => navigate("requests", filter.with({ user: u.user_id })), "users-table"));
  const pager = h("div.pager");
  if (offset > 0) pager.append(h("button", { onclick: () => navigate("users", filter, { sort, offset: String(Math.max(0, offset - PAGE)) }) }, "← Previous"));
  if (r.has_more) pager.append(h("button", { onclick: () => navigate("users", filter, { sort, offset: String(offset + PAGE) }) }, "Next →"));
  pager.append(h("span.muted", `Users ${offset + 1}–${offset + r.users.length}`));
  panel.append(pager);
}
