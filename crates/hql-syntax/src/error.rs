//! Diagnostics for humans: a stable code, a one-line message, the place (byte span plus 1-based
//! line and character column) and an optional hint. The same type serves the planner for its
//! own errors (`hql.unknown_column`, …), so every HQL error renders and serializes alike.
//!
//! HQL diagnostics are always the caller's fault: the server maps them to `invalid_input`
//! (HTTP 400) and puts the serialized diagnostic under `"error"`.

use serde::Serialize;

use crate::ast::Span;

/// Stable machine-readable codes raised by this crate (documented in docs/hql.md).
pub mod codes {
    /// Anything not covered by a more specific code.
    pub const SYNTAX: &str = "hql.syntax";
    pub const EMPTY_QUERY: &str = "hql.empty_query";
    pub const QUERY_TOO_LONG: &str = "hql.query_too_long";
    pub const TOO_DEEPLY_NESTED: &str = "hql.too_deeply_nested";
    pub const UNEXPECTED_CHARACTER: &str = "hql.unexpected_character";
    pub const UNBALANCED: &str = "hql.unbalanced_brackets";
    pub const UNTERMINATED_STRING: &str = "hql.unterminated_string";
    pub const UNTERMINATED_IDENTIFIER: &str = "hql.unterminated_identifier";
    pub const INVALID_ESCAPE: &str = "hql.invalid_escape";
    pub const INVALID_NUMBER: &str = "hql.invalid_number";
    pub const NUMBER_OUT_OF_RANGE: &str = "hql.number_out_of_range";
    pub const INVALID_DURATION: &str = "hql.invalid_duration";
    pub const INVALID_DATETIME: &str = "hql.invalid_datetime";
    pub const EXPECTED_OPERATOR: &str = "hql.expected_operator";
    pub const UNKNOWN_OPERATOR: &str = "hql.unknown_operator";
    pub const UNSUPPORTED_OPERATOR: &str = "hql.unsupported_operator";
    pub const EXPECTED_EXPRESSION: &str = "hql.expected_expression";
    pub const WRONG_ARGUMENT_COUNT: &str = "hql.wrong_argument_count";
}

/// One error in a query. Serializes as
/// `{"code","message","line","column","span":[start,end],"hint"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message} (line {line}, column {column})")]
pub struct Diagnostic {
    /// Stable code such as `hql.unknown_operator` (see [`codes`]).
    pub code: &'static str,
    /// One sentence, lowercase, naming the offending text in quotes.
    pub message: String,
    /// 1-based line of `span.start`.
    pub line: usize,
    /// 1-based column of `span.start`, counted in characters (not bytes).
    pub column: usize,
    /// Byte offsets into the query.
    pub span: Span,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What [`crate::parse`] returns on failure.
pub type ParseError = Diagnostic;

impl Diagnostic {
    /// A diagnostic at `span` of `src` (line and column are computed from `src`). A span past the
    /// end of `src`, or not on char boundaries, is clamped.
    pub fn new(src: &str, span: Span, code: &'static str, message: impl Into<String>) -> Self {
        let start = floor_char_boundary(src, span.start.min(src.len()));
        let end = floor_char_boundary(src, span.end.clamp(start, src.len()));
        let span = Span::new(start, end);
        let (line, column) = line_column(src, start);
        Diagnostic {
            code,
            message: message.into(),
            line,
            column,
            span,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The diagnostic the way the CLI prints it: the line with a caret underline.
    ///
    /// ```text
    /// error[hql.unknown_operator]: unknown operator 'summarise'
    ///  --> line 2, column 3
    ///   |
    /// 2 | | summarise count() by model
    ///   |   ^^^^^^^^^
    ///   = hint: did you mean 'summarize'?
    /// ```
    pub fn render(&self, src: &str) -> String {
        let start = floor_char_boundary(src, self.span.start.min(src.len()));
        let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
        let line_text = src[line_start..line_end].trim_end_matches('\r');
        let end = floor_char_boundary(src, self.span.end.clamp(start, line_end));

        let number = self.line.to_string();
        let pad = " ".repeat(number.len());
        // Keep tabs in the prefix so the carets line up under the text whatever the tab width.
        let prefix: String = src[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let width = src[start..end].chars().count().max(1);

        let mut out = format!("error[{}]: {}\n", self.code, self.message);
        out.push_str(&format!(
            "{pad}--> line {}, column {}\n",
            self.line, self.column
        ));
        out.push_str(&format!("{pad} |\n"));
        out.push_str(&format!("{number} | {line_text}\n"));
        out.push_str(&format!("{pad} | {prefix}{}\n", "^".repeat(width)));
        if let Some(hint) = &self.hint {
            out.push_str(&format!("{pad} = hint: {hint}\n"));
        }
        out
    }
}

/// 1-based line and character column of byte offset `pos`.
pub fn line_column(src: &str, pos: usize) -> (usize, usize) {
    let pos = floor_char_boundary(src, pos.min(src.len()));
    let before = &src[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
