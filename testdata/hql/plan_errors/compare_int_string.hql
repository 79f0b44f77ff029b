requests | where status > "abc"
