requests | take -5
