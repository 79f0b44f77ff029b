requests
| where properties.Environment == "production"
| where properties["Workflow Step"] == "retrieve" and properties['single'] == "x"
| where attributes.http.method == "GET" and properties.`odd key`.x == "y" and properties.2fa == "on"
| summarize count() by properties.Customer, step = properties["Workflow Step"]
