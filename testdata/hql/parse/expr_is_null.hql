requests | where ttft_ms is null or user_id is not null and not (session_id is null)
