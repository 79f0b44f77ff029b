requests | summarize by model, provider
