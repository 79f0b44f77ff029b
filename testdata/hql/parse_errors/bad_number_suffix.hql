requests | where latency_ms > 10x
