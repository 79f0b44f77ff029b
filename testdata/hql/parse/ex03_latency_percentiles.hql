// Which model is slow at p95? Latency percentiles by provider and model, last 24 hours.
requests
| where created_at > ago(24h) and status < 400
| summarize requests = count(), p50 = p50(latency_ms), p95 = p95(latency_ms), p99 = p99(latency_ms)
    by provider, model
| where requests >= 20
| sort by p95 desc
