requests
| project model, status
| where latency_ms > 100
