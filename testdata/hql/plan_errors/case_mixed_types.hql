requests | extend x = iff(status == 200, "ok", 1)
