requests | top 10 cost_usd
