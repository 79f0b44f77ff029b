requests | where stream == true and cache_hit != false and ttft_ms != null
