requests | take 5;
