// Time to first token of streamed calls, per model.
requests
| where created_at > ago(7d) and stream and ttft_ms is not null
| summarize streams = count(), p50 = p50(ttft_ms), p95 = p95(ttft_ms) by model
| sort by p95 desc
