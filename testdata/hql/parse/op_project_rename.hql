requests | project-rename latency = latency_ms, `time to first token` = ttft_ms
