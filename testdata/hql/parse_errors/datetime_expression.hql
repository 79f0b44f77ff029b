requests | where created_at > datetime(now())
