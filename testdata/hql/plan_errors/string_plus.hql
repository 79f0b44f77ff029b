requests | extend x = model + "x"
