requests | WHERE status >= 400
