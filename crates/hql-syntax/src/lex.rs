//! A forgiving tokenizer used around pest, never instead of it: the pre-scan uses it to check
//! length, nesting depth, strings and stray characters before pest runs, and the error mapper
//! uses it to name the token an error points at ("found 'bye'") and the one before it.
//! It never fails: malformed input becomes tokens flagged as such.

use crate::ast::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// Identifier-like word (letters, digits, `_`; starts with a letter or `_`).
    Word,
    /// A number with an optional suffix (`42`, `1.5e3`, `7d`).
    Number,
    /// A string literal (`"…"`, `'…'`, `@"…"`); `terminated` is false if the line or the input
    /// ended first.
    Str { terminated: bool },
    /// A backtick-quoted identifier.
    Quoted { terminated: bool },
    /// Operator or punctuation, one to two characters.
    Punct,
    /// A character HQL never uses outside strings, comments and quoted names.
    Unknown(char),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    pub kind: TokKind,
    pub span: Span,
}

impl Token {
    pub fn text(self, src: &str) -> &str {
        self.span.text(src)
    }
}

const TWO_CHAR: [&str; 10] = ["==", "!=", "<>", "<=", ">=", "=~", "!~", "..", "&&", "||"];
const ONE_CHAR: &str = "|()[],.=!<>~+-*/%:";

pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Tokenizes all of `src`, skipping whitespace and `//` comments.
pub(crate) fn tokens(src: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(tok) = next_token(src, pos) {
        pos = tok.span.end;
        out.push(tok);
    }
    out
}

/// The first token at or after byte `pos` (which must be a char boundary), if any.
pub(crate) fn next_token(src: &str, mut pos: usize) -> Option<Token> {
    let bytes = src.as_bytes();
    // Skip whitespace and comments.
    loop {
        let rest = src.get(pos..)?;
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        pos += rest.len() - trimmed.len();
        if trimmed.starts_with("//") {
            pos += trimmed.find('\n').unwrap_or(trimmed.len());
        } else {
            break;
        }
    }
    let rest = &src[pos..];
    let c = rest.chars().next()?;
    let start = pos;
    let tok = |kind, end: usize| {
        Some(Token {
            kind,
            span: Span::new(start, end),
        })
    };

    if c == '"' || c == '\'' {
        let (end, terminated) = scan_escaped(src, pos + 1, c);
        return tok(TokKind::Str { terminated }, end);
    }
    if c == '@' && (rest.starts_with("@\"") || rest.starts_with("@'")) {
        let q = if rest.starts_with("@\"") { '"' } else { '\'' };
        let (end, terminated) = scan_doubled(src, pos + 2, q);
        return tok(TokKind::Str { terminated }, end);
    }
    if c == '`' {
        let (end, terminated) = scan_doubled(src, pos + 1, '`');
        return tok(TokKind::Quoted { terminated }, end);
    }
    if c.is_ascii_digit() {
        let mut i = pos;
        let digits = |mut i: usize| {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            i
        };
        i = digits(i);
        if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
            i = digits(i + 1);
        }
        if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
            let mut j = i + 1;
            if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                j += 1;
            }
            if j < bytes.len() && bytes[j].is_ascii_digit() {
                i = digits(j);
            }
        }
        while i < bytes.len() && is_ident_char(bytes[i] as char) {
            i += 1;
        }
        return tok(TokKind::Number, i);
    }
    if c.is_ascii_alphabetic() || c == '_' {
        let len = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
        return tok(TokKind::Word, pos + len);
    }
    if TWO_CHAR.iter().any(|p| rest.starts_with(p)) {
        return tok(TokKind::Punct, pos + 2);
    }
    if ONE_CHAR.contains(c) {
        return tok(TokKind::Punct, pos + 1);
    }
    tok(TokKind::Unknown(c), pos + c.len_utf8())
}

/// Scans a `\`-escaped string body from `pos` to the closing `quote`. Returns the end (after the
/// quote, or at the newline / end of input) and whether the quote was found.
fn scan_escaped(src: &str, mut pos: usize, quote: char) -> (usize, bool) {
    let mut chars = src[pos..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => return (pos, false),
            '\\' => {
                pos += 1;
                match chars.next() {
                    Some('\n') | None => return (pos, false),
                    Some(e) => pos += e.len_utf8(),
                }
            }
            c if c == quote => return (pos + 1, true),
            c => pos += c.len_utf8(),
        }
    }
    (pos, false)
}

/// Scans a body where a doubled `quote` stands for itself (raw strings, quoted identifiers).
fn scan_doubled(src: &str, mut pos: usize, quote: char) -> (usize, bool) {
    let mut chars = src[pos..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            return (pos, false);
        }
        if c == quote {
            if chars.peek() == Some(&quote) {
                chars.next();
                pos += 2 * quote.len_utf8();
                continue;
            }
            return (pos + 1, true);
        }
        pos += c.len_utf8();
    }
    (pos, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(TokKind, &str)> {
        tokens(src)
            .into_iter()
            .map(|t| (t.kind, t.text(src)))
            .collect()
    }

    #[test]
    fn lexes() {
        use TokKind::*;
        assert_eq!(
            kinds("a // c\n| x==1.5e3 \"s\\\"\" @'it''s' `a``b` 7d 1..2 é"),
            vec![
                (Word, "a"),
                (Punct, "|"),
                (Word, "x"),
                (Punct, "=="),
                (Number, "1.5e3"),
                (Str { terminated: true }, "\"s\\\"\""),
                (Str { terminated: true }, "@'it''s'"),
                (Quoted { terminated: true }, "`a``b`"),
                (Number, "7d"),
                (Number, "1"),
                (Punct, ".."),
                (Number, "2"),
                (Unknown('é'), "é"),
            ]
        );
        assert_eq!(
            kinds("\"abc\nx"),
            vec![(Str { terminated: false }, "\"abc"), (Word, "x")]
        );
    }
}
