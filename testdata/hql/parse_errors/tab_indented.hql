requests
	| where	status >=	"x" "y"
