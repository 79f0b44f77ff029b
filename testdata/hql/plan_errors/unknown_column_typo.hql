requests | where modle == "gpt-4o"
