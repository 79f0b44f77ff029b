requests
| where created_at >= datetime(2026-11-01)
    and created_at < datetime(2026-11-01 10:30:00)
    and created_at < datetime(2026-11-01T10:30:00.123456Z)
    and created_at < datetime("2026-11-01T12:30:00+02:00")
    and created_at < datetime( 2026-11-01T10:30 )
