requests | project `weird name
