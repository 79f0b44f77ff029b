requests | where properties["x") == 1
