requests | sort by cost_usd ascending
