requests | project model, cost_usd,
