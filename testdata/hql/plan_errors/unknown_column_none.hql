requests | project zzz
