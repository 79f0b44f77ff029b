requests
| where a == 1 and b != 2 and c <> 3 and d < 4 and e <= 5 and f > 6 and g >= 7
| where model =~ "GPT-4o" and provider !~ "OPENAI"
