requests | where status >= 400 AND model == "x"
