requests | summarize
