requests | where model == “gpt-4o”
