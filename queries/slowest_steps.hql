// The slowest non-LLM steps of traced workflows (OpenTelemetry spans: tools, tasks, HTTP calls)
// and how often each one fails.
spans
| where created_at > ago(7d) and not(is_llm)
| summarize calls = count(), errors = countif(status == "error"), p95_ms = p95(duration_ms) by name
| sort by p95_ms desc, name asc
| take 20
