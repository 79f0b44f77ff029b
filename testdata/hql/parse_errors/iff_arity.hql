requests | extend slow = iff(latency_ms > 1000, "slow")
