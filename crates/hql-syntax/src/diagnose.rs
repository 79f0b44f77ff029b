//! Turns pest's "expected rule X, Y, Z at position P" into a sentence a person can act on: what
//! was expected (in words, not rule names), what was found, after what, and a hint for the
//! usual mistakes (`=` for `==`, `&&`, misspelt keywords, chained comparisons, …).

use std::collections::BTreeSet;

use pest::error::{ErrorVariant, InputLocation};

use crate::ast::Span;
use crate::error::{Diagnostic, codes};
use crate::lex::{TokKind, Token, next_token, tokens};
use crate::parser::{OPERATOR_LIST, Rule};
use crate::suggest::did_you_mean;

/// What pest was looking for, in the order the message lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Expect {
    TableName,
    Operator,
    Expression,
    ColumnName,
    PropertyName,
    Number,
    Str,
    Date,
    Assign,
    LParen,
    DotDot,
    Keyword(&'static str),
    SortOrder,
    Nulls,
    FirstLast,
    RParen,
    RBracket,
    Comma,
    Pipe,
    End,
    /// Something that would continue a complete expression (`==`, `and`, `+`, `in`, …).
    Continuation,
}

impl Expect {
    fn describe(self) -> String {
        match self {
            Expect::TableName => "a table name".into(),
            Expect::Operator => "an operator".into(),
            Expect::Expression => "an expression".into(),
            Expect::ColumnName => "a column name".into(),
            Expect::PropertyName => "a property name".into(),
            Expect::Number => "a number".into(),
            Expect::Str => "a string".into(),
            Expect::Date => "a date such as 2026-11-01".into(),
            Expect::Assign => "'='".into(),
            Expect::LParen => "'('".into(),
            Expect::DotDot => "'..'".into(),
            Expect::Keyword(k) => format!("'{k}'"),
            Expect::SortOrder => "'asc' or 'desc'".into(),
            Expect::Nulls => "'nulls first' or 'nulls last'".into(),
            Expect::FirstLast => "'first' or 'last'".into(),
            Expect::RParen => "')'".into(),
            Expect::RBracket => "']'".into(),
            Expect::Comma => "','".into(),
            Expect::Pipe => "'|'".into(),
            Expect::End => "the end of the query".into(),
            Expect::Continuation => "an operator such as '==', 'and' or '+'".into(),
        }
    }
}

fn expect_of(rule: Rule) -> Option<Expect> {
    use Rule::*;
    Some(match rule {
        source => Expect::TableName,
        operator | unknown_op | operator_word | known_operator | kw_where | kw_filter
        | kw_summarize | kw_extend | kw_project | kw_project_away | kw_project_rename | kw_sort
        | kw_order | kw_take | kw_limit | kw_top | kw_distinct | kw_count => Expect::Operator,
        expr | or_expr | and_expr | not_expr | predicate | additive | multiplicative | unary
        | literal | call | property | dotted_property | bracket_property | column | paren
        | named_list | named_item | sort_key | datetime_lit | boolean | null | function_name => {
            Expect::Expression
        }
        column_ref | ident | quoted_ident | rename => Expect::ColumnName,
        key_word => Expect::PropertyName,
        number | number_body => Expect::Number,
        string | dq_string | sq_string | raw_string => Expect::Str,
        datetime_text => Expect::Date,
        assign => Expect::Assign,
        lparen => Expect::LParen,
        dotdot => Expect::DotDot,
        kw_by | summarize_by => Expect::Keyword("by"),
        kw_regex => Expect::Keyword("regex"),
        kw_null => Expect::Keyword("null"),
        sort_order => Expect::SortOrder,
        kw_nulls | nulls_order => Expect::Nulls,
        kw_first | kw_last => Expect::FirstLast,
        rparen => Expect::RParen,
        rbracket => Expect::RBracket,
        comma => Expect::Comma,
        pipe => Expect::Pipe,
        EOI => Expect::End,
        compare | in_test | between_test | null_test | string_test | regex_test | cmp_op
        | add_op | mul_op | neg_op | in_op | between_op | string_op | matches_op | kw_and
        | kw_or | kw_is | kw_not | property_dot | lbracket => Expect::Continuation,
        _ => return None,
    })
}

const COMPARISONS: [&str; 9] = ["==", "!=", "<>", "<=", ">=", "=~", "!~", "<", ">"];

