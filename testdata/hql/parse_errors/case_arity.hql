requests | extend speed = case(latency_ms < 500, "fast")
