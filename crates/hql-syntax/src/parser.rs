//! pest pairs → typed AST. Everything that can go wrong with well-formed pairs (bad escapes,
//! numbers out of range, unknown operators, wrong `iff` arity, too deep trees) is reported here
//! with a span; pest's own failures go through [`crate::diagnose`].

use pest::Parser as _;
use pest::iterators::Pair;

use crate::MAX_AST_DEPTH;
use crate::ast::*;
use crate::diagnose;
use crate::error::{Diagnostic, codes};
use crate::literal;
use crate::suggest::did_you_mean;

#[derive(pest_derive::Parser)]
#[grammar = "../../../grammar/hql.pest"]
pub(crate) struct HqlParser;

/// Operator names accepted after `|`, canonical ones first.
pub(crate) const OPERATORS: [&str; 14] = [
    "where",
    "summarize",
    "extend",
    "project",
    "project-away",
    "project-rename",
    "sort",
    "take",
    "top",
    "distinct",
    "count",
    "filter",
    "order",
    "limit",
];

pub(crate) const OPERATOR_LIST: &str = "where, summarize, extend, project, project-away, \
     project-rename, sort, take, top, distinct and count";

/// KQL operators HQL does not have (yet): named as such rather than "unknown".
const KQL_ONLY: [&str; 30] = [
    "join",
    "union",
    "lookup",
    "mv-expand",
    "mv-apply",
    "parse",
    "parse-where",
    "parse-kv",
    "render",
    "make-series",
    "evaluate",
    "as",
    "getschema",
    "sample",
    "sample-distinct",
    "search",
    "serialize",
    "invoke",
    "fork",
    "facet",
    "find",
    "range",
    "print",
    "let",
    "top-nested",
    "top-hitters",
    "scan",
    "partition",
    "reduce",
    "externaldata",
];

type Result<T> = std::result::Result<T, Diagnostic>;

pub(crate) fn parse_query(src: &str) -> Result<Query> {
    let mut pairs =
        HqlParser::parse(Rule::query, src).map_err(|e| diagnose::pest_error(src, &e))?;
    let query = pairs.next().ok_or_else(|| internal(src))?;
    Builder::new(src).query(query)
}

pub(crate) fn parse_expr(src: &str) -> Result<Expr> {
    let mut pairs =
        HqlParser::parse(Rule::expr_only, src).map_err(|e| diagnose::pest_error(src, &e))?;
    let top = pairs.next().ok_or_else(|| internal(src))?;
    let expr = top
        .into_inner()
        .find(|p| p.as_rule() == Rule::expr)
        .ok_or_else(|| internal(src))?;
    Ok(Builder::new(src).expr(expr)?.expr)
}

fn internal(src: &str) -> Diagnostic {
    Diagnostic::new(
        src,
        Span::new(0, 0),
        codes::SYNTAX,
        "internal error: the parser produced an unexpected tree",
    )
}

/// An expression and the depth of its tree (a leaf is 1).
struct Node {
    expr: Expr,
    depth: usize,
}

struct Builder<'s> {
    src: &'s str,
    /// End offsets of every token, ascending: pest's spans of rules that end in a repetition
    /// include the whitespace and comments after them, and [`Builder::span`] trims those.
    ends: Vec<usize>,
}

impl<'s> Builder<'s> {
    fn new(src: &'s str) -> Self {
        Builder {
            src,
            ends: crate::lex::tokens(src).iter().map(|t| t.span.end).collect(),
        }
    }

    /// The span of a pair, without trailing whitespace and comments.
    fn span(&self, p: &Pair<'_, Rule>) -> Span {
        let (start, end) = (p.as_span().start(), p.as_span().end());
        let i = self.ends.partition_point(|&e| e <= end);
        match i.checked_sub(1).map(|i| self.ends[i]) {
            Some(e) if e > start => Span::new(start, e),
            _ => Span::new(start, end),
        }
    }

