requests | summarize sum(model)
