//! Planner errors ([`PlanError`], always with the span of the offending text) and the unified
//! [`HqlError`] that [`crate::compile`] returns for parse and plan errors alike.

use loupe_hql_syntax::{Diagnostic, Span};
use loupe_model::ErrorKind;
use serde::Serialize;

/// Stable machine-readable codes raised by the planner (parse codes live in
/// `loupe_hql_syntax::codes`).
pub mod codes {
    pub const UNKNOWN_TABLE: &str = "hql.unknown_table";
    /// A table without an `org_id` column cannot be scoped to the caller's organisation.
    pub const UNSCOPED_TABLE: &str = "hql.unscoped_table";
    pub const UNKNOWN_COLUMN: &str = "hql.unknown_column";
    pub const UNKNOWN_FUNCTION: &str = "hql.unknown_function";
    /// Same code the parser uses for `iff`/`case` arity, so one condition has one code.
    pub const WRONG_ARGUMENT_COUNT: &str = loupe_hql_syntax::codes::WRONG_ARGUMENT_COUNT;
    /// An argument that must be a constant (`bin`'s width, `percentile`'s rank, …) is not.
    pub const INVALID_ARGUMENT: &str = "hql.invalid_argument";
    pub const TYPE_MISMATCH: &str = "hql.type_mismatch";
    pub const AGGREGATE_NOT_ALLOWED: &str = "hql.aggregate_not_allowed";
    pub const NOT_AN_AGGREGATE: &str = "hql.not_an_aggregate";
    pub const NOT_A_MAP: &str = "hql.not_a_map";
    pub const DUPLICATE_COLUMN: &str = "hql.duplicate_column";
    /// `project-away` would leave no column.
    pub const NO_COLUMNS: &str = "hql.no_columns";
    /// The engine refused a plan the checks above let through (a planner gap, not a user error
    /// the planner knows about); the message carries the engine's words.
    pub const PLAN_FAILED: &str = "hql.plan_failed";
}

/// An error found while planning a parsed query. Spans are byte offsets into the query text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PlanError {
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
}

impl PlanError {
    pub(crate) fn new(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        PlanError {
            code,
            message: message.into(),
            span,
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub(crate) fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// An engine error met while building the plan, pinned on `span`.
    pub(crate) fn engine(span: Span, e: &datafusion::error::DataFusionError) -> Self {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("").trim();
        PlanError::new(
            codes::PLAN_FAILED,
            span,
            format!("the query engine refused this: {first}"),
        )
    }

    /// With line and column computed from the query text.
    pub fn into_hql(self, src: &str) -> HqlError {
        let mut d = Diagnostic::new(src, self.span, self.code, self.message);
        d.hint = self.hint;
        HqlError::from(d)
    }
}

/// Any error of an HQL query, parse or plan. Serializes as
/// `{"code","message","line","column","span":[start,end],"hint"?}` (`hint` only when present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct HqlError {
    pub code: &'static str,
    pub message: String,
    /// 1-based line of `span.start`.
    pub line: usize,
    /// 1-based column of `span.start`, in characters.
    pub column: usize,
    pub span: Span,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl From<Diagnostic> for HqlError {
    fn from(d: Diagnostic) -> Self {
        HqlError {
            code: d.code,
            message: d.message,
            line: d.line,
            column: d.column,
            span: d.span,
            hint: d.hint,
        }
    }
}

impl HqlError {
    /// HQL errors are always the caller's: HTTP 400.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }

    /// The error the way the CLI prints it: the line with a caret underline under the span.
    pub fn render(&self, src: &str) -> String {
        Diagnostic {
            code: self.code,
            message: self.message.clone(),
            line: self.line,
            column: self.column,
            span: self.span,
            hint: self.hint.clone(),
        }
        .render(src)
    }
}
