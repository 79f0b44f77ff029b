// Comments run to the end of the line and may appear between any two tokens.
requests // the table

  | where status >= 400 // only failures
      and model != "gpt-4o" // but not this one
  // a whole-line comment between operators
  | summarize
      failures = count() , // trailing comment after a comma
      users = dcount(user_id)
      by model
  | take 5
// a comment after the last operator
