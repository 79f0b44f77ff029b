requests | project model, m = provider, m = path
