// Latency percentiles per model and provider (successful calls, last 24 hours).
requests
| where created_at > ago(1d) and status < 400
| summarize requests = count(), p50 = p50(latency_ms), p95 = p95(latency_ms), p99 = p99(latency_ms)
    by provider, model
| sort by p95 desc
