requests
| where model contains "gpt" and model !contains "mini" and model not contains "nano"
| where path startswith "/v1" and path !startswith "/v1/embed" and path endswith "completions" and path !endswith "x"
| where model contains_cs "GPT" and model !contains_cs "Mini" and path startswith_cs "/V1" and path endswith_cs "S"
| where error_message matches regex @"rate.?limit" and not (model matches regex "(?i)^claude-")
| where model !matches regex "^o[0-9]"
