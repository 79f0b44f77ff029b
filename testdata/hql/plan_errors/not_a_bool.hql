requests | where not model
