// Time to first token of streamed responses, by model.
requests
| where stream and ttft_ms is not null and created_at > ago(24h)
| summarize requests = count(), p50 = p50(ttft_ms), p95 = p95(ttft_ms), avg = avg(ttft_ms) by model
| sort by p95 desc
