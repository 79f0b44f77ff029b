requests | where ttft_ms is nul
