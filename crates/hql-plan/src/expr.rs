//! Expressions: AST → DataFusion `Expr`, with name resolution and type checks.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::functions::expr_fn as f;
use datafusion::logical_expr::{
    Between, Expr, ExprSchemable, Like, Operator, binary_expr, cast, lit, when,
};
use loupe_hql_syntax::ast::{
    BinaryOp, CaseBranch, Expr as Ast, ExprKind, Ident, Literal, StringOp, UnaryOp,
};
use loupe_hql_syntax::pretty::expr_to_hql;
use loupe_hql_syntax::{Span, suggest};

use crate::PlanOptions;
use crate::error::{PlanError, codes};
use crate::types::{
    Fam, digits, duration_lit, parse_decimal_text, rescale, string_lit_like, timestamp_lit,
    timestamp_type, type_name,
};

/// A compiled expression and its type.
#[derive(Debug, Clone)]
pub(crate) struct Typed {
    pub expr: Expr,
    pub ty: DataType,
}

impl Typed {
    pub(crate) fn fam(&self) -> Fam {
        Fam::of(&self.ty)
    }
}

/// One aggregate of a `summarize`, under an internal name until it gets its final one.
#[derive(Debug, Clone)]
pub(crate) struct AggSlot {
    pub name: String,
    pub expr: Expr,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Prefix of internal aggregate names (never visible in a result: `summarize` projects them
/// away or renames them).
pub(crate) const AGG_PREFIX: &str = "__hql_agg_";

/// Compiles the expressions of one operator against its input schema.
pub(crate) struct Compiler<'a> {
    /// The operator's input: names resolve here.
    pub input: &'a DFSchema,
    /// `input` plus the aggregates collected so far (for typing `sum(x) / count()`).
    typing: DFSchema,
    pub opts: &'a PlanOptions,
    /// Columns defined earlier in the same `extend`/`project` (`extend a = 1, b = a + 1`).
    pub locals: Vec<(String, Typed)>,
    /// `Some` inside a `summarize` aggregate list.
    pub aggs: Option<Vec<AggSlot>>,
    /// Compiling the arguments of an aggregate call.
    in_agg: bool,
    /// The operator, for messages (`where`, `extend`, …).
    pub op: &'static str,
}

pub(crate) type R<T> = Result<T, PlanError>;

/// `expr` as HQL text for messages, shortened.
pub(crate) fn show(e: &Ast) -> String {
    let s = expr_to_hql(e);
    if s.chars().count() > 40 {
        let short: String = s.chars().take(37).collect();
        format!("{short}...")
    } else {
        s
    }
}

/// The expression for a message: `'latency_ms'`, but a string literal as written (`"abc"`).
pub(crate) fn quoted(e: &Ast) -> String {
    let s = show(e);
    if matches!(
        e.kind,
        ExprKind::Literal {
            value: Literal::String(_)
        }
    ) {
        s
    } else {
        format!("'{s}'")
    }
}

/// `long 'latency_ms'`.
pub(crate) fn described(t: &Typed, e: &Ast) -> String {
    format!("{} {}", type_name(&t.ty), quoted(e))
}

pub(crate) fn mismatch(span: Span, message: impl Into<String>) -> PlanError {
    PlanError::new(codes::TYPE_MISMATCH, span, message)
}

/// A reference to a column of `schema` by its unqualified name (never parsed: names may hold
/// dots and spaces).
pub(crate) fn column_of(schema: &DFSchema, name: &str) -> Option<(Expr, DataType)> {
    let (q, field) = schema.qualified_field_with_unqualified_name(name).ok()?;
    Some((
        Expr::Column(Column::new(q.cloned(), field.name())),
        field.data_type().clone(),
    ))
}

/// Unqualified column by name.
pub(crate) fn ucol(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// "did you mean 'x'?": same name in another case, edit distance ≤ 2 (≤ 1 for names shorter
/// than five characters), or a prefix either way (at least three characters).
pub(crate) fn suggest_name<'n>(
    word: &str,
    names: impl IntoIterator<Item = &'n str>,
) -> Option<String> {
    let names: Vec<&str> = names.into_iter().filter(|n| *n != word).collect();
    if let Some(n) = names.iter().find(|n| n.eq_ignore_ascii_case(word)) {
        return Some((*n).to_string());
    }
    let lower = word.to_lowercase();
    let limit = if lower.chars().count() < 5 { 1 } else { 2 };
    let mut best: Option<(usize, &str)> = None;
    for n in &names {
        let d = suggest::distance(&lower, &n.to_lowercase());
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, n));
        }
    }
    if let Some((_, n)) = best {
        return Some(n.to_string());
    }
    if lower.chars().count() >= 3 {
        if let Some(n) = names.iter().find(|n| n.to_lowercase().starts_with(&lower)) {
            return Some((*n).to_string());
        }
        if let Some(n) = names
            .iter()
            .filter(|n| n.chars().count() >= 3 && lower.starts_with(&n.to_lowercase()))
            .max_by_key(|n| n.len())
        {
            return Some((*n).to_string());
        }
    }
    None
}

