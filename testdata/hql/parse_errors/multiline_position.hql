requests
| where status >= 400
| summarize n = count() by model
| sort by n dsc
