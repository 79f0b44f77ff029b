requests | where status in 400, 500
