requests | where status >= 500 | count
