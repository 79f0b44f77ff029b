requests | top 10 by cost_usd | top 3 by ttft_ms asc, model
