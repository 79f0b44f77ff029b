requests
| where status == 200
| filter latency_ms > 1000
| where price_known
