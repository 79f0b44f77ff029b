requests
| extend secs = latency_ms / 1000.0, model = toupper(model), slow = secs > 2, tolower(provider)
| project model, secs, slow, speed = iff(slow, "slow", "fast"), tier = properties["customer_tier"]
