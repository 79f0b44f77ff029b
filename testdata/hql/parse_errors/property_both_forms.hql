requests | where properties.Step["x"] == "y"
