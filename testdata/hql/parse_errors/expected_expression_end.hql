requests | where
