requests | extend x = tolowr(model)
