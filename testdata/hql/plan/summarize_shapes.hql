requests
| summarize n = count(), count(ttft_ms), errors = countif(status >= 400), sum(cost_usd),
            avg(latency_ms), min(created_at), max(created_at), users = dcount(user_id),
            p50(latency_ms), p90(latency_ms), p95(latency_ms), p99(latency_ms),
            percentile(ttft_ms, 99.9), stdev(latency_ms), variance(latency_ms),
            ok_cost = sumif(cost_usd, status == 200)
    by provider, hour = bin(created_at, 1h), bucket = bin(latency_ms, 100), properties.feature
