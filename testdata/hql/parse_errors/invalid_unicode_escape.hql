requests | where model == "\u{110000}"
