requests | where status in ()