/// Words that continue an expression, for "did you mean" on a misspelt keyword.
const CONTINUATION_WORDS: [&str; 13] = [
    "and",
    "or",
    "in",
    "between",
    "contains",
    "startswith",
    "endswith",
    "contains_cs",
    "startswith_cs",
    "endswith_cs",
    "matches",
    "is",
    "not",
];

pub(crate) fn pest_error(src: &str, err: &pest::error::Error<Rule>) -> Diagnostic {
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let positives = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives,
        ErrorVariant::CustomError { message } => {
            // pest's own guards: "stack limit reached" / "call limit reached".
            return Diagnostic::new(
                src,
                Span::new(pos, pos),
                codes::TOO_DEEPLY_NESTED,
                format!("query is too complex to parse ({message})"),
            )
            .with_hint("simplify the query");
        }
    };
    let expects: BTreeSet<Expect> = positives.iter().filter_map(|r| expect_of(*r)).collect();
    let found = next_token(src, pos);
    let prev = tokens(src)
        .into_iter()
        .take_while(|t| t.span.end <= pos)
        .last();
    describe(src, &expects, found, prev)
}

fn quoted(src: &str, tok: Option<Token>) -> String {
    match tok {
        None => "the end of the query".into(),
        Some(t) => {
            let text = t.text(src);
            if text.chars().count() > 24 {
                let short: String = text.chars().take(20).collect();
                format!("'{short}…'")
            } else {
                format!("'{text}'")
            }
        }
    }
}

fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn describe(
    src: &str,
    expects: &BTreeSet<Expect>,
    found: Option<Token>,
    prev: Option<Token>,
) -> Diagnostic {
    // At the end of the query, point just after the last token rather than at a blank line.
    let end = prev.map_or(src.len(), |p| p.span.end);
    let at = found.map_or(Span::new(end, end), |t| t.span);
    let found_text = found.map_or("", |t| t.text(src));
    let found_q = quoted(src, found);
    let after = prev.map_or(String::new(), |p| {
        format!(" after {}", quoted(src, Some(p)))
    });
    let prev_text = prev.map_or("", |p| p.text(src));
    let is_word = matches!(found.map(|t| t.kind), Some(TokKind::Word));

    if expects.is_empty() {
        return Diagnostic::new(src, at, codes::SYNTAX, format!("unexpected {found_q}"));
    }
    if expects.contains(&Expect::TableName)
        || (prev.is_none() && !expects.contains(&Expect::Expression))
    {
        return Diagnostic::new(
            src,
            at,
            codes::SYNTAX,
            format!("a query starts with a table name, found {found_q}"),
        )
        .with_hint("e.g. 'requests | where status >= 400'");
    }
    if expects.contains(&Expect::Operator) {
        let d = Diagnostic::new(
            src,
            at,
            codes::EXPECTED_OPERATOR,
            format!("expected an operator after '|', found {found_q}"),
        );
        return if found_text == "|" || found_text == "||" {
            d.with_hint("'|' starts the next operator; to combine conditions write 'or'")
        } else {
            d.with_hint(format!("operators are {OPERATOR_LIST}"))
        };
    }

    // `complete`: what came before could end here (a list, an operator or the query could end).
    let complete = [Expect::End, Expect::Pipe, Expect::Comma, Expect::RParen]
        .iter()
        .any(|e| expects.contains(e));
    let continuation = expects.contains(&Expect::Continuation);
    if complete && continuation {
        if found_text == "=" {
            return Diagnostic::new(src, at, codes::SYNTAX, "unexpected '='").with_hint(
                "compare with '=='; a single '=' only names a column, as in 'extend total = a + b'",
            );
        }
        if COMPARISONS.contains(&found_text) {
            return Diagnostic::new(
                src,
                at,
                codes::SYNTAX,
                format!("comparisons cannot be chained: unexpected {found_q}"),
            )
            .with_hint("write 'a < b and b < c'");
        }
    }
    // Once something complete could end here, the ways it could have gone on (`(` of a call,
    // `=` of an alias, `+`, `and`, …) are noise in the message.
    if expects.contains(&Expect::Keyword("null")) {
        return Diagnostic::new(
            src,
            at,
            codes::SYNTAX,
            format!("expected 'null' or 'not null'{after}, found {found_q}"),
        )
        .with_hint("write 'x is null' or 'x is not null'");
    }
    let property = expects.contains(&Expect::PropertyName);
    let mut shown: Vec<Expect> = expects
        .iter()
        .copied()
        .filter(|e| {
            let noise =
                complete && matches!(e, Expect::Continuation | Expect::LParen | Expect::Assign);
            let shadowed = property && *e == Expect::ColumnName;
            !noise && !shadowed
        })
        .collect();
    if shown.is_empty() {
        shown.push(Expect::Continuation);
    }
    let wants_expr =
        shown.contains(&Expect::Expression) && !complete || shown == [Expect::Expression];
    let mut d = if wants_expr {
        Diagnostic::new(
            src,
            at,
            codes::EXPECTED_EXPRESSION,
            format!("expected an expression{after}, found {found_q}"),
        )
    } else {
        let described: Vec<String> = shown.iter().map(|e| e.describe()).collect();
        Diagnostic::new(
            src,
            at,
            codes::SYNTAX,
            format!("expected {}{after}, found {found_q}", list(&described)),
        )
    };
    let at_error = AtError {
        found: found_text,
        prev: prev_text,
        is_word,
        prev_is_name: matches!(
            prev.map(|t| t.kind),
            Some(TokKind::Word | TokKind::Quoted { .. })
        ),
        at_end: found.is_none(),
        complete,
    };
    if let Some(h) = hint(expects, &shown, &at_error) {
        d = d.with_hint(h);
    }
    d
}

