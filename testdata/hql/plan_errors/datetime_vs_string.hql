requests | where created_at > "2025-01-01"
