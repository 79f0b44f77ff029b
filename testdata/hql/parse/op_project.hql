requests
| project created_at, mdl = model, cost = cost_usd * 100, `weird name` = tolower(model), properties["Workflow Step"]
