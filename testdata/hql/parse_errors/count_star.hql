requests | summarize count(*)
