requests | extend x = frobnicate(model)
