requests
| summarize error_rate = countif(status >= 400) / count(), n = count(), sum(total_tokens) + 1
    by model
| where error_rate > 0.01
