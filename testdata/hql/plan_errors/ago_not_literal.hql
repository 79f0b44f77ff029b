requests | where created_at > ago(latency_ms)
