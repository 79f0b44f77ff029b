requests | sort by properties
