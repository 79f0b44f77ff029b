requests | summarize percentile(latency_ms, 150)
