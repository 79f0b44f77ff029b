requests
| where latency_ms > 0
| extend a = 10us, b = 250ms, c = 30s, d = 1sec, e = 5m, f = 90min, g = 1h, h = 1.5h, i = 7d, j = 2w, k = 0.5s
