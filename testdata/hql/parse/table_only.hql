spans
