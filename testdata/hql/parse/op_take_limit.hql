requests | take 100 | limit 0
