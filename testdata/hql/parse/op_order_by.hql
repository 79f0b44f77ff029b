requests | order by created_at asc
