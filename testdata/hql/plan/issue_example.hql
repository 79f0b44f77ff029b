requests
| where created_at > ago(7d) and properties.Environment == "production" and status >= 400
| summarize requests = count(), cost = sum(cost_usd), p95 = percentile(latency_ms, 95)
    by model, day = bin(created_at, 1d)
| sort by cost desc
| take 20
