requests
| extend latency_ms * 2, status + 1
| summarize sum(latency_ms) / 2, max(column1) by column2
