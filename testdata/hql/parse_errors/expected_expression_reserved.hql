requests | where by == 1
