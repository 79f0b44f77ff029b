requests|where status>=400|summarize n=count()by model|top 5 by n
