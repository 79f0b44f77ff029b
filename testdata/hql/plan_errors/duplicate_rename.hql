requests | project-rename model = provider
