// Prompt, completion and cached tokens per day.
requests
| where created_at > ago(30d)
| summarize prompt = sum(prompt_tokens), completion = sum(completion_tokens),
    cache_read = sum(cache_read_tokens), total = sum(total_tokens)
    by day = bin(created_at, 1d)
| sort by day asc
