requests
| where properties.environment == "production" and properties["Workflow Step"] == "retrieve"
| summarize count() by properties.feature, step = properties["Workflow Step"]
