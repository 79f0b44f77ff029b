requests | where created_at > datetime(2026-02-30)
