requests | summarize count() by bin(created_at, latency_ms)
