requests | select model, cost_usd
