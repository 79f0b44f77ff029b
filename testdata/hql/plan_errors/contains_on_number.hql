requests | where latency_ms contains "x"
