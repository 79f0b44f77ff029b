//! Two printers for the tree: [`dump`] (an indented outline with spans, one node per line, used
//! by the snapshot tests and handy in a CLI `--explain`) and [`to_hql`] (canonical HQL text that
//! parses back to the same tree, modulo spans).

use std::fmt::Write as _;

use crate::ast::*;
use crate::literal::{format_datetime, format_duration};

/// The query as an indented outline; `spans` appends `@start..end` to every node.
pub fn dump(query: &Query, spans: bool) -> String {
    let mut d = Dumper {
        out: String::new(),
        spans,
    };
    d.line(
        0,
        &format!("query {}", ident_hql(&query.source.name)),
        query.span,
    );
    for op in &query.ops {
        d.op(1, op);
    }
    d.out
}

/// A lone expression as an indented outline.
pub fn dump_expr(expr: &Expr, spans: bool) -> String {
    let mut d = Dumper {
        out: String::new(),
        spans,
    };
    d.expr(0, expr);
    d.out
}

struct Dumper {
    out: String,
    spans: bool,
}

impl Dumper {
    fn line(&mut self, depth: usize, text: &str, span: Span) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        if self.spans {
            let _ = write!(self.out, " @{}..{}", span.start, span.end);
        }
        self.out.push('\n');
    }

    fn op(&mut self, depth: usize, op: &Op) {
        let name = op.kind.name();
        match &op.kind {
            OpKind::Where { predicate } => {
                self.line(depth, name, op.span);
                self.expr(depth + 1, predicate);
            }
            OpKind::Summarize { aggregates, by } => {
                self.line(depth, name, op.span);
                for a in aggregates {
                    self.named(depth + 1, "aggregate", a);
                }
                for b in by {
                    self.named(depth + 1, "by", b);
                }
            }
            OpKind::Extend { columns }
            | OpKind::Project { columns }
            | OpKind::Distinct { columns } => {
                self.line(depth, name, op.span);
                for c in columns {
                    self.named(depth + 1, "column", c);
                }
            }
            OpKind::ProjectAway { columns } => {
                self.line(depth, name, op.span);
                for c in columns {
                    self.line(depth + 1, &format!("column {}", ident_hql(&c.name)), c.span);
                }
            }
            OpKind::ProjectRename { renames } => {
                self.line(depth, name, op.span);
                for r in renames {
                    let text = format!(
                        "rename {} = {}",
                        ident_hql(&r.new.name),
                        ident_hql(&r.old.name)
                    );
                    self.line(depth + 1, &text, r.span);
                }
            }
            OpKind::Sort { keys } => {
                self.line(depth, name, op.span);
                self.keys(depth + 1, keys);
            }
            OpKind::Take { count } => self.line(depth, &format!("take {count}"), op.span),
            OpKind::Top { count, by } => {
                self.line(depth, &format!("top {count}"), op.span);
                self.keys(depth + 1, by);
            }
            OpKind::Count => self.line(depth, name, op.span),
        }
    }

    fn named(&mut self, depth: usize, what: &str, n: &NamedExpr) {
        let text = match (&n.alias, n.output_name()) {
            (Some(a), _) => format!("{what} {} =", ident_hql(&a.name)),
            (None, Some(name)) => format!("{what} (named {})", ident_hql(&name)),
            (None, None) => format!("{what} (unnamed)"),
        };
        self.line(depth, &text, n.span);
        self.expr(depth + 1, &n.expr);
    }

    fn keys(&mut self, depth: usize, keys: &[SortKey]) {
        for k in keys {
            let text = format!("key {} {}", order_hql(k.order), nulls_hql(k.nulls));
            self.line(depth, &text, k.span);
            self.expr(depth + 1, &k.expr);
        }
    }

    fn expr(&mut self, depth: usize, e: &Expr) {
        let d = depth + 1;
        match &e.kind {
            ExprKind::Literal { value } => self.line(depth, &literal_dump(value), e.span),
            ExprKind::Column { name } => {
                self.line(depth, &format!("column {}", ident_hql(&name.name)), e.span)
            }
            ExprKind::Property { column, key, .. } => self.line(
                depth,
                &format!("property {}[{}]", ident_hql(&column.name), string_hql(key)),
                e.span,
            ),
            ExprKind::Unary { op, operand } => {
                let name = match op {
                    UnaryOp::Not => "not",
                    UnaryOp::Neg => "neg",
                };
                self.line(depth, name, e.span);
                self.expr(d, operand);
            }
            ExprKind::Binary { op, left, right } => {
                self.line(depth, op.symbol(), e.span);
                self.expr(d, left);
                self.expr(d, right);
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => {
                self.line(depth, if *negated { "!between" } else { "between" }, e.span);
                self.expr(d, expr);
                self.expr(d, low);
                self.expr(d, high);
            }
            ExprKind::InList {
                expr,
                list,
                negated,
                case_insensitive,
            } => {
                let name = format!(
                    "{}in{}",
                    if *negated { "!" } else { "" },
                    if *case_insensitive { "~" } else { "" }
                );
                self.line(depth, &name, e.span);
                self.expr(d, expr);
                for item in list {
                    self.expr(d, item);
                }
            }
            ExprKind::IsNull { expr, negated } => {
                self.line(
                    depth,
                    if *negated { "is not null" } else { "is null" },
                    e.span,
                );
                self.expr(d, expr);
            }
            ExprKind::StringMatch {
                op,
                expr,
                pattern,
                negated,
                case_sensitive,
            } => {
                self.line(
                    depth,
                    &string_op_hql(*op, *negated, *case_sensitive),
                    e.span,
                );
                self.expr(d, expr);
                self.expr(d, pattern);
            }
            ExprKind::Call { name, args } => {
                self.line(depth, &format!("call {}", name.name), e.span);
                for a in args {
                    self.expr(d, a);
                }
            }
            ExprKind::Case {
                branches,
                otherwise,
            } => {
                self.line(depth, "case", e.span);
                for b in branches {
                    self.line(d, "when", b.when.span.to(b.then.span));
                    self.expr(d + 1, &b.when);
                    self.expr(d + 1, &b.then);
                }
                self.line(d, "else", otherwise.span);
                self.expr(d + 1, otherwise);
            }
        }
    }
}

