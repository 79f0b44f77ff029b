requests | summarize avg(latency) by model