    fn err(&self, span: Span, code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.src, span, code, message)
    }

    fn node(&self, kind: ExprKind, span: Span, depth: usize) -> Result<Node> {
        if depth > MAX_AST_DEPTH {
            return Err(self
                .err(
                    span,
                    codes::TOO_DEEPLY_NESTED,
                    format!("expression is nested more than {MAX_AST_DEPTH} levels deep"),
                )
                .with_hint("shorten long chains: e.g. 'x in (a, b, c)' instead of many 'or's"));
        }
        Ok(Node {
            expr: Expr::new(kind, span),
            depth,
        })
    }

    fn query(&self, pair: Pair<'s, Rule>) -> Result<Query> {
        let mut source = None;
        let mut ops = Vec::new();
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::source => {
                    let cref = p.into_inner().next().ok_or_else(|| internal(self.src))?;
                    let id = self.ident(cref)?;
                    source = Some(TableRef {
                        name: id.name,
                        quoted: id.quoted,
                        span: id.span,
                    });
                }
                Rule::operator => ops.push(self.operator(p)?),
                _ => {}
            }
        }
        let source = source.ok_or_else(|| internal(self.src))?;
        // The query's span ends at its last token, not at trailing comments or whitespace.
        let end = ops.last().map_or(source.span.end, |o: &Op| o.span.end);
        Ok(Query {
            span: Span::new(source.span.start, end),
            source,
            ops,
        })
    }

    fn ident(&self, pair: Pair<'s, Rule>) -> Result<Ident> {
        // `column_ref` wraps `ident` or `quoted_ident`; accept either level.
        let p = if pair.as_rule() == Rule::column_ref {
            pair.into_inner().next().ok_or_else(|| internal(self.src))?
        } else {
            pair
        };
        let sp = self.span(&p);
        match p.as_rule() {
            Rule::quoted_ident => Ok(Ident {
                name: literal::quoted_name(self.src, p.as_str(), sp)?,
                quoted: true,
                span: sp,
            }),
            _ => Ok(Ident {
                name: p.as_str().to_string(),
                quoted: false,
                span: sp,
            }),
        }
    }

    fn operator(&self, pair: Pair<'s, Rule>) -> Result<Op> {
        let inner = pair.into_inner().next().ok_or_else(|| internal(self.src))?;
        let sp = self.span(&inner);
        let rule = inner.as_rule();
        let mut parts = inner.into_inner().peekable();
        let kind = match rule {
            Rule::where_op => {
                let e = self.find_expr(&mut parts)?;
                OpKind::Where { predicate: e }
            }
            Rule::summarize_op => {
                let mut aggregates = Vec::new();
                let mut by = Vec::new();
                for p in parts {
                    match p.as_rule() {
                        Rule::named_list => aggregates = self.named_list(p)?,
                        Rule::summarize_by => {
                            for q in p.into_inner() {
                                if q.as_rule() == Rule::named_list {
                                    by = self.named_list(q)?;
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if aggregates.is_empty() && by.is_empty() {
                    return Err(self
                        .err(
                            sp,
                            codes::EXPECTED_EXPRESSION,
                            "summarize needs aggregates, a 'by' clause, or both",
                        )
                        .with_hint("e.g. 'summarize requests = count() by model'"));
                }
                OpKind::Summarize { aggregates, by }
            }
            Rule::extend_op => OpKind::Extend {
                columns: self.named_list_in(parts)?,
            },
            Rule::project_op => OpKind::Project {
                columns: self.named_list_in(parts)?,
            },
            Rule::distinct_op => OpKind::Distinct {
                columns: self.named_list_in(parts)?,
            },
            Rule::project_away_op => OpKind::ProjectAway {
                columns: parts
                    .filter(|p| p.as_rule() == Rule::column_ref)
                    .map(|p| self.ident(p))
                    .collect::<Result<_>>()?,
            },
            Rule::project_rename_op => {
                let mut renames = Vec::new();
                for p in parts.filter(|p| p.as_rule() == Rule::rename) {
                    let rsp = self.span(&p);
                    let mut ids = p.into_inner().filter(|q| q.as_rule() == Rule::column_ref);
                    let (Some(new), Some(old)) = (ids.next(), ids.next()) else {
                        return Err(internal(self.src));
                    };
                    renames.push(Rename {
                        new: self.ident(new)?,
                        old: self.ident(old)?,
                        span: rsp,
                    });
                }
                OpKind::ProjectRename { renames }
            }
            Rule::sort_op => OpKind::Sort {
                keys: self.sort_keys(parts)?,
            },
            Rule::take_op => {
                let n = parts
                    .find(|p| p.as_rule() == Rule::number)
                    .ok_or_else(|| internal(self.src))?;
                OpKind::Take {
                    count: self.row_count(n, "take")?,
                }
            }
            Rule::top_op => {
                let n = parts
                    .next_if(|p| p.as_rule() == Rule::kw_top)
                    .and_then(|_| parts.next())
                    .ok_or_else(|| internal(self.src))?;
                let count = self.row_count(n, "top")?;
                OpKind::Top {
                    count,
                    by: self.sort_keys(parts)?,
                }
            }
            Rule::count_op => OpKind::Count,
            Rule::unknown_op => {
                let word = parts
                    .find(|p| p.as_rule() == Rule::operator_word)
                    .ok_or_else(|| internal(self.src))?;
                return Err(self.unknown_operator(word.as_str(), self.span(&word)));
            }
            _ => return Err(internal(self.src)),
        };
        Ok(Op { kind, span: sp })
    }

    fn unknown_operator(&self, word: &str, sp: Span) -> Diagnostic {
        let lower = word.to_ascii_lowercase();
        if KQL_ONLY.contains(&lower.as_str()) {
            return self
                .err(
                    sp,
                    codes::UNSUPPORTED_OPERATOR,
                    format!("'{word}' is a KQL operator that HQL does not support (yet)"),
                )
                .with_hint(format!("HQL's operators are {OPERATOR_LIST}"));
        }
        let d = self.err(
            sp,
            codes::UNKNOWN_OPERATOR,
            format!("unknown operator '{word}'"),
        );
        let sql = match lower.as_str() {
            "select" => Some("to choose columns use 'project'"),
            "group" | "groupby" | "group-by" | "aggregate" => {
                Some("to group use 'summarize … by …', e.g. 'summarize count() by model'")
            }
            "having" => Some("to filter groups put a 'where' after 'summarize'"),
            "head" => Some("did you mean 'take'?"),
            "orderby" | "sortby" => Some("write 'sort by' (or 'order by')"),
            "dedup" | "unique" | "uniq" => Some("did you mean 'distinct'?"),
            _ => None,
        };
        if let Some(h) = sql {
            return d.with_hint(h);
        }
        match did_you_mean(word, OPERATORS) {
            Some(s) if s.eq_ignore_ascii_case(word) => {
                d.with_hint(format!("operator names are lowercase: did you mean '{s}'?"))
            }
            Some(s) => d.with_hint(format!("did you mean '{s}'?")),
            None => d.with_hint(format!("operators are {OPERATOR_LIST}")),
        }
    }

    fn row_count(&self, n: Pair<'s, Rule>, op: &str) -> Result<u64> {
        let sp = self.span(&n);
        let text = n.as_str();
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self
                .err(
                    sp,
                    codes::INVALID_NUMBER,
                    format!("'{op}' needs a whole number of rows, found '{text}'"),
                )
                .with_hint(format!("e.g. '{op} 100'")));
        }
        text.parse::<u64>().map_err(|_| {
            self.err(
                sp,
                codes::NUMBER_OUT_OF_RANGE,
                format!("row count '{text}' is out of range"),
            )
        })
    }

    fn find_expr(&self, parts: &mut impl Iterator<Item = Pair<'s, Rule>>) -> Result<Expr> {
        let p = parts
            .find(|p| p.as_rule() == Rule::expr)
            .ok_or_else(|| internal(self.src))?;
        Ok(self.expr(p)?.expr)
    }

    fn named_list_in(
        &self,
        mut parts: impl Iterator<Item = Pair<'s, Rule>>,
    ) -> Result<Vec<NamedExpr>> {
        let list = parts
            .find(|p| p.as_rule() == Rule::named_list)
            .ok_or_else(|| internal(self.src))?;
        self.named_list(list)
    }

    fn named_list(&self, pair: Pair<'s, Rule>) -> Result<Vec<NamedExpr>> {
        let mut out = Vec::new();
        for item in pair
            .into_inner()
            .filter(|p| p.as_rule() == Rule::named_item)
        {
            let isp = self.span(&item);
            let mut alias = None;
            let mut expr = None;
            for p in item.into_inner() {
                match p.as_rule() {
                    Rule::column_ref => alias = Some(self.ident(p)?),
                    Rule::expr => expr = Some(self.expr(p)?.expr),
                    _ => {}
                }
            }
            let expr = expr.ok_or_else(|| internal(self.src))?;
            out.push(NamedExpr {
                alias,
                span: Span::new(isp.start, expr.span.end),
                expr,
            });
        }
        Ok(out)
    }

    fn sort_keys(&self, parts: impl Iterator<Item = Pair<'s, Rule>>) -> Result<Vec<SortKey>> {
        let mut keys = Vec::new();
        for key in parts.filter(|p| p.as_rule() == Rule::sort_key) {
            let ksp = self.span(&key);
            let mut expr = None;
            let mut order = SortOrder::Desc;
            let mut nulls = NullsOrder::Last;
            let mut end = ksp.start;
            for p in key.into_inner() {
                end = self.span(&p).end;
                match p.as_rule() {
                    Rule::expr => expr = Some(self.expr(p)?.expr),
                    Rule::sort_order => {
                        order = if p.as_str() == "asc" {
                            SortOrder::Asc
                        } else {
                            SortOrder::Desc
                        }
                    }
                    Rule::nulls_order if p.into_inner().any(|q| q.as_rule() == Rule::kw_first) => {
                        nulls = NullsOrder::First;
                    }
                    _ => {}
                }
            }
            keys.push(SortKey {
                expr: expr.ok_or_else(|| internal(self.src))?,
                order,
                nulls,
                span: Span::new(ksp.start, end),
            });
        }
        Ok(keys)
    }

    // ----------------------------------------------------------------------------------------
    // Expressions

    fn expr(&self, mut pair: Pair<'s, Rule>) -> Result<Node> {
        // Most levels of the precedence ladder hold a single child (`(x)` is or_expr → and_expr
        // → … → unary → paren): step through those in a loop, so a nesting level costs a couple
        // of stack frames, not one per grammar level.
        loop {
            let wrapper = matches!(
                pair.as_rule(),
                Rule::expr
                    | Rule::or_expr
                    | Rule::and_expr
                    | Rule::not_expr
                    | Rule::predicate
                    | Rule::additive
                    | Rule::multiplicative
                    | Rule::unary
            );
            if !wrapper {
                break;
            }
            let mut inner = pair.clone().into_inner();
            match (inner.next(), inner.next()) {
                (Some(only), None) => pair = only,
                _ => break,
            }
        }
        match pair.as_rule() {
            Rule::expr => {
                let inner = pair.into_inner().next().ok_or_else(|| internal(self.src))?;
                self.expr(inner)
            }
            Rule::or_expr => self.chain(pair, |_| Some(BinaryOp::Or)),
            Rule::and_expr => self.chain(pair, |_| Some(BinaryOp::And)),
            Rule::additive => self.chain(pair, |s| match s {
                "+" => Some(BinaryOp::Add),
                "-" => Some(BinaryOp::Sub),
                _ => None,
            }),
            Rule::multiplicative => self.chain(pair, |s| match s {
                "*" => Some(BinaryOp::Mul),
                "/" => Some(BinaryOp::Div),
                "%" => Some(BinaryOp::Mod),
                _ => None,
            }),
            Rule::call => self.call(pair),
            Rule::paren => self.paren(pair),
            Rule::not_expr => self.not_expr(pair),
            Rule::predicate => self.predicate(pair),
            Rule::unary => self.unary(pair),
            _ => self.primary(pair),
        }
    }

    fn paren(&self, pair: Pair<'s, Rule>) -> Result<Node> {
        let sp = self.span(&pair);
        let inner = pair
            .into_inner()
            .find(|p| p.as_rule() == Rule::expr)
            .ok_or_else(|| internal(self.src))?;
        let mut n = self.expr(inner)?;
        // The parentheses belong to the node, so errors about it underline them too.
        n.expr.span = sp;
        Ok(n)
    }

    /// A left-associative chain `a op b op c`: operands are every other child. Built in a loop
    /// so a long chain never recurses; its depth grows by one per operator.
    fn chain(
        &self,
        pair: Pair<'s, Rule>,
        op_of: impl Fn(&str) -> Option<BinaryOp>,
    ) -> Result<Node> {
        let mut parts = pair.into_inner();
        let first = parts.next().ok_or_else(|| internal(self.src))?;
        let mut acc = self.expr(first)?;
        while let Some(op_pair) = parts.next() {
            let op = op_of(op_pair.as_str()).ok_or_else(|| internal(self.src))?;
            let rhs = parts.next().ok_or_else(|| internal(self.src))?;
            let rhs = self.expr(rhs)?;
            let sp = acc.expr.span.to(rhs.expr.span);
            let depth = acc.depth.max(rhs.depth) + 1;
            acc = self.node(
                ExprKind::Binary {
                    op,
                    left: Box::new(acc.expr),
                    right: Box::new(rhs.expr),
                },
                sp,
                depth,
            )?;
        }
        Ok(acc)
    }

    fn not_expr(&self, pair: Pair<'s, Rule>) -> Result<Node> {
        let mut nots = Vec::new();
        let mut operand = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::kw_not => nots.push(self.span(&p).start),
                _ => operand = Some(self.expr(p)?),
            }
        }
        let mut acc = operand.ok_or_else(|| internal(self.src))?;
        for start in nots.into_iter().rev() {
            let sp = Span::new(start, acc.expr.span.end);
            let depth = acc.depth + 1;
            acc = self.node(
                ExprKind::Unary {
                    op: UnaryOp::Not,
                    operand: Box::new(acc.expr),
                },
                sp,
                depth,
            )?;
        }
        Ok(acc)
    }

    fn predicate(&self, pair: Pair<'s, Rule>) -> Result<Node> {
        let mut parts = pair.into_inner();
        let lhs = self.expr(parts.next().ok_or_else(|| internal(self.src))?)?;
        let Some(test) = parts.next() else {
            return Ok(lhs);
        };
        let tsp = self.span(&test);
        let sp = Span::new(lhs.expr.span.start, tsp.end);
        let rule = test.as_rule();
        let mut not_kw = None;
        let mut op_text = "";
        let mut operands: Vec<Node> = Vec::new();
        let mut is_not = false;
        for p in test.into_inner() {
            match p.as_rule() {
                Rule::kw_not if rule == Rule::null_test => is_not = true,
                Rule::kw_not => not_kw = Some(self.span(&p)),
                Rule::cmp_op
                | Rule::in_op
                | Rule::between_op
                | Rule::string_op
                | Rule::matches_op => {
                    op_text = p.as_str();
                }
                Rule::additive | Rule::expr => operands.push(self.expr(p)?),
                _ => {}
            }
        }
        let bang = op_text.starts_with('!');
        if let (Some(ns), true) = (not_kw, bang) {
            return Err(self
                .err(
                    ns,
                    codes::SYNTAX,
                    format!("'not' and '{op_text}' negate twice"),
                )
                .with_hint(format!(
                    "write either 'not {}' or '{op_text}'",
                    &op_text[1..]
                )));
        }
        let negated = bang || not_kw.is_some();
        let depth = operands
            .iter()
            .map(|n| n.depth)
            .max()
            .unwrap_or(0)
            .max(lhs.depth)
            + 1;
        let mut operands = operands.into_iter().map(|n| Box::new(n.expr));
        let mut next = || operands.next().ok_or_else(|| internal(self.src));
        let expr = Box::new(lhs.expr);
        let kind = match rule {
            Rule::compare => {
                let op = match op_text {
                    "==" => BinaryOp::Eq,
                    "!=" | "<>" => BinaryOp::NotEq,
                    "=~" => BinaryOp::EqIgnoreCase,
                    "!~" => BinaryOp::NotEqIgnoreCase,
                    "<" => BinaryOp::Lt,
                    "<=" => BinaryOp::LtEq,
                    ">" => BinaryOp::Gt,
                    ">=" => BinaryOp::GtEq,
                    _ => return Err(internal(self.src)),
                };
                ExprKind::Binary {
                    op,
                    left: expr,
                    right: next()?,
                }
            }
            Rule::in_test => {
                let list: Vec<Expr> = std::iter::from_fn(|| next().ok()).map(|b| *b).collect();
                ExprKind::InList {
                    expr,
                    list,
                    negated,
                    case_insensitive: op_text.ends_with('~'),
                }
            }
            Rule::between_test => ExprKind::Between {
                expr,
                low: next()?,
                high: next()?,
                negated,
            },
            Rule::null_test => ExprKind::IsNull {
                expr,
                negated: is_not,
            },
            Rule::string_test | Rule::regex_test => {
                let word = op_text.trim_start_matches('!');
                let (base, cs) = match word.strip_suffix("_cs") {
                    Some(b) => (b, true),
                    None => (word, false),
                };
                let op = match base {
                    "contains" => StringOp::Contains,
                    "startswith" => StringOp::StartsWith,
                    "endswith" => StringOp::EndsWith,
                    "matches" => StringOp::MatchesRegex,
                    _ => return Err(internal(self.src)),
                };
                ExprKind::StringMatch {
                    op,
                    expr,
                    pattern: next()?,
                    negated,
                    case_sensitive: cs || op == StringOp::MatchesRegex,
                }
            }
            _ => return Err(internal(self.src)),
        };
        self.node(kind, sp, depth)
    }

    fn unary(&self, pair: Pair<'s, Rule>) -> Result<Node> {
        let mut negs = Vec::new();
        let mut operand = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::neg_op => negs.push(self.span(&p).start),
                _ => operand = Some(p),
            }
        }
        let operand = operand.ok_or_else(|| internal(self.src))?;
        if let (Some(&first), Some(number)) = (negs.first(), number_of(&operand)) {
            // Fold the signs into the literal: `-5`, `-1.5`, `-1h`, and i64::MIN fits.
            let sp = Span::new(first, self.span(&operand).end);
            let value = self.number(number, negs.len() % 2 == 1, sp)?;
            return self.node(ExprKind::Literal { value }, sp, 1);
        }
        let mut acc = self.expr(operand)?;
        for start in negs.into_iter().rev() {
            let sp = Span::new(start, acc.expr.span.end);
            let depth = acc.depth + 1;
            acc = self.node(
                ExprKind::Unary {
                    op: UnaryOp::Neg,
                    operand: Box::new(acc.expr),
                },
                sp,
                depth,
            )?;
        }
        Ok(acc)
    }

    fn number(&self, pair: Pair<'s, Rule>, negative: bool, sp: Span) -> Result<Literal> {
        let mut body = "";
        let mut suffix = None;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::number_body => body = p.as_str(),
                Rule::number_suffix => suffix = Some((p.as_str(), self.span(&p))),
                _ => {}
            }
        }
        literal::number_value(self.src, body, suffix, negative, sp)
    }

    fn primary(&self, pair: Pair<'s, Rule>) -> Result<Node> {
        let sp = self.span(&pair);
        match pair.as_rule() {
            Rule::literal => {
                let p = pair.into_inner().next().ok_or_else(|| internal(self.src))?;
                let value = match p.as_rule() {
                    Rule::number => self.number(p, false, sp)?,
                    Rule::string => Literal::String(self.string(p)?),
                    Rule::boolean => Literal::Bool(p.as_str() == "true"),
                    Rule::null => Literal::Null,
                    _ => return Err(internal(self.src)),
                };
                self.node(ExprKind::Literal { value }, sp, 1)
            }
            Rule::datetime_lit => {
                let p = pair
                    .into_inner()
                    .find(|p| matches!(p.as_rule(), Rule::string | Rule::datetime_text))
                    .ok_or_else(|| internal(self.src))?;
                let psp = self.span(&p);
                let text = if p.as_rule() == Rule::string {
                    self.string(p)?
                } else {
                    p.as_str().trim_end().to_string()
                };
                match literal::parse_datetime(&text) {
                    Some(micros) => self.node(
                        ExprKind::Literal {
                            value: Literal::DateTime(micros),
                        },
                        sp,
                        1,
                    ),
                    None => Err(self
                        .err(
                            Span::new(psp.start, psp.start + text.len().min(psp.len())),
                            codes::INVALID_DATETIME,
                            format!("invalid datetime '{text}'"),
                        )
                        .with_hint(
                            "write datetime(2026-11-01), datetime(2026-11-01 10:30:00) or \
                             datetime(2026-11-01T10:30:00.5+02:00); no offset means UTC",
                        )),
                }
            }
            Rule::property => {
                let p = pair.into_inner().next().ok_or_else(|| internal(self.src))?;
                self.property(p, sp)
            }
            Rule::column => {
                let p = pair.into_inner().next().ok_or_else(|| internal(self.src))?;
                let name = self.ident(p)?;
                self.node(ExprKind::Column { name }, sp, 1)
            }
            _ => Err(internal(self.src)),
        }
    }

    fn string(&self, pair: Pair<'s, Rule>) -> Result<String> {
        literal::string_value(self.src, pair.as_str(), self.span(&pair))
    }

    fn property(&self, pair: Pair<'s, Rule>, sp: Span) -> Result<Node> {
        let mut column = None;
        let mut keys: Vec<String> = Vec::new();
        let mut key_span: Option<Span> = None;
        let extend = |ks: &mut Option<Span>, s: Span| {
            *ks = Some(ks.map_or(s, |k| k.to(s)));
        };
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::column_ref => column = Some(self.ident(p)?),
                Rule::property_dot => {
                    let seg = p.into_inner().next().ok_or_else(|| internal(self.src))?;
                    let ssp = self.span(&seg);
                    extend(&mut key_span, ssp);
                    keys.push(if seg.as_rule() == Rule::quoted_ident {
                        literal::quoted_name(self.src, seg.as_str(), ssp)?
                    } else {
                        seg.as_str().to_string()
                    });
                }
                Rule::string => {
                    extend(&mut key_span, self.span(&p));
                    keys.push(self.string(p)?);
                }
                _ => {}
            }
        }
        let column = column.ok_or_else(|| internal(self.src))?;
        self.node(
            ExprKind::Property {
                column,
                key: keys.join("."),
                key_span: key_span.unwrap_or(sp),
            },
            sp,
            1,
        )
    }

    /// On the recursive path (`f(g(h(x)))`), so it keeps its frame small: the special forms and
    /// errors are built in [`Builder::finish_call`].
    fn call(&self, pair: Pair<'s, Rule>) -> Result<Node> {
        let sp = self.span(&pair);
        let mut name = None;
        let mut args = Vec::new();
        let mut depth = 0;
        for p in pair.into_inner() {
            match p.as_rule() {
                Rule::function_name => name = Some(p),
                Rule::expr => {
                    let n = self.expr(p)?;
                    depth = depth.max(n.depth);
                    args.push(n.expr);
                }
                _ => {}
            }
        }
        let name = name.ok_or_else(|| internal(self.src))?;
        let name = Ident {
            name: name.as_str().to_string(),
            quoted: false,
            span: self.span(&name),
        };
        self.finish_call(name, args, sp, depth + 1)
    }

    #[inline(never)]
    fn finish_call(&self, name: Ident, args: Vec<Expr>, sp: Span, depth: usize) -> Result<Node> {
        let arity = |want: &str| {
            self.err(
                sp,
                codes::WRONG_ARGUMENT_COUNT,
                format!("{} takes {want}, got {}", name.name, args.len()),
            )
        };
        match name.name.as_str() {
            "iff" | "iif" => {
                if args.len() != 3 {
                    return Err(arity("3 arguments").with_hint(format!(
                        "{}(condition, value_if_true, value_if_false)",
                        name.name
                    )));
                }
                let mut it = args.into_iter();
                let (Some(when), Some(then), Some(otherwise)) = (it.next(), it.next(), it.next())
                else {
                    return Err(internal(self.src));
                };
                self.node(
                    ExprKind::Case {
                        branches: vec![CaseBranch { when, then }],
                        otherwise: Box::new(otherwise),
                    },
                    sp,
                    depth,
                )
            }
            "case" => {
                if args.len() < 3 || args.len().is_multiple_of(2) {
                    return Err(arity("condition/value pairs and a final else value")
                        .with_hint("case(condition1, value1, condition2, value2, …, else_value)"));
                }
                let mut it = args.into_iter();
                let mut branches = Vec::new();
                let mut otherwise = None;
                while let Some(a) = it.next() {
                    match it.next() {
                        Some(b) => branches.push(CaseBranch { when: a, then: b }),
                        None => otherwise = Some(a),
                    }
                }
                let otherwise = otherwise.ok_or_else(|| internal(self.src))?;
                self.node(
                    ExprKind::Case {
                        branches,
                        otherwise: Box::new(otherwise),
                    },
                    sp,
                    depth,
                )
            }
            "datetime" => Err(self
                .err(
                    sp,
                    codes::INVALID_DATETIME,
                    "datetime(…) takes a literal date, not an expression",
                )
                .with_hint("to convert a value use todatetime(x)")),
            _ => self.node(ExprKind::Call { name, args }, sp, depth),
        }
    }
}

/// The `number` pair inside a `literal` pair, if `pair` is a number literal.
fn number_of<'s>(pair: &Pair<'s, Rule>) -> Option<Pair<'s, Rule>> {
    if pair.as_rule() != Rule::literal {
        return None;
    }
    pair.clone()
        .into_inner()
        .next()
        .filter(|p| p.as_rule() == Rule::number)
}
