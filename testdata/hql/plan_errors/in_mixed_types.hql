requests | where status in (200, "x")
