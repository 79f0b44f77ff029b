requests
| where created_at > ago(1h) and created_at <= now() and created_at >= datetime(2025-01-01)
| where completed_at - created_at > 5s and created_at - 1h < datetime(2025-01-02 10:30:00)
| where day >= datetime(2025-01-01) and day between (datetime(2025-01-01) .. datetime(2025-01-02))
