requests | where properties == "x"
