requests | where status >= 400 || model == "x"
