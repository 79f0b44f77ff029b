requests | extend total = sum(cost_usd)
