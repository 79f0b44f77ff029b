requests | summarize count() by bin(model, 1h)
