requests | where created_at > now(1d)
