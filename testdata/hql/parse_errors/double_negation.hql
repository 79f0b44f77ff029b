requests | where model not !contains "x"
