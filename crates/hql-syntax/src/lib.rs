//! HQL syntax: the Loupe query language's parser. Owns the journey from query text to a typed
//! syntax tree ([`ast::Query`]) with a byte span on every node, and the human-facing diagnostics
//! when that fails ([`Diagnostic`]: stable code, message, line/column, caret rendering, hint).
//! The grammar is `grammar/hql.pest` at the repository root (the only one); the language is
//! documented in `docs/hql.md`. Planning the tree into a query (`hql-plan`) happens elsewhere:
//! this crate must not depend on DataFusion, storage or HTTP, so it stays small and cheap to fuzz.
//!
//! Parsing is bounded: queries over [`MAX_QUERY_BYTES`] are refused, bracket nesting is checked
//! against [`MAX_NESTING`] before pest runs (pest recurses per level) and the built tree against
//! [`MAX_AST_DEPTH`] (long `a or b or …` chains), so no input can exhaust the stack.

pub mod ast;
mod diagnose;
pub mod error;
mod lex;
mod literal;
mod parser;
mod prescan;
pub mod pretty;
pub mod suggest;

pub use ast::{Expr, ExprKind, Literal, Op, OpKind, Query, Span};
pub use error::{Diagnostic, ParseError, codes};
pub use suggest::did_you_mean;

/// Longest query accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// Deepest nesting of `(` and `[` accepted.
pub const MAX_NESTING: usize = 64;
/// Deepest expression tree accepted (a chain `a + b + c` is as deep as it is long).
pub const MAX_AST_DEPTH: usize = 256;

/// Parses a whole query (`requests | where … | summarize …`).
pub fn parse(src: &str) -> Result<Query, ParseError> {
    checked(src, parser::parse_query)
}

/// Parses a lone expression (`status >= 400 and model == "x"`): handy for tests and tools.
pub fn parse_expr(src: &str) -> Result<Expr, ParseError> {
    checked(src, parser::parse_expr)
}

/// Runs the pre-scan, then pest, and reports whichever error comes first in the text.
fn checked<T>(src: &str, run: fn(&str) -> Result<T, ParseError>) -> Result<T, ParseError> {
    let soft = match prescan::prescan(src)? {
        prescan::Prescan::Clean => None,
        prescan::Prescan::Soft(d) => Some(d),
    };
    match (run(src), soft) {
        (Ok(v), None) => Ok(v),
        (Ok(_), Some(s)) => Err(s),
        (Err(e), Some(s)) if s.span.start <= e.span.start => Err(s),
        (Err(e), _) => Err(e),
    }
}
