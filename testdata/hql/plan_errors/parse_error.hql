requests | summarise count()
