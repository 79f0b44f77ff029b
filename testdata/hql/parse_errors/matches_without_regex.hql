requests | where model matches "gpt"
