// Error rate per model: the share of requests that failed.
requests
| where created_at > ago(7d)
| summarize requests = count(), errors = countif(status >= 400), error_rate = ratio(status >= 400)
    by model
| sort by error_rate desc
