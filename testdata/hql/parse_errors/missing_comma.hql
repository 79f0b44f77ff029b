requests | summarize count() by model day = bin(created_at, 1d)
