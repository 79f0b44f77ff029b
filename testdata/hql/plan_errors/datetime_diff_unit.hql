requests | extend d = datetime_diff("fortnight", completed_at, created_at)
