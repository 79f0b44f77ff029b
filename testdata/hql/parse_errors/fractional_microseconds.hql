requests | extend d = 0.5us
