requests
| sort by ttft_ms, created_at asc nulls first, model desc nulls last
| take 10
| top 3 by latency_ms asc
