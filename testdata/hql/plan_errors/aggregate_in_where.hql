requests | where count() > 10
