requests | summarize model, count()
