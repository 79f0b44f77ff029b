requests | where status >= 400 && cache_hit
