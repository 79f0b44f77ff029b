requests
| summarize n = count() by model
| sort by cost_usd
