requests | summarize sum(count())
