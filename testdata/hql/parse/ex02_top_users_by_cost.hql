// Which customers cost the most this week?
requests
| where created_at > ago(7d) and user_id is not null
| summarize cost = sum(cost_usd), requests = count(), tokens = sum(total_tokens) by user_id
| top 10 by cost
