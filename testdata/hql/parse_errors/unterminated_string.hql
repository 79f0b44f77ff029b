requests
| where model == "gpt-4o
| take 5
