requests
| where model contains "gpt" and model !contains_cs "Mini" and provider startswith "open"
| where path endswith_cs "/completions" and model matches regex @"^gpt-4o?"
| where model == "gpt-4o" or model =~ "GPT-4O" or model !~ "x" or model != "y"
| where model in ("a", "b") and model !in ("c") and provider in~ ("OpenAI", "anthropic")
| where error_message contains "100%_done\\" and model contains session_name
