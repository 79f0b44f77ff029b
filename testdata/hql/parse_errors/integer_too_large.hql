requests | where total_tokens > 99999999999999999999
