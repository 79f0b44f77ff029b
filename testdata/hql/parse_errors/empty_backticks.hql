requests | project ``
