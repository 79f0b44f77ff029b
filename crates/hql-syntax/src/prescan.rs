//! Checks made before pest sees the query: the length limit and the nesting limit (pest recurses
//! once per `(`/`[` level, so depth must be bounded before it runs), plus the problems a token
//! scan describes better than a grammar can: unterminated strings, stray characters and
//! unbalanced brackets.

use crate::ast::Span;
use crate::error::{Diagnostic, codes};
use crate::lex::{TokKind, tokens};
use crate::{MAX_NESTING, MAX_QUERY_BYTES};

/// What the pre-scan found.
pub(crate) enum Prescan {
    /// Nothing wrong that the scan can see; pest may run.
    Clean,
    /// A problem at a known place; pest may still run (to find an earlier error) and the caller
    /// reports whichever comes first.
    Soft(Diagnostic),
}

/// `Err` means pest must not run (too long, too deep, nothing to parse).
pub(crate) fn prescan(src: &str) -> Result<Prescan, Diagnostic> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(Diagnostic::new(
            src,
            Span::new(0, 0),
            codes::QUERY_TOO_LONG,
            format!(
                "query is {} bytes long; the limit is {} bytes",
                src.len(),
                MAX_QUERY_BYTES
            ),
        ));
    }
    let toks = tokens(src);
    if toks.is_empty() {
        return Err(Diagnostic::new(
            src,
            Span::new(0, 0),
            codes::EMPTY_QUERY,
            "the query is empty",
        )
        .with_hint("start with a table name, e.g. 'requests | take 10'"));
    }

    let mut soft: Option<Diagnostic> = None;
    let mut note = |d: Diagnostic| {
        if soft.is_none() {
            soft = Some(d);
        }
    };
    let mut open: Vec<(char, Span)> = Vec::new();
    for tok in &toks {
        let text = tok.text(src);
        match tok.kind {
            TokKind::Str { terminated: false } => note(
                Diagnostic::new(
                    src,
                    tok.span,
                    codes::UNTERMINATED_STRING,
                    "unterminated string",
                )
                .with_hint(format!(
                    "close it with {} on the same line (strings cannot span lines)",
                    closing_quote(text)
                )),
            ),
            TokKind::Quoted { terminated: false } => note(
                Diagnostic::new(
                    src,
                    tok.span,
                    codes::UNTERMINATED_IDENTIFIER,
                    "unterminated quoted name",
                )
                .with_hint("close it with ` on the same line"),
            ),
            TokKind::Unknown(c) => note(unexpected_char(src, tok.span, c)),
            TokKind::Punct if text == "&&" => note(unexpected_char(src, tok.span, '&')),
            TokKind::Punct if text == "(" || text == "[" => {
                let c = if text == "(" { '(' } else { '[' };
                open.push((c, tok.span));
                if open.len() > MAX_NESTING {
                    return Err(soft.unwrap_or_else(|| {
                        Diagnostic::new(
                            src,
                            tok.span,
                            codes::TOO_DEEPLY_NESTED,
                            format!("brackets are nested more than {MAX_NESTING} levels deep"),
                        )
                        .with_hint("simplify the expression")
                    }));
                }
            }
            TokKind::Punct if text == ")" || text == "]" => {
                let close = if text == ")" { ')' } else { ']' };
                let want = if close == ')' { '(' } else { '[' };
                match open.pop() {
                    Some((c, _)) if c == want => {}
                    Some((c, span)) => {
                        let (line, column) = crate::error::line_column(src, span.start);
                        note(
                            Diagnostic::new(
                                src,
                                tok.span,
                                codes::UNBALANCED,
                                format!(
                                    "'{close}' does not match the '{c}' at line {line}, column {column}"
                                ),
                            )
                            .with_hint(format!("close it with '{}' first", matching(c))),
                        );
                        // Keep scanning with the bracket treated as closed.
                    }
                    None => note(
                        Diagnostic::new(
                            src,
                            tok.span,
                            codes::UNBALANCED,
                            format!("unexpected '{close}': there is no '{want}' to close"),
                        )
                        .with_hint(format!("remove it, or add the missing '{want}'")),
                    ),
                }
            }
            _ => {}
        }
    }
    if let Some((c, span)) = open.pop() {
        note(
            Diagnostic::new(src, span, codes::UNBALANCED, format!("unclosed '{c}'"))
                .with_hint(format!("add the missing '{}'", matching(c))),
        );
    }
    Ok(match soft {
        Some(d) => Prescan::Soft(d),
        None => Prescan::Clean,
    })
}

fn matching(c: char) -> char {
    if c == '(' { ')' } else { ']' }
}

fn closing_quote(text: &str) -> &'static str {
    if text.starts_with('\'') || text.starts_with("@'") {
        "'"
    } else {
        "\""
    }
}

fn unexpected_char(src: &str, span: Span, c: char) -> Diagnostic {
    let printable = if c.is_control() {
        format!("{:?}", c)
    } else {
        format!("'{c}'")
    };
    let d = Diagnostic::new(
        src,
        span,
        codes::UNEXPECTED_CHARACTER,
        format!("unexpected character {printable}"),
    );
    match c {
        '&' => d.with_hint("write 'and' to combine conditions"),
        ';' => d.with_hint("a query is a single pipeline: remove the ';'"),
        '\u{201c}' | '\u{201d}' | '\u{2018}' | '\u{2019}' => {
            d.with_hint("use straight quotes: \"text\" or 'text'")
        }
        '{' | '}' => d.with_hint("HQL has no braces: group with ( and )"),
        '$' | '#' => d.with_hint("quote names with unusual characters in backticks: `my#col`"),
        '@' => d.with_hint("'@' starts a raw string: @\"C:\\path\""),
        c if c.is_alphabetic() => d.with_hint(format!(
            "names use ASCII letters, digits and '_': quote other names in backticks, e.g. `{}`",
            name_around(src, span)
        )),
        _ => d,
    }
}

/// The run of non-space, non-punctuation characters around `span` (for the backtick hint).
fn name_around(src: &str, span: Span) -> &str {
    let stop = |c: char| c.is_whitespace() || "|()[],.=!<>~+-*/%:\"'`".contains(c);
    let start = src[..span.start]
        .rfind(stop)
        .map_or(0, |i| i + src[i..].chars().next().map_or(1, char::len_utf8));
    let end = src[span.end..]
        .find(stop)
        .map_or(src.len(), |i| span.end + i);
    &src[start..end]
}
