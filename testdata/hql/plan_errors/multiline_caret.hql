requests
| where status >= 400
| summarize n = count() by modl
| take 5
