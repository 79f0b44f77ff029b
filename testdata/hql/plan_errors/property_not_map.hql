requests | where model.name == "x"
