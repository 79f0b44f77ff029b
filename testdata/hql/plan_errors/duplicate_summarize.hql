requests | summarize count(), count() by model
