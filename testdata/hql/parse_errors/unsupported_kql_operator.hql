requests | join (spans) on trace_id
