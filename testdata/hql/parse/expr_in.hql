requests
| where model in ("gpt-4o", "gpt-4o-mini")
| where status !in (200, 201) and status not in (204)
| where provider in~ ("OpenAI", "ANTHROPIC") and model !in~ ("x")
| where status in (400 + 4, 500)
