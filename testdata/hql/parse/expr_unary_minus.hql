requests | extend a = -5, b = -1.5, c = -1h, d = -latency_ms, e = --5, f = -(5), g = 2 - -3, h = -9223372036854775808
