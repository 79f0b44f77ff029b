requests | where status =~ 200
