// The 20 users who cost the most in the last 7 days.
requests
| where created_at > ago(7d) and isnotempty(user_id)
| summarize cost = sum(cost_usd), requests = count(), tokens = sum(total_tokens) by user_id
| top 20 by cost desc
