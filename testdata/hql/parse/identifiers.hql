`requests`
| extend `by` = 1, `with space` = 2, `back``tick` = 3, _private = 4, Model2 = 5
| project `by`, `with space`, `back``tick`, `select`
