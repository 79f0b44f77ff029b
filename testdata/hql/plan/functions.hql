requests
| extend h = hourofday(created_at), dow = dayofweek(created_at), dom = dayofmonth(created_at),
         m = month(created_at), y = year(created_at), doy = dayofyear(day),
         d = startofday(created_at), w = startofweek(created_at), mo = startofmonth(created_at),
         sy = startofyear(created_at), lower = tolower(model), up = toupper(model), len = strlen(model),
         sub = substring(model, 0, 3), cat = strcat(model, "/", status),
         who = coalesce(user_id, session_id, "anonymous"), r = round(cost_usd, 4), r0 = round(1.5),
         a = abs(-latency_ms), fl = floor(2.5), ce = ceiling(2.5), sq = sqrt(latency_ms),
         dbl = todouble("1.5"), lng = tolong(properties.retries), s = tostring(status),
         e = isempty(user_id), ne = isnotempty(session_id), diff = datetime_diff("millisecond", completed_at, created_at),
         dur = completed_at - created_at, c = case(status < 300, "ok", status < 500, "client", "server"),
         mx = max_of(latency_ms, ttft_ms), f2 = floor(latency_ms, 50), dec = todecimal("0.1")
