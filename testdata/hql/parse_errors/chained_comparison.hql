requests | where 200 <= status < 300
