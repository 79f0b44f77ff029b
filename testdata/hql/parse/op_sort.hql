requests
| sort by cost_usd
| sort by latency_ms asc, model desc nulls first, ttft_ms asc nulls last, created_at nulls first
