// Cost and volume per model per day, last 30 days.
requests
| where created_at > ago(30d)
| summarize requests = count(), cost = sum(cost_usd) by day = bin(created_at, 1d), model
| sort by day asc, cost desc
