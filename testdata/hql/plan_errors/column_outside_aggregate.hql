requests | summarize sum(latency_ms) / latency_ms
