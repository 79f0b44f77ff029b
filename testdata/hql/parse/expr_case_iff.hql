requests
| extend speed = case(latency_ms < 500, "fast", latency_ms < 2000, "ok", "slow"),
         failed = iff(status >= 400, 1, 0),
         env = iif(isempty(properties.Environment), "unknown", properties.Environment)
