requests
| where status between (400 .. 499) and latency_ms !between (0 .. 100)
| where cost_usd > 0.05 and cost_usd <= 1 and cost_usd != 1.5e-3 and status == "429"
| where ttft_ms is null or ttft_ms is not null and latency_ms / 1000 > 2 and latency_ms % 7 == 0
| where -latency_ms < 0 and not cache_hit and (stream or price_known)
