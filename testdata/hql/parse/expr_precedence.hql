// or < and < not < comparisons < + - < * / % < unary minus
requests
| where a or b and not c == 1 + 2 * -d % 3
| where (a or b) and not (c == 1)
| extend x = a - b - c, y = a / b * c, z = -(a + b), w = - -a
