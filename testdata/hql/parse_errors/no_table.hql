| where status >= 400
