requests
| where created_at > ago(1d) and created_at <= now()
| extend hour = hourofday(created_at), dow = dayofweek(created_at), d = startofday(created_at),
         m = startofmonth(created_at), lower = tolower(model), len = strlen(model),
         who = coalesce(user_id, session_id, "anonymous"), r = round(cost_usd, 4), a = abs(-latency_ms)
| summarize n = count(), p50(latency_ms), p90(latency_ms), p95(latency_ms), p99(latency_ms),
            err = ratio(status >= 400), min(created_at), max(created_at), users = dcount(user_id)
    by hour