fn is_string_lit(e: &Ast) -> Option<&str> {
    match &e.kind {
        ExprKind::Literal {
            value: Literal::String(s),
        } => Some(s),
        _ => None,
    }
}

impl<'a> Compiler<'a> {
    pub(crate) fn new(input: &'a DFSchema, opts: &'a PlanOptions, op: &'static str) -> Self {
        Compiler {
            input,
            typing: input.clone(),
            opts,
            locals: Vec::new(),
            aggs: None,
            in_agg: false,
            op,
        }
    }

    /// For a `summarize` aggregate list.
    pub(crate) fn summarize(input: &'a DFSchema, opts: &'a PlanOptions) -> Self {
        let mut c = Compiler::new(input, opts, "summarize");
        c.aggs = Some(Vec::new());
        c
    }

    /// The type of `expr`, or an error on `span` if the engine cannot type it.
    pub(crate) fn typed(&self, expr: Expr, span: Span) -> R<Typed> {
        match expr.get_type(&self.typing) {
            Ok(ty) => Ok(Typed { expr, ty }),
            Err(e) => Err(PlanError::engine(span, &e)),
        }
    }

    /// Names visible to this operator (for suggestions).
    fn names_in_scope(&self) -> Vec<String> {
        let mut v: Vec<String> = self.locals.iter().map(|(n, _)| n.clone()).collect();
        for f in self.input.fields() {
            if !v.iter().any(|n| n == f.name()) {
                v.push(f.name().clone());
            }
        }
        v
    }

    pub(crate) fn unknown_column(&self, name: &str, span: Span) -> PlanError {
        let names = self.names_in_scope();
        let hint = match suggest_name(name, names.iter().map(String::as_str)) {
            Some(s) => format!("did you mean '{s}'?"),
            None => format!("columns here: {}", names.join(", ")),
        };
        PlanError::new(
            codes::UNKNOWN_COLUMN,
            span,
            format!("unknown column '{name}'"),
        )
        .hint(hint)
    }

    fn resolve(&self, ident: &Ident) -> R<Typed> {
        if let Some((_, t)) = self.locals.iter().rev().find(|(n, _)| *n == ident.name) {
            return Ok(t.clone());
        }
        match column_of(self.input, &ident.name) {
            Some((expr, ty)) => Ok(Typed { expr, ty }),
            None => Err(self.unknown_column(&ident.name, ident.span)),
        }
    }

    fn check_row_level(&self, what: &str, span: Span) -> R<()> {
        if self.aggs.is_some() && !self.in_agg {
            return Err(PlanError::new(
                codes::NOT_AN_AGGREGATE,
                span,
                format!("'{what}' is used outside an aggregate in summarize"),
            )
            .hint(format!(
                "group by it (`by {what}`) or aggregate it, e.g. `max({what})`"
            )));
        }
        Ok(())
    }

