requests | extend x = round(cost_usd, 2, 3)
