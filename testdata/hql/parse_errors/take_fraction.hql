requests | take 1.5