    pub(crate) fn compile(&mut self, e: &Ast) -> R<Typed> {
        match &e.kind {
            ExprKind::Literal { value } => self.literal(value, e.span),
            ExprKind::Column { name } => {
                self.check_row_level(&name.name, e.span)?;
                self.resolve(name)
            }
            ExprKind::Property {
                column,
                key,
                key_span: _,
            } => {
                self.check_row_level(&show(e), e.span)?;
                self.property(column, key, e.span)
            }
            ExprKind::Unary { op, operand } => self.unary(*op, operand, e.span),
            ExprKind::Binary { op, left, right } => self.binary(*op, left, right, e.span),
            ExprKind::Between {
                expr,
                low,
                high,
                negated,
            } => self.between(expr, low, high, *negated, e.span),
            ExprKind::InList {
                expr,
                list,
                negated,
                case_insensitive,
            } => self.in_list(expr, list, *negated, *case_insensitive, e.span),
            ExprKind::IsNull { expr, negated } => {
                let t = self.compile(expr)?;
                let out = if *negated {
                    t.expr.is_not_null()
                } else {
                    t.expr.is_null()
                };
                Ok(Typed {
                    expr: out,
                    ty: DataType::Boolean,
                })
            }
            ExprKind::StringMatch {
                op,
                expr,
                pattern,
                negated,
                case_sensitive,
            } => self.string_match(*op, expr, pattern, *negated, *case_sensitive, e.span),
            ExprKind::Call { name, args } => self.call(name, args, e.span),
            ExprKind::Case {
                branches,
                otherwise,
            } => self.case(branches, otherwise, e.span),
        }
    }

    pub(crate) fn literal(&self, value: &Literal, span: Span) -> R<Typed> {
        let (expr, ty) = match value {
            Literal::Null => (lit(ScalarValue::Null), DataType::Null),
            Literal::Bool(b) => (lit(*b), DataType::Boolean),
            Literal::Int(i) => (lit(*i), DataType::Int64),
            Literal::Float { value, .. } => (lit(*value), DataType::Float64),
            Literal::String(s) => (lit(s.as_str()), DataType::Utf8),
            Literal::Duration(d) => (
                duration_lit(*d),
                DataType::Duration(datafusion::arrow::datatypes::TimeUnit::Microsecond),
            ),
            Literal::DateTime(t) => (timestamp_lit(*t), timestamp_type()),
        };
        let _ = span;
        Ok(Typed { expr, ty })
    }

    fn property(&mut self, column: &Ident, key: &str, span: Span) -> R<Typed> {
        let base = self.resolve(column)?;
        let DataType::Map(entries, _) = &base.ty else {
            return Err(PlanError::new(
                codes::NOT_A_MAP,
                span,
                format!(
                    "'{}' is a {}, not a map: only map columns such as 'properties' have keys",
                    column.name,
                    type_name(&base.ty)
                ),
            ));
        };
        let key_type = match entries.data_type() {
            DataType::Struct(fields) => fields
                .first()
                .map_or(DataType::Utf8, |f| f.data_type().clone()),
            _ => DataType::Utf8,
        };
        let key = match key_type {
            DataType::Utf8View => ScalarValue::Utf8View(Some(key.to_string())),
            DataType::LargeUtf8 => ScalarValue::LargeUtf8(Some(key.to_string())),
            _ => ScalarValue::Utf8(Some(key.to_string())),
        };
        let expr = f::get_field(base.expr, key);
        self.typed(expr, span)
    }

    fn unary(&mut self, op: UnaryOp, operand: &Ast, span: Span) -> R<Typed> {
        let t = self.compile(operand)?;
        match op {
            UnaryOp::Not => {
                if !matches!(t.fam(), Fam::Bool | Fam::Null) {
                    return Err(mismatch(
                        operand.span,
                        format!("'not' needs a bool, got {}", described(&t, operand)),
                    ));
                }
                Ok(Typed {
                    expr: Expr::Not(Box::new(t.expr)),
                    ty: DataType::Boolean,
                })
            }
            UnaryOp::Neg => {
                if !(t.fam().is_numeric() || matches!(t.fam(), Fam::Duration | Fam::Null)) {
                    return Err(mismatch(
                        operand.span,
                        format!(
                            "'-' needs a number or a timespan, got {}",
                            described(&t, operand)
                        ),
                    ));
                }
                self.typed(Expr::Negative(Box::new(t.expr)), span)
            }
        }
    }

