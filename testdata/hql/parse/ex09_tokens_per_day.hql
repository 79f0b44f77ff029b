// Tokens per day, split by kind (`day` is the table's UTC date column).
requests
| where day >= startofday(ago(30d))
| summarize prompt = sum(prompt_tokens), completion = sum(completion_tokens),
            cached = sum(cache_read_tokens), reasoning = sum(reasoning_tokens), total = sum(total_tokens)
    by day
| sort by day asc
