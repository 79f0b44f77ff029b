// Gateway cache hit rate and what the hits saved, per model.
requests
| where created_at > ago(7d)
| summarize requests = count(), hits = countif(cache_hit), cost = sum(cost_usd) by model
| extend hit_rate = todouble(hits) / requests
| sort by hits desc