    fn binary(&mut self, op: BinaryOp, l: &Ast, r: &Ast, span: Span) -> R<Typed> {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let a = self.compile(l)?;
                let b = self.compile(r)?;
                for (t, e) in [(&a, l), (&b, r)] {
                    if !matches!(t.fam(), Fam::Bool | Fam::Null) {
                        return Err(mismatch(
                            e.span,
                            format!(
                                "'{}' needs bool operands, got {}",
                                op.symbol(),
                                described(t, e)
                            ),
                        ));
                    }
                }
                let expr = if op == BinaryOp::And {
                    a.expr.and(b.expr)
                } else {
                    a.expr.or(b.expr)
                };
                Ok(Typed {
                    expr,
                    ty: DataType::Boolean,
                })
            }
            BinaryOp::EqIgnoreCase | BinaryOp::NotEqIgnoreCase => {
                let a = self.compile(l)?;
                let b = self.compile(r)?;
                for (t, e) in [(&a, l), (&b, r)] {
                    if !matches!(t.fam(), Fam::String | Fam::Null) {
                        return Err(mismatch(
                            e.span,
                            format!(
                                "'{}' compares strings, got {}",
                                op.symbol(),
                                described(t, e)
                            ),
                        )
                        .hint("use == for other types"));
                    }
                }
                let o = if op == BinaryOp::EqIgnoreCase {
                    Operator::Eq
                } else {
                    Operator::NotEq
                };
                Ok(Typed {
                    expr: binary_expr(f::lower(a.expr), o, f::lower(b.expr)),
                    ty: DataType::Boolean,
                })
            }
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => {
                let o = match op {
                    BinaryOp::Eq => Operator::Eq,
                    BinaryOp::NotEq => Operator::NotEq,
                    BinaryOp::Lt => Operator::Lt,
                    BinaryOp::LtEq => Operator::LtEq,
                    BinaryOp::Gt => Operator::Gt,
                    _ => Operator::GtEq,
                };
                let (a, b) = self.comparable(l, r, op.symbol())?;
                Ok(Typed {
                    expr: binary_expr(a.expr, o, b.expr),
                    ty: DataType::Boolean,
                })
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
                self.arith(op, l, r, span)
            }
        }
    }

    /// Compiles both sides of a comparison and makes them comparable: exact decimal literals
    /// next to decimal columns, numbers written as strings next to numbers, dates next to
    /// datetimes. Errors name both types and point at the side that does not fit.
    pub(crate) fn comparable(&mut self, l: &Ast, r: &Ast, what: &str) -> R<(Typed, Typed)> {
        let a = self.compile(l)?;
        let b = self.compile(r)?;
        let b = self.coerce_literal(&a, b, r)?;
        let a = self.coerce_literal(&b, a, l)?;
        let (fa, fb) = (a.fam(), b.fam());
        let ok = fa == Fam::Null
            || fb == Fam::Null
            || (fa.is_numeric() && fb.is_numeric())
            || (fa.is_time() && fb.is_time())
            || (fa == fb && !matches!(fa, Fam::Map | Fam::Other))
            || (fa == Fam::Other && a.ty == b.ty);
        if !ok {
            // Point at the literal if there is one, else at the right operand.
            let (bad, bad_t) = if matches!(l.kind, ExprKind::Literal { .. })
                && !matches!(r.kind, ExprKind::Literal { .. })
            {
                (l, &a)
            } else {
                (r, &b)
            };
            let hint = match (fa, fb) {
                (Fam::Timestamp | Fam::Date, Fam::String)
                | (Fam::String, Fam::Timestamp | Fam::Date) => Some(
                    "write datetimes as datetime(2025-01-31) or datetime(\"2025-01-31T10:00:00Z\")"
                        .to_string(),
                ),
                (Fam::String, Fam::Int | Fam::Float | Fam::Decimal)
                | (Fam::Int | Fam::Float | Fam::Decimal, Fam::String) => {
                    let (s_ast, n_ast) = if fa == Fam::String { (l, r) } else { (r, l) };
                    Some(if matches!(s_ast.kind, ExprKind::Literal { .. }) {
                        format!("{} is not a number", show(s_ast))
                    } else {
                        format!(
                            "convert one side: todouble({}) or tostring({})",
                            show(s_ast),
                            show(n_ast)
                        )
                    })
                }
                (Fam::Map, _) | (_, Fam::Map) => Some(
                    "compare one key instead, e.g. properties.Environment == \"prod\"".to_string(),
                ),
                _ => None,
            };
            let _ = bad_t;
            return Err(mismatch(
                bad.span,
                format!(
                    "cannot compare {} with {} using '{what}'",
                    described(&a, l),
                    described(&b, r)
                ),
            )
            .maybe_hint(hint));
        }
        let (a, b) = self.align_time(a, b);
        Ok((a, b))
    }

    /// A date next to a datetime becomes a datetime (midnight UTC).
    fn align_time(&self, a: Typed, b: Typed) -> (Typed, Typed) {
        let to_ts = |t: Typed| Typed {
            expr: cast(t.expr, timestamp_type()),
            ty: timestamp_type(),
        };
        // A datetime literal at midnight next to a date becomes a date literal, so `day` keeps
        // its type and partitions can be pruned.
        let as_day = |t: &Typed| match &t.expr {
            Expr::Literal(ScalarValue::TimestampMicrosecond(Some(v), _), _)
                if v.rem_euclid(MICROS_PER_DAY) == 0 =>
            {
                i32::try_from(v.div_euclid(MICROS_PER_DAY))
                    .ok()
                    .map(|d| Typed {
                        expr: lit(ScalarValue::Date32(Some(d))),
                        ty: DataType::Date32,
                    })
            }
            _ => None,
        };
        match (a.fam(), b.fam()) {
            (Fam::Date, Fam::Timestamp) => match as_day(&b) {
                Some(d) => (a, d),
                None => (to_ts(a), b),
            },
            (Fam::Timestamp, Fam::Date) => match as_day(&a) {
                Some(d) => (d, b),
                None => (a, to_ts(b)),
            },
            _ => (a, b),
        }
    }

    /// `lit` (compiled from `lit_ast`) rewritten to suit `other`'s type when it is a literal.
    fn coerce_literal(&self, other: &Typed, lit_t: Typed, lit_ast: &Ast) -> R<Typed> {
        let ExprKind::Literal { value } = &lit_ast.kind else {
            return Ok(lit_t);
        };
        match (other.fam(), value) {
            (Fam::Decimal, Literal::Int(_) | Literal::Float { .. }) => {
                let text = match value {
                    Literal::Int(i) => i.to_string(),
                    Literal::Float { text, .. } => text.clone(),
                    _ => String::new(),
                };
                Ok(decimal_literal(&text, &other.ty).unwrap_or(lit_t))
            }
            (Fam::Int | Fam::Float | Fam::Decimal, Literal::String(s)) => {
                let s = s.trim();
                let parsed = match other.fam() {
                    Fam::Int => s.parse::<i64>().ok().map(|i| Typed {
                        expr: lit(i),
                        ty: DataType::Int64,
                    }),
                    Fam::Float => s
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .map(|v| Typed {
                            expr: lit(v),
                            ty: DataType::Float64,
                        }),
                    _ => decimal_literal(s, &other.ty),
                };
                Ok(parsed.unwrap_or(lit_t))
            }
            (Fam::String, Literal::String(s)) => Ok(Typed {
                expr: string_lit_like(s, &other.ty),
                ty: other.ty.clone(),
            }),
            _ => Ok(lit_t),
        }
    }

    fn arith(&mut self, op: BinaryOp, l: &Ast, r: &Ast, span: Span) -> R<Typed> {
        let a = self.compile(l)?;
        let b = self.compile(r)?;
        // Exact decimal arithmetic with decimal columns: `cost_usd * 1.5` stays decimal.
        let b = if a.fam() == Fam::Decimal && op != BinaryOp::Div {
            self.decimal_operand(b, r)
        } else {
            b
        };
        let a = if b.fam() == Fam::Decimal && op != BinaryOp::Div {
            self.decimal_operand(a, l)
        } else {
            a
        };
        let (fa, fb) = (a.fam(), b.fam());
        let sym = op.symbol();
        let bad = |which: &Ast| {
            mismatch(
                which.span,
                format!(
                    "cannot apply '{sym}' to {} and {}",
                    described(&a, l),
                    described(&b, r)
                ),
            )
        };
        let numeric = |f: Fam| f.is_numeric() || f == Fam::Null;
        let f64t = DataType::Float64;
        let expr = match op {
            BinaryOp::Div => {
                if numeric(fa) && numeric(fb) {
                    binary_expr(
                        cast(a.expr, f64t.clone()),
                        Operator::Divide,
                        f::nullif(cast(b.expr, f64t.clone()), lit(0.0f64)),
                    )
                } else if fa == Fam::Duration && fb == Fam::Duration {
                    let as_f = |e: Expr| cast(cast(e, DataType::Int64), f64t.clone());
                    binary_expr(
                        as_f(a.expr),
                        Operator::Divide,
                        f::nullif(as_f(b.expr), lit(0.0f64)),
                    )
                } else {
                    return Err(bad(if numeric(fa) { r } else { l }).hint(
                        "'/' divides numbers (always giving a real) or two timespans (their ratio)",
                    ));
                }
            }
            BinaryOp::Mod => {
                if numeric(fa) && numeric(fb) {
                    let zero = match fb {
                        Fam::Float => lit(0.0f64),
                        _ => lit(0i64),
                    };
                    let zero = if fb == Fam::Decimal {
                        cast(zero, b.ty.clone())
                    } else {
                        zero
                    };
                    binary_expr(a.expr, Operator::Modulo, f::nullif(b.expr, zero))
                } else {
                    return Err(bad(if numeric(fa) { r } else { l }));
                }
            }
            BinaryOp::Mul => {
                if numeric(fa) && numeric(fb) {
                    binary_expr(a.expr, Operator::Multiply, b.expr)
                } else if (fa == Fam::Duration && numeric(fb))
                    || (numeric(fa) && fb == Fam::Duration)
                {
                    // timespan × number: in microseconds, truncated to a whole microsecond.
                    let (d, n) = if fa == Fam::Duration { (a, b) } else { (b, a) };
                    let micros = cast(cast(d.expr, DataType::Int64), DataType::Float64);
                    let prod =
                        binary_expr(micros, Operator::Multiply, cast(n.expr, DataType::Float64));
                    cast(
                        cast(prod, DataType::Int64),
                        DataType::Duration(datafusion::arrow::datatypes::TimeUnit::Microsecond),
                    )
                } else {
                    return Err(bad(if numeric(fa) { r } else { l }));
                }
            }
            BinaryOp::Add | BinaryOp::Sub => {
                let o = if op == BinaryOp::Add {
                    Operator::Plus
                } else {
                    Operator::Minus
                };
                let ok = (numeric(fa) && numeric(fb))
                    || (fa.is_time() && fb == Fam::Duration)
                    || (fa == Fam::Duration && fb == Fam::Duration)
                    || (op == BinaryOp::Add && fa == Fam::Duration && fb.is_time())
                    || (op == BinaryOp::Sub && fa.is_time() && fb.is_time());
                if !ok {
                    let hint = (fa == Fam::String || fb == Fam::String)
                        .then(|| "join strings with strcat(a, b)".to_string());
                    return Err(
                        bad(if numeric(fa) || fa.is_time() { r } else { l }).maybe_hint(hint)
                    );
                }
                let to_ts = |t: Typed| {
                    if t.fam() == Fam::Date {
                        cast(t.expr, timestamp_type())
                    } else {
                        t.expr
                    }
                };
                binary_expr(to_ts(a), o, to_ts(b))
            }
            _ => return Err(bad(r)),
        };
        self.typed(expr, span)
    }

    /// A number literal next to a decimal becomes an exact decimal literal.
    fn decimal_operand(&self, t: Typed, e: &Ast) -> Typed {
        match &e.kind {
            ExprKind::Literal {
                value: Literal::Float { text, .. },
            } => match parse_decimal_text(text) {
                Some((v, s)) if s >= 0 => Typed {
                    expr: lit(ScalarValue::Decimal128(Some(v), digits(v).max(s as u8), s)),
                    ty: DataType::Decimal128(digits(v).max(s as u8), s),
                },
                _ => t,
            },
            _ => t,
        }
    }

    fn between(&mut self, e: &Ast, low: &Ast, high: &Ast, negated: bool, span: Span) -> R<Typed> {
        let (x, lo) = self.comparable(e, low, "between")?;
        let (_, hi) = self.comparable(e, high, "between")?;
        let _ = span;
        Ok(Typed {
            expr: Expr::Between(Between::new(
                Box::new(x.expr),
                negated,
                Box::new(lo.expr),
                Box::new(hi.expr),
            )),
            ty: DataType::Boolean,
        })
    }

    fn in_list(&mut self, e: &Ast, list: &[Ast], negated: bool, ci: bool, span: Span) -> R<Typed> {
        let mut x = None;
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            let (a, b) = self.comparable(e, item, if ci { "in~" } else { "in" })?;
            if ci {
                for (t, ast) in [(&a, e), (&b, item)] {
                    if !matches!(t.fam(), Fam::String | Fam::Null) {
                        return Err(mismatch(
                            ast.span,
                            format!("'in~' compares strings, got {}", described(t, ast)),
                        )
                        .hint("use 'in' for other types"));
                    }
                }
                items.push(f::lower(b.expr));
            } else {
                items.push(b.expr);
            }
            x.get_or_insert(a);
        }
        let Some(x) = x else {
            return Err(mismatch(span, "'in' needs at least one value"));
        };
        let xe = if ci { f::lower(x.expr) } else { x.expr };
        Ok(Typed {
            expr: xe.in_list(items, negated),
            ty: DataType::Boolean,
        })
    }

    fn string_match(
        &mut self,
        op: StringOp,
        e: &Ast,
        pattern: &Ast,
        negated: bool,
        case_sensitive: bool,
        span: Span,
    ) -> R<Typed> {
        let x = self.compile(e)?;
        let p = self.compile(pattern)?;
        let kw = op.keyword();
        if !matches!(x.fam(), Fam::String | Fam::Null) {
            return Err(mismatch(
                e.span,
                format!("'{kw}' needs a string, got {}", described(&x, e)),
            )
            .hint(format!("convert it first: tostring({}) {kw} …", show(e))));
        }
        if !matches!(p.fam(), Fam::String | Fam::Null) {
            return Err(mismatch(
                pattern.span,
                format!(
                    "the pattern of '{kw}' must be a string, got {}",
                    described(&p, pattern)
                ),
            ));
        }
        let _ = span;
        let expr = match (op, is_string_lit(pattern)) {
            (StringOp::MatchesRegex, _) => {
                let m = f::regexp_like(x.expr, p.expr, None);
                if negated { Expr::Not(Box::new(m)) } else { m }
            }
            (_, Some(s)) => {
                let esc = escape_like(s);
                let pat = match op {
                    StringOp::Contains => format!("%{esc}%"),
                    StringOp::StartsWith => format!("{esc}%"),
                    _ => format!("%{esc}"),
                };
                Expr::Like(Like::new(
                    negated,
                    Box::new(x.expr),
                    Box::new(string_lit_like(&pat, &x.ty)),
                    Some('\\'),
                    !case_sensitive,
                ))
            }
            (_, None) => {
                let (a, b) = if case_sensitive {
                    (x.expr, p.expr)
                } else {
                    (f::lower(x.expr), f::lower(p.expr))
                };
                let m = match op {
                    StringOp::Contains => f::strpos(a, b).gt(lit(0i64)),
                    StringOp::StartsWith => f::starts_with(a, b),
                    _ => f::ends_with(a, b),
                };
                if negated { Expr::Not(Box::new(m)) } else { m }
            }
        };
        Ok(Typed {
            expr,
            ty: DataType::Boolean,
        })
    }

    fn case(&mut self, branches: &[CaseBranch], otherwise: &Ast, span: Span) -> R<Typed> {
        let mut conds = Vec::new();
        let mut values: Vec<(Typed, &Ast)> = Vec::new();
        for b in branches {
            let c = self.compile(&b.when)?;
            if !matches!(c.fam(), Fam::Bool | Fam::Null) {
                return Err(mismatch(
                    b.when.span,
                    format!("a condition must be a bool, got {}", described(&c, &b.when)),
                ));
            }
            conds.push(c.expr);
            values.push((self.compile(&b.then)?, &b.then));
        }
        values.push((self.compile(otherwise)?, otherwise));
        // All values must be of one family (numbers mix; dates join datetimes).
        let mut fam: Option<(Fam, usize)> = None;
        let mut any_date_ts = (false, false);
        for (i, (t, ast)) in values.iter().enumerate() {
            let tf = t.fam();
            if tf == Fam::Null {
                continue;
            }
            any_date_ts.0 |= tf == Fam::Date;
            any_date_ts.1 |= tf == Fam::Timestamp;
            match fam {
                None => fam = Some((tf, i)),
                Some((f0, i0)) => {
                    let ok = (f0 == tf && !matches!(tf, Fam::Map | Fam::Other))
                        || (f0.is_numeric() && tf.is_numeric())
                        || (f0.is_time() && tf.is_time());
                    if !ok {
                        let (first, first_ast) = (&values[i0].0, values[i0].1);
                        return Err(mismatch(
                            ast.span,
                            format!(
                                "the branches of iff/case must have one type: {} here, {} before",
                                described(t, ast),
                                described(first, first_ast)
                            ),
                        ));
                    }
                }
            }
        }
        let mut vals: Vec<Expr> = values
            .into_iter()
            .map(|(t, _)| {
                if any_date_ts.0 && any_date_ts.1 && t.fam() == Fam::Date {
                    cast(t.expr, timestamp_type())
                } else {
                    t.expr
                }
            })
            .collect();
        let other = vals.pop().unwrap_or(lit(ScalarValue::Null));
        let mut it = conds.into_iter().zip(vals);
        let Some((c0, v0)) = it.next() else {
            return self.typed(other, span);
        };
        let mut builder = when(c0, v0);
        for (c, v) in it {
            builder = builder.when(c, v);
        }
        let expr = builder
            .otherwise(other)
            .map_err(|e| PlanError::engine(span, &e))?;
        self.typed(expr, span)
    }

    /// Records an aggregate and returns a reference to its (internal) output column.
    pub(crate) fn push_agg(&mut self, agg: Expr, span: Span) -> R<Typed> {
        let ty = agg
            .get_type(self.input)
            .map_err(|e| PlanError::engine(span, &e))?;
        let Some(aggs) = self.aggs.as_mut() else {
            return Err(PlanError::engine(
                span,
                &datafusion::error::DataFusionError::Internal("aggregate outside summarize".into()),
            ));
        };
        let name = format!("{AGG_PREFIX}{}", aggs.len());
        aggs.push(AggSlot {
            name: name.clone(),
            expr: agg,
        });
        // Make the new column known for typing expressions over aggregates.
        let field = Arc::new(Field::new(&name, ty.clone(), true));
        if let Ok(extra) = DFSchema::from_unqualified_fields(vec![field].into(), Default::default())
            && let Ok(joined) = self.typing.join(&extra)
        {
            self.typing = joined;
        }
        Ok(Typed {
            expr: ucol(&name),
            ty,
        })
    }

    /// Compiles the arguments of an aggregate call (row-level, no nested aggregates).
    pub(crate) fn agg_args(&mut self, args: &[Ast]) -> R<Vec<(Typed, Span)>> {
        let was = self.in_agg;
        self.in_agg = true;
        let out = args
            .iter()
            .map(|a| self.compile(a).map(|t| (t, a.span)))
            .collect::<R<Vec<_>>>();
        self.in_agg = was;
        out
    }

    pub(crate) fn in_agg(&self) -> bool {
        self.in_agg
    }
}

/// An exact decimal literal for `text`, at `like`'s precision and scale when it fits there
/// exactly, else at its own.
pub(crate) fn decimal_literal(text: &str, like: &DataType) -> Option<Typed> {
    let (v, s) = parse_decimal_text(text)?;
    if let DataType::Decimal128(p, ts) = like
        && let Some(m) = rescale(v, s, *ts, *p)
    {
        return Some(Typed {
            expr: lit(ScalarValue::Decimal128(Some(m), *p, *ts)),
            ty: like.clone(),
        });
    }
    if s < 0 {
        return None;
    }
    let p = digits(v).max(s as u8).min(38);
    Some(Typed {
        expr: lit(ScalarValue::Decimal128(Some(v), p, s)),
        ty: DataType::Decimal128(p, s),
    })
}

/// Escapes `\`, `%` and `_` for a LIKE pattern with escape character `\`.
pub(crate) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
