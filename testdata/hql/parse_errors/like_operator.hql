requests | where model like "gpt%"
