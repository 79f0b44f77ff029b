requests
| extend tokens_per_s = completion_tokens / (latency_ms / 1000.0), env = properties.Environment
| extend strlen(model)
