requests | count(model)
