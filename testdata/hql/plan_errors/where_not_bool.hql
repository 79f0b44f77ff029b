requests | where latency_ms
