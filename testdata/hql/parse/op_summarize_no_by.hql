requests | summarize total = sum(total_tokens), n = count()
