requests | project model | project-away model
