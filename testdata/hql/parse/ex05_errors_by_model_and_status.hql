// Which errors, from which models?
requests
| where created_at > ago(24h) and status >= 400
| summarize errors = count(), last_seen = max(created_at) by model, status, error_type
| top 20 by errors
