requests | where (status >= 400 and model == "x"
