// Sessions with the highest cost, with their length and duration.
requests
| where created_at > ago(7d) and isnotempty(session_id)
| summarize cost = sum(cost_usd), requests = count(), started = min(created_at), ended = max(completed_at)
    by session_id
| top 20 by cost desc
