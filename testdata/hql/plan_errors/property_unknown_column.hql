requests | where propertes.env == "prod"
