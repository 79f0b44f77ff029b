requests | project-away request_body, response_body, `org_id`
