// Cost and latency per feature (a custom property sent as Helicone-Property-Feature).
requests
| where created_at > ago(7d) and isnotempty(properties.feature)
| summarize requests = count(), cost = sum(cost_usd), p95 = p95(latency_ms) by feature = properties.feature
| sort by cost desc
