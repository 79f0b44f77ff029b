requests
| project-away request_body, response_body, properties
| project-rename m = model, who = user_id
| project m, who, status
