requests | summarise count() by model
