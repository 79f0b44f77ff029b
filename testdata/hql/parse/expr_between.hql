requests
| where latency_ms between (100 .. 2000)
| where status !between (200 .. 299) and status not between (300..399)
| where created_at between (datetime(2026-11-01) .. datetime(2026-11-08))
| where created_at between (ago(2d) .. now() - 1h)
