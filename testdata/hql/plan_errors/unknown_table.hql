request | take 10
