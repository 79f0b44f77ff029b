requests | where latency_ms between (100, 200)