fn literal_dump(v: &Literal) -> String {
    match v {
        Literal::Null => "null".into(),
        Literal::Bool(b) => format!("bool {b}"),
        Literal::Int(i) => format!("int {i}"),
        Literal::Float { value, text } => format!("float {value:?} (as written: {text})"),
        Literal::String(s) => format!("string {}", string_hql(s)),
        Literal::Duration(us) => format!("duration {} = {us}us", format_duration(*us)),
        Literal::DateTime(us) => format!("datetime {} = {us}us", format_datetime(*us)),
    }
}

fn order_hql(o: SortOrder) -> &'static str {
    match o {
        SortOrder::Asc => "asc",
        SortOrder::Desc => "desc",
    }
}

fn nulls_hql(n: NullsOrder) -> &'static str {
    match n {
        NullsOrder::First => "nulls first",
        NullsOrder::Last => "nulls last",
    }
}

fn string_op_hql(op: StringOp, negated: bool, case_sensitive: bool) -> String {
    let bang = if negated { "!" } else { "" };
    let cs = if case_sensitive && op != StringOp::MatchesRegex {
        "_cs"
    } else {
        ""
    };
    format!("{bang}{}{cs}", op.keyword())
}

const RESERVED: [&str; 10] = [
    "and", "or", "not", "in", "between", "is", "null", "true", "false", "by",
];

