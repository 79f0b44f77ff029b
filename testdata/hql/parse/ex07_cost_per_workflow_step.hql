// Cost, latency and error rate per workflow step (custom properties).
requests
| where created_at > ago(7d) and isnotempty(properties.Workflow)
| summarize cost = sum(cost_usd), requests = count(), p95 = p95(latency_ms),
            error_rate = ratio(status >= 400)
    by workflow = properties.Workflow, step = properties["Workflow Step"]
| sort by workflow asc, cost desc
