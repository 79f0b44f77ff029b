// Error rate per model, and which statuses the errors were.
requests
| where created_at > ago(7d)
| summarize requests = count(), errors = countif(status >= 400),
    rate_limited = countif(status == 429), server_errors = countif(status >= 500)
    by model
| extend error_rate = todouble(errors) / requests
| sort by error_rate desc
