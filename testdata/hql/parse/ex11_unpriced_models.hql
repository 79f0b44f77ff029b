// Models Loupe has no price for (their cost is null, never a silent zero).
requests
| where not price_known
| summarize requests = count(), first_seen = min(created_at) by provider, model
| sort by requests desc
