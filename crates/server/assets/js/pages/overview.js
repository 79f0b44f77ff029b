// Overview: summary cards, time-series charts and the top models, providers and users.
// Two waves: the roll-up-backed numbers first (fast at any size), then what needs raw rows
// (latency percentiles, top users), each filling its placeholder when it arrives.

import { analytics } from "../api.js";
import { navigate } from "../filter.js";
import { h, card, table, timeChart, fmtInt, fmtCompact, fmtCost, fmtMs, fmtPct, loading, errorBox } from "../ui.js";

export default async function overview(root, filter, _params, ctx) {
  const wait = loading();
  root.append(wait);
  // Raw-row numbers start at once too; they render when they arrive.
  const slow = Promise.all([
    analytics("summary", filter, { percentiles: "only" }),
    analytics("timeseries", filter, { percentiles: "only" }),
    analytics("breakdown", filter, { by: "user", metric: "cost", top: 10 }),
  ]);
  slow.catch(() => {});
  const [s, ts, models, providers] = await Promise.all([
    analytics("summary", filter, { percentiles: "false" }),
    analytics("timeseries", filter, { percentiles: "false" }),
    analytics("breakdown", filter, { by: "model", metric: "cost", top: 10 }),
    analytics("breakdown", filter, { by: "provider", metric: "requests", top: 10 }),
  ]);
  if (!ctx.isCurrent()) return;
  wait.remove();
  const latencyCard = card("Latency p50", "…", "p95 … · p99 …", "card-latency");
  const ttftCard = card("Time to first token", "…", "p95 …", "card-ttft");
  root.append(h("div.cards",
    card("Requests", fmtInt(s.requests), `${fmtCompact(s.total_tokens)} tokens`, "card-requests"),
    card("Errors", fmtInt(s.errors), `${fmtPct(s.error_rate)} error rate`, "card-errors"),
    card("Cost", fmtCost(s.cost_usd), `${fmtCost(s.avg_cost_usd)} per request`, "card-cost"),
    latencyCard,
    ttftCard,
    card("Cache hit rate", fmtPct(s.cache_hit_rate), `${fmtCost(s.cost_saved_usd)} saved${s.cost_saved_estimated ? " (est.)" : ""}`, "card-cache"),
    card("Tokens", fmtCompact(s.total_tokens), `${fmtCompact(s.prompt_tokens)} in · ${fmtCompact(s.completion_tokens)} out`, "card-tokens"),
  ));
  const t = ts.points.map((p) => Date.parse(p.t) / 1000);
  const col = (points, k) => points.map((p) => p[k]);
  const bucket = ts.bucket_secs >= 3600 ? `${ts.bucket_secs / 3600} h` : `${ts.bucket_secs / 60} min`;
  const latencyPanel = h("div.panel", h("h2", "Latency percentiles"), loading());
  root.append(h("div.grid.two",
    h("div.panel", h("h2", `Requests and errors per ${bucket}`), timeChart(t, [
      { label: "requests", values: col(ts.points, "requests"), color: "#4f46e5", fill: "rgba(79,70,229,.08)" },
      { label: "errors", values: col(ts.points, "errors"), color: "#d92d20" },
    ], { fmt: fmtCompact })),
    h("div.panel", h("h2", `Cost per ${bucket}`), timeChart(t, [
      // Costs are exact decimal strings; the chart only needs their approximate value.
      { label: "cost", values: col(ts.points, "cost_usd").map((v) => (v === null ? null : Number(v))), color: "#079455", fill: "rgba(7,148,85,.08)" },
    ], { fmt: fmtCost })),
    latencyPanel,
    h("div.panel", h("h2", "Tokens"), timeChart(t, [
      { label: "tokens", values: col(ts.points, "total_tokens"), color: "#0e9384", fill: "rgba(14,147,132,.08)" },
    ], { fmt: fmtCompact })),
  ));
  const withOther = (b) => (b.other ? b.groups.concat([{ ...b.other, key: "(other)", other: true }]) : b.groups);
  const cols = (label) => [
    { label, fmt: (r) => (r.key === null ? "(none)" : String(r.key)) },
    { label: "Requests", num: true, fmt: (r) => fmtInt(r.requests) },
    { label: "Errors", num: true, fmt: (r) => (r.other ? fmtInt(r.errors) : fmtPct(r.error_rate)) },
    { label: "Tokens", num: true, fmt: (r) => fmtCompact(r.total_tokens) },
    { label: "Cost", num: true, fmt: (r) => fmtCost(r.cost_usd) },
  ];
  const drill = (key) => (r) => { if (!r.other && r.key !== null) navigate("requests", filter.with({ [key]: String(r.key) })); };
  const usersPanel = h("div.panel", h("h2", "Top users by cost"), loading());
  root.append(h("div.grid.two",
    h("div.panel", h("h2", "Models by cost"), table(cols("Model"), withOther(models), drill("model"), "by-model")),
    h("div.panel", h("h2", "Providers"), table(cols("Provider"), withOther(providers), drill("provider"), "by-provider")),
    usersPanel,
  ));
  let p;
  try {
    p = await slow;
  } catch (e) {
    if (ctx.isCurrent()) latencyPanel.append(errorBox(e));
    return;
  }
  if (!ctx.isCurrent()) return;
  const [sp, lp, usersTop] = p;
  latencyCard.replaceWith(card("Latency p50", fmtMs(sp.latency_p50_ms), `p95 ${fmtMs(sp.latency_p95_ms)} · p99 ${fmtMs(sp.latency_p99_ms)}`, "card-latency"));
  ttftCard.replaceWith(card("Time to first token", fmtMs(sp.ttft_p50_ms), `p95 ${fmtMs(sp.ttft_p95_ms)}`, "card-ttft"));
  latencyPanel.lastChild.replaceWith(timeChart(lp.points.map((x) => Date.parse(x.t) / 1000), [
    { label: "p50", values: col(lp.points, "latency_p50_ms"), color: "#4f46e5" },
    { label: "p95", values: col(lp.points, "latency_p95_ms"), color: "#dc6803" },
    { label: "p99", values: col(lp.points, "latency_p99_ms"), color: "#d92d20" },
  ], { fmt: fmtMs }));
  usersPanel.lastChild.replaceWith(table(cols("User"), withOther(usersTop), drill("user"), "by-user"));
}
