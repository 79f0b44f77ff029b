//! [`IngestError`]: every reason a body was refused, as a list of [`Problem`]s.

use std::fmt;

use loupe_model::ErrorKind;
use serde::Serialize;
use serde::ser::SerializeStruct;

/// At most this many problems are kept; the rest are only counted ("and N more").
pub const MAX_PROBLEMS: usize = 20;

/// One thing wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Where in the batch: for a JSON array body the 0-based index of the record
    /// (`path` starts with `records[i]`), for an NDJSON body the 1-based line number (`path`
    /// starts with `line N`). `None` for a single-object body, a Helicone log, or a problem with
    /// the body as a whole.
    pub index: Option<usize>,
    /// Where in the record: a JSON path such as `records[3].properties.env`,
    /// `line 7, created_at` or `providerResponse.status`; `body` for the body as a whole.
    pub path: String,
    /// What is wrong and what to do about it.
    pub reason: String,
}

/// What was refused, which decides the advice at the end of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A native `/v1/ingest` batch: all-or-nothing.
    Batch,
    /// One Helicone async-log body.
    HeliconeLog,
    /// One OTLP export request.
    Otlp,
}

/// The input was refused; nothing of it may be stored.
///
/// `Display` is one sentence naming the first problem and how many others there are.
/// `Serialize` gives the inner object of the HTTP error body:
/// `{"code":"invalid_input","message":…,"problems":[{"index","path","reason"}…],"problems_omitted":N}`
/// (the server wraps it as `{"error": …}`). At most [`MAX_PROBLEMS`] problems are listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IngestError {
    problems: Vec<Problem>,
    total: usize,
    invalid_records: usize,
    scope: Scope,
}

impl IngestError {
    /// Always [`ErrorKind::InvalidInput`] (HTTP 400): the whole-body size limit (413) is the
    /// server's to enforce.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }

    /// The problems listed (at most [`MAX_PROBLEMS`]), in input order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// How many problems were found, listed or not.
    pub fn total_problems(&self) -> usize {
        self.total
    }

    /// How many problems were found but not listed.
    pub fn omitted_problems(&self) -> usize {
        self.total.saturating_sub(self.problems.len())
    }
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.first() {
            Some(p) => write!(f, "{}: {}", p.path, p.reason)?,
            None => f.write_str("the input is invalid")?,
        }
        let others = self.total.saturating_sub(1);
        if others > 0 {
            let s = if others == 1 { "" } else { "s" };
            write!(f, " (and {others} more problem{s}")?;
            if self.invalid_records > 1 {
                write!(f, "; {} records are invalid", self.invalid_records)?;
            }
            if self.omitted_problems() > 0 {
                write!(f, "; only the first {} are listed", self.problems.len())?;
            }
            f.write_str(")")?;
        }
        match self.scope {
            Scope::Batch => f.write_str(
                ". No records were stored; fix the listed records and resend the whole batch — \
                 records are deduplicated by request_id, so resending is safe.",
            ),
            Scope::HeliconeLog => {
                f.write_str(". The log was not stored; fix the body and resend it.")
            }
            Scope::Otlp => f.write_str(
                ". Nothing from this export request was stored; fix the exporter's output (see docs/otlp.md).",
            ),
        }
    }
}

impl Serialize for IngestError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("IngestError", 4)?;
        s.serialize_field("code", self.kind().code())?;
        s.serialize_field("message", &self.to_string())?;
        s.serialize_field("problems", &self.problems)?;
        s.serialize_field("problems_omitted", &self.omitted_problems())?;
        s.end()
    }
}

/// Collects problems while a body is validated; turns into an [`IngestError`] if any were found.
#[derive(Debug)]
pub(crate) struct Problems {
    list: Vec<Problem>,
    total: usize,
    invalid_records: usize,
    last_bad_index: Option<Option<usize>>,
    scope: Scope,
}

impl Problems {
    pub(crate) fn new(scope: Scope) -> Self {
        Problems {
            list: Vec::new(),
            total: 0,
            invalid_records: 0,
            last_bad_index: None,
            scope,
        }
    }

    pub(crate) fn push(
        &mut self,
        index: Option<usize>,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.total += 1;
        if self.last_bad_index != Some(index) {
            self.last_bad_index = Some(index);
            self.invalid_records += 1;
        }
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(Problem {
                index,
                path: path.into(),
                reason: reason.into(),
            });
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.total
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub(crate) fn into_error(self) -> IngestError {
        IngestError {
            problems: self.list,
            total: self.total,
            invalid_records: self.invalid_records,
            scope: self.scope,
        }
    }

    /// `Ok(value)` if nothing was reported, else the error.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, IngestError> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self.into_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_first_problem_and_counts_the_rest() {
        let mut p = Problems::new(Scope::Batch);
        p.push(Some(0), "records[0].model", "missing");
        p.push(Some(0), "records[0].created_at", "missing");
        p.push(Some(4), "records[4].status", "too big");
        let e = p.into_error();
        assert_eq!(e.total_problems(), 3);
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "records[0].model: missing (and 2 more problems; 2 records are invalid)"
            ),
            "{msg}"
        );
        assert!(msg.contains("No records were stored"), "{msg}");
    }

    #[test]
    fn list_is_capped() {
        let mut p = Problems::new(Scope::HeliconeLog);
        for i in 0..25 {
            p.push(None, format!("f{i}"), "bad");
        }
        let e = p.into_error();
        assert_eq!(e.problems().len(), MAX_PROBLEMS);
        assert_eq!(e.omitted_problems(), 5);
        assert!(
            e.to_string()
                .contains("(and 24 more problems; only the first 20 are listed)")
        );
        let v = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(v["code"], "invalid_input");
        assert_eq!(v["problems_omitted"], 5);
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
