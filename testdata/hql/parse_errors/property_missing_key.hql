requests | where properties. == "x"
