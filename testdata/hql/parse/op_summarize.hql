requests
| summarize count(), sum(cost_usd), avg(latency_ms), p95(latency_ms), percentile(latency_ms, 99),
            errors = countif(status >= 400), dcount(user_id)
    by model, provider, properties.Environment, hour = bin(created_at, 1h)
