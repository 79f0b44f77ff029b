requests
| summarize by model, tolower(provider)
