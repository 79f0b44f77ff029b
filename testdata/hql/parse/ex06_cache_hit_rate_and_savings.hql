// Gateway cache hit rate, prompt-cache share and an estimate of what the cache saved.
requests
| where created_at > ago(7d)
| summarize requests = count(),
            hits = countif(cache_hit),
            hit_rate = ratio(cache_hit),
            avg_miss_cost = avgif(cost_usd, not cache_hit),
            prompt_cache_share = sum(cache_read_tokens) / sum(prompt_tokens)
    by model
| extend est_savings_usd = hits * avg_miss_cost
| sort by est_savings_usd desc
