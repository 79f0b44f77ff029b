requests | summarize countif(latency_ms)