/// A name as HQL source: bare when it can be, in backticks otherwise.
pub fn ident_hql(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// A string as an HQL double-quoted literal.
pub fn string_hql(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Canonical HQL for a query: parsing it gives the same tree (spans aside).
pub fn to_hql(query: &Query) -> String {
    let mut out = ident_hql(&query.source.name);
    for op in &query.ops {
        out.push_str("\n| ");
        out.push_str(&op_hql(op));
    }
    out
}

fn named_list_hql(items: &[NamedExpr]) -> String {
    items
        .iter()
        .map(|n| match &n.alias {
            Some(a) => format!("{} = {}", ident_hql(&a.name), expr_to_hql(&n.expr)),
            None => expr_to_hql(&n.expr),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn keys_hql(keys: &[SortKey]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "{} {} {}",
                expr_to_hql(&k.expr),
                order_hql(k.order),
                nulls_hql(k.nulls)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn op_hql(op: &Op) -> String {
    match &op.kind {
        OpKind::Where { predicate } => format!("where {}", expr_to_hql(predicate)),
        OpKind::Summarize { aggregates, by } => {
            let mut s = "summarize".to_string();
            if !aggregates.is_empty() {
                s.push(' ');
                s.push_str(&named_list_hql(aggregates));
            }
            if !by.is_empty() {
                s.push_str(" by ");
                s.push_str(&named_list_hql(by));
            }
            s
        }
        OpKind::Extend { columns } => format!("extend {}", named_list_hql(columns)),
        OpKind::Project { columns } => format!("project {}", named_list_hql(columns)),
        OpKind::Distinct { columns } => format!("distinct {}", named_list_hql(columns)),
        OpKind::ProjectAway { columns } => format!(
            "project-away {}",
            columns
                .iter()
                .map(|c| ident_hql(&c.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        OpKind::ProjectRename { renames } => format!(
            "project-rename {}",
            renames
                .iter()
                .map(|r| format!("{} = {}", ident_hql(&r.new.name), ident_hql(&r.old.name)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        OpKind::Sort { keys } => format!("sort by {}", keys_hql(keys)),
        OpKind::Take { count } => format!("take {count}"),
        OpKind::Top { count, by } => format!("top {count} by {}", keys_hql(by)),
        OpKind::Count => "count".into(),
    }
}

/// Binding strength, loosest first (see docs/hql.md).
fn precedence(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary { op, .. } => match op {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Add | BinaryOp::Sub => 5,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 6,
            _ => 4,
        },
        ExprKind::Unary {
            op: UnaryOp::Not, ..
        } => 3,
        ExprKind::Between { .. }
        | ExprKind::InList { .. }
        | ExprKind::IsNull { .. }
        | ExprKind::StringMatch { .. } => 4,
        ExprKind::Unary {
            op: UnaryOp::Neg, ..
        } => 7,
        ExprKind::Literal {
            value: Literal::Int(i),
        } if *i < 0 => 7,
        ExprKind::Literal {
            value: Literal::Duration(i),
        } if *i < 0 => 7,
        ExprKind::Literal {
            value: Literal::Float { text, .. },
        } if text.starts_with('-') => 7,
        _ => 8,
    }
}

fn operand(e: &Expr, min: u8) -> String {
    let s = expr_to_hql(e);
    if precedence(e) < min {
        format!("({s})")
    } else {
        s
    }
}

/// Canonical HQL for an expression, with only the parentheses precedence needs.
pub fn expr_to_hql(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Literal { value } => match value {
            Literal::Null => "null".into(),
            Literal::Bool(b) => b.to_string(),
            Literal::Int(i) => i.to_string(),
            Literal::Float { text, .. } => text.clone(),
            Literal::String(s) => string_hql(s),
            Literal::Duration(us) => format_duration(*us),
            Literal::DateTime(us) => format!("datetime({})", format_datetime(*us)),
        },
        ExprKind::Column { name } => ident_hql(&name.name),
        ExprKind::Property { column, key, .. } => {
            let dotted = !key.is_empty()
                && key.split('.').all(|seg| {
                    !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            if dotted {
                format!("{}.{key}", ident_hql(&column.name))
            } else {
                format!("{}[{}]", ident_hql(&column.name), string_hql(key))
            }
        }
        ExprKind::Unary { op, operand: o } => match op {
            UnaryOp::Not => format!("not {}", operand(o, 3)),
            UnaryOp::Neg => {
                // `-(5)` stays a negation: `-5` would parse as the literal -5.
                let is_number = matches!(
                    o.kind,
                    ExprKind::Literal {
                        value: Literal::Int(_) | Literal::Float { .. } | Literal::Duration(_)
                    }
                );
                if is_number {
                    format!("-({})", expr_to_hql(o))
                } else {
                    format!("-{}", operand(o, 7))
                }
            }
        },
        ExprKind::Binary { op, left, right } => {
            let (l, r) = match op {
                BinaryOp::Or => (1, 2),
                BinaryOp::And => (2, 3),
                BinaryOp::Add | BinaryOp::Sub => (5, 6),
                BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => (6, 7),
                _ => (5, 5),
            };
            format!("{} {} {}", operand(left, l), op.symbol(), operand(right, r))
        }
        ExprKind::Between {
            expr,
            low,
            high,
            negated,
        } => format!(
            "{} {}between ({} .. {})",
            operand(expr, 5),
            if *negated { "!" } else { "" },
            operand(low, 5),
            operand(high, 5)
        ),
        ExprKind::InList {
            expr,
            list,
            negated,
            case_insensitive,
        } => format!(
            "{} {}in{} ({})",
            operand(expr, 5),
            if *negated { "!" } else { "" },
            if *case_insensitive { "~" } else { "" },
            list.iter().map(expr_to_hql).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::IsNull { expr, negated } => format!(
            "{} is {}null",
            operand(expr, 5),
            if *negated { "not " } else { "" }
        ),
        ExprKind::StringMatch {
            op,
            expr,
            pattern,
            negated,
            case_sensitive,
        } => format!(
            "{} {} {}",
            operand(expr, 5),
            string_op_hql(*op, *negated, *case_sensitive),
            operand(pattern, 5)
        ),
        ExprKind::Call { name, args } => format!(
            "{}({})",
            name.name,
            args.iter().map(expr_to_hql).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Case {
            branches,
            otherwise,
        } => {
            let mut parts: Vec<String> = Vec::new();
            for b in branches {
                parts.push(expr_to_hql(&b.when));
                parts.push(expr_to_hql(&b.then));
            }
            parts.push(expr_to_hql(otherwise));
            let f = if branches.len() == 1 { "iff" } else { "case" };
            format!("{f}({})", parts.join(", "))
        }
    }
}
