requests
| where status == 200
| count
