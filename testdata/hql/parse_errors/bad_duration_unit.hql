requests | where created_at > ago(1mo)
