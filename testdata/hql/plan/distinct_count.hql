requests
| distinct model, provider
| count
