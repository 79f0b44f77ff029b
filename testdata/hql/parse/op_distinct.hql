requests | distinct model, provider, env = properties.Environment
