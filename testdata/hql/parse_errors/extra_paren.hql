requests | where status >= 400)