/// What surrounds the error position.
struct AtError<'a> {
    found: &'a str,
    prev: &'a str,
    is_word: bool,
    prev_is_name: bool,
    at_end: bool,
    complete: bool,
}

/// The first hint that fits the situation.
fn hint(expects: &BTreeSet<Expect>, shown: &[Expect], at: &AtError<'_>) -> Option<String> {
    let AtError {
        found,
        prev,
        is_word,
        prev_is_name,
        at_end,
        complete,
    } = *at;
    let has = |e: Expect| expects.contains(&e);
    if found == "*" && prev == "(" {
        return Some("count() takes no argument: write count()".into());
    }
    if found == ")" && prev == "(" && has(Expect::Expression) {
        return Some("put at least one value between the parentheses".into());
    }
    if (found == ")" || found == "|" || at_end) && prev == "," {
        return Some("remove the trailing ','".into());
    }
    if found == "(" && prev == "count" {
        return Some(
            "the count operator takes no arguments; for the aggregate write 'summarize count()'"
                .into(),
        );
    }
    if is_word && has(Expect::Expression) && RESERVED.contains(&found) {
        return Some(format!(
            "'{found}' is a reserved word: quote a column with that name in backticks: `{found}`"
        ));
    }
    if found == "=" {
        return Some("compare with '=='".into());
    }
    if (found == "[" || found == ".") && prev_is_name {
        return Some(
            "a map key is written map.key or map[\"key\"], once: properties.Step or \
             properties[\"Step name\"]"
                .into(),
        );
    }
    if has(Expect::DotDot) {
        return Some("a range is written between (low .. high)".into());
    }
    if has(Expect::Number) && !has(Expect::Expression) {
        return Some("write a whole number of rows, e.g. 'take 100' or 'top 10 by cost'".into());
    }
    if is_word {
        let mut words: Vec<&str> = Vec::new();
        for e in shown {
            match e {
                Expect::Keyword(k) => words.push(k),
                Expect::SortOrder => words.extend(["asc", "desc"]),
                Expect::Nulls => words.push("nulls"),
                Expect::FirstLast => words.extend(["first", "last"]),
                _ => {}
            }
        }
        if has(Expect::Continuation) {
            words.extend(CONTINUATION_WORDS);
        }
        if let Some(s) = did_you_mean(found, words.iter().copied()) {
            return Some(format!("did you mean '{s}'?"));
        }
        if found.eq_ignore_ascii_case("like") {
            return Some("use contains, startswith, endswith or 'matches regex'".into());
        }
        if found == "ascending" || found == "descending" {
            return Some(format!("write '{}'", &found[..found.len() - 6]));
        }
        if shown == [Expect::Keyword("by")] {
            return Some(format!("insert 'by' before '{found}'"));
        }
    }
    if complete && !at_end {
        if has(Expect::Comma) && !has(Expect::RParen) {
            return Some("separate items with ','".into());
        }
        if has(Expect::Continuation) && !has(Expect::RParen) && !has(Expect::RBracket) {
            return Some(
                "combine conditions with 'and' or 'or'; start the next operator with '|'".into(),
            );
        }
    }
    None
}

const RESERVED: [&str; 10] = [
    "and", "or", "not", "in", "between", "is", "null", "true", "false", "by",
];
