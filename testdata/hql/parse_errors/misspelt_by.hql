requests | sort bye cost_usd
