// Sessions with the highest cost in the last 30 days.
requests
| where created_at > ago(30d) and session_id is not null
| summarize cost = sum(cost_usd), requests = count(), users = dcount(user_id),
            started = min(created_at), ended = max(created_at)
    by session_id, session_name
| extend minutes = (ended - started) / 1m
| top 20 by cost
