// What did each model cost per day over the last 30 days?
requests
| where created_at > ago(30d)
| summarize cost = sum(cost_usd), requests = count() by model, day = bin(created_at, 1d)
| sort by day asc, cost desc
