requests
| where model == "double \"quoted\" \\ \n\t\r\0" and provider == 'single \'quoted\''
| where a == "unicode \u{1F600} é ✓" and b == @"raw \d+ ""quoted""" and c == @'raw ''single'''
| where d == "" and e == 'a // not a comment' and f == "pipe | inside"
