//! HQL functions: scalar functions and the aggregates of `summarize`.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::functions::expr_fn as f;

use datafusion::functions_aggregate::expr_fn as agg;
use datafusion::logical_expr::{Expr, ExprFunctionExt, Operator, binary_expr, cast, lit, try_cast};
use loupe_hql_syntax::Span;
use loupe_hql_syntax::ast::{Expr as Ast, ExprKind, Ident, Literal};

use crate::error::{PlanError, codes};
use crate::expr::{Compiler, R, Typed, mismatch, show, suggest_name};
use crate::types::{Fam, interval_lit, timestamp_lit, timestamp_type, type_name};

/// Aggregate functions (only inside `summarize`).
pub const AGGREGATES: &[&str] = &[
    "count",
    "countif",
    "sum",
    "sumif",
    "avg",
    "min",
    "max",
    "dcount",
    "percentile",
    "p50",
    "p90",
    "p95",
    "p99",
    "stdev",
    "variance",
    "avgif",
    "ratio",
    "count_distinct",
];

/// Scalar functions.
pub const SCALARS: &[&str] = &[
    "now",
    "ago",
    "bin",
    "floor",
    "ceiling",
    "round",
    "abs",
    "sqrt",
    "log",
    "log10",
    "exp",
    "pow",
    "startofday",
    "startofweek",
    "startofmonth",
    "startofyear",
    "hourofday",
    "dayofweek",
    "dayofmonth",
    "dayofyear",
    "month",
    "year",
    "monthofyear",
    "getmonth",
    "getyear",
    "todatetime",
    "trim",
    "replace_string",
    "tobool",
    "datetime_diff",
    "tolower",
    "toupper",
    "strlen",
    "substring",
    "strcat",
    "coalesce",
    "max_of",
    "min_of",
    "todouble",
    "toreal",
    "tolong",
    "toint",
    "todecimal",
    "tostring",
    "isempty",
    "isnotempty",
    "isnull",
    "isnotnull",
];

/// Microseconds per `datetime_diff` unit.
const DIFF_UNITS: &[(&str, i64)] = &[
    ("microsecond", 1),
    ("millisecond", 1_000),
    ("second", 1_000_000),
    ("minute", 60_000_000),
    ("hour", 3_600_000_000),
    ("day", 86_400_000_000),
    ("week", 604_800_000_000),
];

fn arity(name: &Ident, args: &[Ast], span: Span, min: usize, max: usize) -> R<()> {
    let n = args.len();
    if n >= min && n <= max {
        return Ok(());
    }
    let want = match (min, max) {
        (a, b) if a == b && a == 1 => "1 argument".to_string(),
        (a, b) if a == b => format!("{a} arguments"),
        (a, usize::MAX) => format!("at least {a} argument{}", if a == 1 { "" } else { "s" }),
        (a, b) if b == a + 1 => format!("{a} or {b} arguments"),
        (a, b) => format!("{a} to {b} arguments"),
    };
    Err(PlanError::new(
        codes::WRONG_ARGUMENT_COUNT,
        span,
        format!("{}() takes {want}, got {n}", name.name),
    ))
}

fn invalid(span: Span, message: impl Into<String>) -> PlanError {
    PlanError::new(codes::INVALID_ARGUMENT, span, message)
}

fn want(fname: &str, what: &str, t: &Typed, e: &Ast) -> PlanError {
    mismatch(
        e.span,
        format!(
            "{fname}() needs {what}, got {}",
            crate::expr::described(t, e)
        ),
    )
}

/// A timestamp-typed expression (dates become midnight UTC).
fn as_ts(t: Typed) -> Expr {
    match t.fam() {
        Fam::Date => cast(t.expr, timestamp_type()),
        _ => t.expr,
    }
}

fn literal_of(e: &Ast) -> Option<&Literal> {
    match &e.kind {
        ExprKind::Literal { value } => Some(value),
        _ => None,
    }
}

impl Compiler<'_> {
    pub(crate) fn call(&mut self, name: &Ident, args: &[Ast], span: Span) -> R<Typed> {
        let n = name.name.as_str();
        if AGGREGATES.contains(&n) {
            if self.aggs.is_none() {
                return Err(PlanError::new(
                    codes::AGGREGATE_NOT_ALLOWED,
                    span,
                    format!(
                        "the aggregate {n}() is only allowed in summarize, not in {}",
                        self.op
                    ),
                )
                .hint("compute it with `summarize`, then filter or sort its result"));
            }
            if self.in_agg() {
                return Err(PlanError::new(
                    codes::AGGREGATE_NOT_ALLOWED,
                    span,
                    format!("the aggregate {n}() cannot be nested inside another aggregate"),
                ));
            }
            return self.aggregate(name, args, span);
        }
        if !SCALARS.contains(&n) {
            let all = SCALARS.iter().chain(AGGREGATES).copied();
            let hint = match suggest_name(n, all) {
                Some(s) => format!("did you mean '{s}'?"),
                None => "see docs/hql.md for the functions HQL has".to_string(),
            };
            return Err(PlanError::new(
                codes::UNKNOWN_FUNCTION,
                name.span,
                format!("unknown function '{n}'"),
            )
            .hint(hint));
        }
        self.scalar(name, args, span)
    }

    fn scalar(&mut self, name: &Ident, args: &[Ast], span: Span) -> R<Typed> {
        let n = name.name.as_str();
        match n {
            "now" => {
                arity(name, args, span, 0, 0)?;
                Ok(Typed {
                    expr: timestamp_lit(self.opts.now_micros),
                    ty: timestamp_type(),
                })
            }
            "ago" => {
                arity(name, args, span, 1, 1)?;
                let Some(Literal::Duration(d)) = literal_of(&args[0]) else {
                    return Err(invalid(
                        args[0].span,
                        format!(
                            "ago() needs a timespan literal such as 7d or 1h, got '{}'",
                            show(&args[0])
                        ),
                    ));
                };
                let t = self.opts.now_micros.checked_sub(*d).ok_or_else(|| {
                    invalid(
                        args[0].span,
                        "this timespan reaches outside the datetime range",
                    )
                })?;
                Ok(Typed {
                    expr: timestamp_lit(t),
                    ty: timestamp_type(),
                })
            }
            "bin" => {
                arity(name, args, span, 2, 2)?;
                self.bin(name, &args[0], &args[1], span)
            }
            "floor" => {
                arity(name, args, span, 1, 2)?;
                if args.len() == 2 {
                    return self.bin(name, &args[0], &args[1], span);
                }
                let x = self.numeric_arg(n, &args[0])?;
                self.typed(f::floor(x.expr), span)
            }
            "ceiling" => {
                arity(name, args, span, 1, 1)?;
                let x = self.numeric_arg(n, &args[0])?;
                self.typed(f::ceil(x.expr), span)
            }
            "round" => {
                arity(name, args, span, 1, 2)?;
                let x = self.numeric_arg(n, &args[0])?;
                let mut fargs = vec![x.expr];
                if let Some(d) = args.get(1) {
                    let Some(Literal::Int(digits)) = literal_of(d) else {
                        return Err(invalid(
                            d.span,
                            format!("round() needs a whole number of digits, got '{}'", show(d)),
                        ));
                    };
                    if !(-38..=38).contains(digits) {
                        return Err(invalid(d.span, "round() takes -38 to 38 digits"));
                    }
                    fargs.push(lit(*digits));
                }
                self.typed(f::round(fargs), span)
            }
            "abs" => {
                arity(name, args, span, 1, 1)?;
                let x = self.numeric_arg(n, &args[0])?;
                self.typed(f::abs(x.expr), span)
            }
            "sqrt" | "log" | "log10" | "exp" => {
                arity(name, args, span, 1, 1)?;
                let x = cast(self.numeric_arg(n, &args[0])?.expr, DataType::Float64);
                let e = match n {
                    "sqrt" => f::sqrt(x),
                    "log" => f::ln(x),
                    "log10" => f::log10(x),
                    _ => f::exp(x),
                };
                self.typed(e, span)
            }
            "pow" => {
                arity(name, args, span, 2, 2)?;
                let x = cast(self.numeric_arg(n, &args[0])?.expr, DataType::Float64);
                let y = cast(self.numeric_arg(n, &args[1])?.expr, DataType::Float64);
                self.typed(f::power(x, y), span)
            }
            "startofday" | "startofweek" | "startofmonth" | "startofyear" => {
                arity(name, args, span, 1, 1)?;
                let t = self.time_arg(n, &args[0])?;
                let part = &n["startof".len()..];
                self.typed(
                    cast(f::date_trunc(lit(part), as_ts(t)), timestamp_type()),
                    span,
                )
            }
            "hourofday" | "dayofweek" | "dayofmonth" | "dayofyear" | "month" | "year"
            | "monthofyear" | "getmonth" | "getyear" => {
                arity(name, args, span, 1, 1)?;
                let t = self.time_arg(n, &args[0])?;
                let part = match n {
                    "hourofday" => "hour",
                    "dayofweek" => "dow",
                    "dayofmonth" => "day",
                    "dayofyear" => "doy",
                    "monthofyear" | "getmonth" => "month",
                    "getyear" => "year",
                    other => other,
                };
                self.typed(
                    cast(f::date_part(lit(part), as_ts(t)), DataType::Int64),
                    span,
                )
            }
            "datetime_diff" => {
                arity(name, args, span, 3, 3)?;
                let unit = match literal_of(&args[0]) {
                    Some(Literal::String(s)) => DIFF_UNITS.iter().find(|(u, _)| *u == s),
                    _ => None,
                };
                let Some((_, per)) = unit else {
                    let units: Vec<&str> = DIFF_UNITS.iter().map(|(u, _)| *u).collect();
                    return Err(invalid(
                        args[0].span,
                        format!(
                            "datetime_diff() needs a unit in quotes: {}",
                            units.join(", ")
                        ),
                    ));
                };
                let a = self.time_arg(n, &args[1])?;
                let b = self.time_arg(n, &args[2])?;
                let micros = |t: Typed| cast(cast(as_ts(t), timestamp_type()), DataType::Int64);
                let diff = binary_expr(micros(a), Operator::Minus, micros(b));
                self.typed(binary_expr(diff, Operator::Divide, lit(*per)), span)
            }
            "tolower" | "toupper" => {
                arity(name, args, span, 1, 1)?;
                let s = self.string_arg(n, &args[0])?;
                let e = if n == "tolower" {
                    f::lower(s.expr)
                } else {
                    f::upper(s.expr)
                };
                self.typed(e, span)
            }
            "strlen" => {
                arity(name, args, span, 1, 1)?;
                let s = self.string_arg(n, &args[0])?;
                self.typed(cast(f::character_length(s.expr), DataType::Int64), span)
            }
            "substring" => {
                arity(name, args, span, 2, 3)?;
                let s = self.string_arg(n, &args[0])?;
                let start = self.int_arg(n, &args[1])?;
                // HQL counts from 0 (like KQL), the engine from 1.
                let start = binary_expr(start.expr, Operator::Plus, lit(1i64));
                let e = match args.get(2) {
                    Some(len) => {
                        let len = self.int_arg(n, len)?;
                        f::substring(s.expr, start, len.expr)
                    }
                    None => f::substr(s.expr, start),
                };
                self.typed(e, span)
            }
            "strcat" => {
                arity(name, args, span, 1, usize::MAX)?;
                let mut parts = Vec::new();
                for a in args {
                    let t = self.compile(a)?;
                    if t.fam() == Fam::Map {
                        return Err(want(n, "strings (or plain values)", &t, a));
                    }
                    parts.push(if t.fam() == Fam::String {
                        t.expr
                    } else {
                        cast(t.expr, DataType::Utf8)
                    });
                }
                self.typed(f::concat(parts), span)
            }
            "coalesce" | "max_of" | "min_of" => {
                arity(name, args, span, 1, usize::MAX)?;
                let mut parts = Vec::new();
                let mut first: Option<(Fam, String)> = None;
                let mut has = (false, false);
                let mut typed = Vec::new();
                for a in args {
                    let t = self.compile(a)?;
                    let tf = t.fam();
                    if tf == Fam::Map || tf == Fam::Other {
                        return Err(want(n, "plain values", &t, a));
                    }
                    if tf != Fam::Null {
                        has.0 |= tf == Fam::Date;
                        has.1 |= tf == Fam::Timestamp;
                        match &first {
                            None => {
                                first = Some((tf, format!("{} '{}'", type_name(&t.ty), show(a))))
                            }
                            Some((f0, desc)) => {
                                let ok = *f0 == tf
                                    || (f0.is_numeric() && tf.is_numeric())
                                    || (f0.is_time() && tf.is_time());
                                if !ok {
                                    return Err(mismatch(
                                        a.span,
                                        format!(
                                            "the arguments of {n}() must have one type: {} '{}' here, {desc} before",
                                            type_name(&t.ty),
                                            show(a)
                                        ),
                                    ));
                                }
                            }
                        }
                    }
                    typed.push(t);
                }
                for t in typed {
                    parts.push(if has.0 && has.1 { as_ts(t) } else { t.expr });
                }
                let e = match n {
                    "coalesce" => f::coalesce(parts),
                    "max_of" => f::greatest(parts),
                    _ => f::least(parts),
                };
                self.typed(e, span)
            }
            "todouble" | "toreal" | "tolong" | "toint" | "todecimal" | "tostring" => {
                arity(name, args, span, 1, 1)?;
                let t = self.compile(&args[0])?;
                let to = match n {
                    "todouble" | "toreal" => DataType::Float64,
                    "tolong" | "toint" => DataType::Int64,
                    "todecimal" => DataType::Decimal128(
                        loupe_model::schema::COST_PRECISION,
                        loupe_model::schema::COST_SCALE,
                    ),
                    _ => DataType::Utf8,
                };
                let ok = match t.fam() {
                    Fam::Map | Fam::Other => false,
                    Fam::Timestamp | Fam::Date | Fam::Duration => {
                        matches!(to, DataType::Utf8 | DataType::Int64)
                    }
                    _ => true,
                };
                if !ok {
                    return Err(want(n, "a number, string or bool", &t, &args[0]));
                }
                // Conversions never fail a query: what does not convert becomes null.
                let e = if to == DataType::Int64 && t.fam().is_time() {
                    cast(cast(as_ts(t), timestamp_type()), DataType::Int64)
                } else if to == DataType::Int64 && t.fam() == Fam::Duration {
                    cast(t.expr, DataType::Int64)
                } else {
                    try_cast(t.expr, to)
                };
                self.typed(e, span)
            }
            "isempty" | "isnotempty" => {
                arity(name, args, span, 1, 1)?;
                let t = self.compile(&args[0])?;
                let e = if t.fam() == Fam::String {
                    let empty = crate::types::string_lit_like("", &t.ty);
                    if n == "isempty" {
                        t.expr.clone().is_null().or(t.expr.eq(empty))
                    } else {
                        t.expr.clone().is_not_null().and(t.expr.not_eq(empty))
                    }
                } else if n == "isempty" {
                    t.expr.is_null()
                } else {
                    t.expr.is_not_null()
                };
                Ok(Typed {
                    expr: e,
                    ty: DataType::Boolean,
                })
            }
            "trim" => {
                arity(name, args, span, 1, 1)?;
                let s = self.string_arg(n, &args[0])?;
                self.typed(f::btrim(vec![s.expr]), span)
            }
            "replace_string" => {
                arity(name, args, span, 3, 3)?;
                let s = self.string_arg(n, &args[0])?;
                let from = self.string_arg(n, &args[1])?;
                let to = self.string_arg(n, &args[2])?;
                self.typed(f::replace(s.expr, from.expr, to.expr), span)
            }
            "tobool" => {
                arity(name, args, span, 1, 1)?;
                let t = self.compile(&args[0])?;
                if !matches!(t.fam(), Fam::Bool | Fam::String | Fam::Int | Fam::Null) {
                    return Err(want(n, "a string, number or bool", &t, &args[0]));
                }
                self.typed(try_cast(t.expr, DataType::Boolean), span)
            }
            "todatetime" => {
                arity(name, args, span, 1, 1)?;
                let t = self.compile(&args[0])?;
                let e = match t.fam() {
                    Fam::Timestamp | Fam::Date | Fam::String | Fam::Null => {
                        try_cast(as_ts(t), timestamp_type())
                    }
                    _ => return Err(want(n, "a string or a date", &t, &args[0])),
                };
                self.typed(e, span)
            }
            "isnull" | "isnotnull" => {
                arity(name, args, span, 1, 1)?;
                let t = self.compile(&args[0])?;
                let e = if n == "isnull" {
                    t.expr.is_null()
                } else {
                    t.expr.is_not_null()
                };
                Ok(Typed {
                    expr: e,
                    ty: DataType::Boolean,
                })
            }
            _ => Err(PlanError::new(
                codes::UNKNOWN_FUNCTION,
                name.span,
                format!("unknown function '{n}'"),
            )),
        }
    }

    fn numeric_arg(&mut self, fname: &str, e: &Ast) -> R<Typed> {
        let t = self.compile(e)?;
        if t.fam().is_numeric() || t.fam() == Fam::Null {
            Ok(t)
        } else {
            Err(want(fname, "a number", &t, e))
        }
    }

    fn int_arg(&mut self, fname: &str, e: &Ast) -> R<Typed> {
        let t = self.compile(e)?;
        if matches!(t.fam(), Fam::Int | Fam::Null) {
            Ok(t)
        } else {
            Err(want(fname, "a whole number", &t, e))
        }
    }

    fn string_arg(&mut self, fname: &str, e: &Ast) -> R<Typed> {
        let t = self.compile(e)?;
        if matches!(t.fam(), Fam::String | Fam::Null) {
            Ok(t)
        } else {
            Err(want(fname, "a string", &t, e)
                .hint(format!("convert it first: tostring({})", show(e))))
        }
    }

    fn time_arg(&mut self, fname: &str, e: &Ast) -> R<Typed> {
        let t = self.compile(e)?;
        if t.fam().is_time() || t.fam() == Fam::Null {
            Ok(t)
        } else {
            Err(want(fname, "a datetime", &t, e))
        }
    }

    /// `bin(datetime, timespan)` → `date_bin` from the Unix epoch; `bin(number, width)` →
    /// the largest multiple of `width` not above the number.
    fn bin(&mut self, name: &Ident, x: &Ast, width: &Ast, span: Span) -> R<Typed> {
        let fname = name.name.as_str();
        let t = self.compile(x)?;
        let w = literal_of(width);
        match t.fam() {
            Fam::Timestamp | Fam::Date => {
                let Some(Literal::Duration(d)) = w else {
                    return Err(invalid(
                        width.span,
                        format!(
                            "{fname}() of a datetime needs a timespan literal such as 1h or 1d, got '{}'",
                            show(width)
                        ),
                    ));
                };
                if *d <= 0 {
                    return Err(invalid(
                        width.span,
                        format!("{fname}() needs a positive width"),
                    ));
                }
                let e = f::date_bin(interval_lit(*d), as_ts(t), timestamp_lit(0));
                self.typed(cast(e, timestamp_type()), span)
            }
            Fam::Int => {
                let Some(Literal::Int(wv)) = w else {
                    return Err(invalid(
                        width.span,
                        format!(
                            "{fname}() of a whole number needs a whole-number literal width, got '{}'",
                            show(width)
                        ),
                    ));
                };
                if *wv <= 0 {
                    return Err(invalid(
                        width.span,
                        format!("{fname}() needs a positive width"),
                    ));
                }
                // x - ((x % w) + w) % w: the floor multiple, exact for any sign.
                let x64 = cast(t.expr, DataType::Int64);
                let m = binary_expr(
                    binary_expr(
                        binary_expr(x64.clone(), Operator::Modulo, lit(*wv)),
                        Operator::Plus,
                        lit(*wv),
                    ),
                    Operator::Modulo,
                    lit(*wv),
                );
                self.typed(binary_expr(x64, Operator::Minus, m), span)
            }
            Fam::Float | Fam::Decimal => {
                let wv = match w {
                    Some(Literal::Int(i)) => *i as f64,
                    Some(Literal::Float { value, .. }) => *value,
                    _ => {
                        return Err(invalid(
                            width.span,
                            format!(
                                "{fname}() of a number needs a number literal width, got '{}'",
                                show(width)
                            ),
                        ));
                    }
                };
                if wv.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || !wv.is_finite() {
                    return Err(invalid(
                        width.span,
                        format!("{fname}() needs a positive width"),
                    ));
                }
                let xf = cast(t.expr, DataType::Float64);
                let e = binary_expr(
                    f::floor(binary_expr(xf, Operator::Divide, lit(wv))),
                    Operator::Multiply,
                    lit(wv),
                );
                self.typed(e, span)
            }
            Fam::Null => Ok(t),
            _ => Err(want(fname, "a datetime or a number", &t, x)),
        }
    }

    fn aggregate(&mut self, name: &Ident, args: &[Ast], span: Span) -> R<Typed> {
        let n = name.name.as_str();
        let (min, max) = match n {
            "count" => (0, 1),
            "countif" | "sum" | "avg" | "min" | "max" | "dcount" | "count_distinct" | "ratio"
            | "p50" | "p90" | "p95" | "p99" | "stdev" | "variance" => (1, 1),
            _ => (2, 2), // percentile, sumif, avgif
        };
        arity(name, args, span, min, max)?;
        let compiled = self.agg_args(args)?;
        // A percentile of timespans is a timespan (the estimate, truncated to the microsecond).
        let duration_out = n.starts_with('p')
            && compiled
                .first()
                .is_some_and(|(t, _)| t.fam() == Fam::Duration);
        let mut it = compiled.into_iter();
        let first = it.next();
        let second = it.next();
        let e = match (n, first) {
            ("count", None) => crate::functions::count_star(),
            ("count", Some((t, _))) => {
                if t.fam() == Fam::Map {
                    return Err(want(n, "a plain value", &t, &args[0]));
                }
                agg::count(t.expr)
            }
            ("countif", Some((t, _))) => {
                self.bool_arg(n, &t, &args[0])?;
                crate::functions::count_star()
                    .filter(t.expr)
                    .build()
                    .map_err(|e| PlanError::engine(span, &e))?
            }
            ("sum", Some((t, _))) => agg::sum(self.agg_numeric(n, t, &args[0])?),
            ("sumif", Some((t, _))) => {
                let x = self.agg_numeric(n, t, &args[0])?;
                let Some((c, _)) = second else {
                    return Err(invalid(span, "sumif() needs a value and a condition"));
                };
                self.bool_arg(n, &c, &args[1])?;
                agg::sum(x)
                    .filter(c.expr)
                    .build()
                    .map_err(|e| PlanError::engine(span, &e))?
            }
            ("avg", Some((t, _))) => agg::avg(self.agg_numeric(n, t, &args[0])?),
            ("avgif", Some((t, _))) => {
                let x = self.agg_numeric(n, t, &args[0])?;
                let Some((c, _)) = second else {
                    return Err(invalid(span, "avgif() needs a value and a condition"));
                };
                self.bool_arg(n, &c, &args[1])?;
                agg::avg(x)
                    .filter(c.expr)
                    .build()
                    .map_err(|e| PlanError::engine(span, &e))?
            }
            ("ratio", Some((t, _))) => {
                // The share of rows where the predicate is true (null counts as false).
                self.bool_arg(n, &t, &args[0])?;
                agg::avg(
                    datafusion::logical_expr::when(t.expr, lit(1.0f64))
                        .otherwise(lit(0.0f64))
                        .map_err(|e| PlanError::engine(span, &e))?,
                )
            }
            ("stdev", Some((t, _))) => {
                agg::stddev(cast(self.agg_numeric(n, t, &args[0])?, DataType::Float64))
            }
            ("variance", Some((t, _))) => {
                agg::var_sample(cast(self.agg_numeric(n, t, &args[0])?, DataType::Float64))
            }
            ("min" | "max", Some((t, _))) => {
                if matches!(t.fam(), Fam::Map | Fam::Other) {
                    return Err(want(n, "a number, string, bool or datetime", &t, &args[0]));
                }
                if n == "min" {
                    agg::min(t.expr)
                } else {
                    agg::max(t.expr)
                }
            }
            ("dcount" | "count_distinct", Some((t, _))) => {
                if matches!(t.fam(), Fam::Map | Fam::Other) {
                    return Err(want(n, "a plain value", &t, &args[0]));
                }
                agg::count_distinct(t.expr)
            }
            ("percentile" | "p50" | "p90" | "p95" | "p99", Some((t, _))) => {
                let p = match n {
                    "p50" => 50.0,
                    "p90" => 90.0,
                    "p95" => 95.0,
                    "p99" => 99.0,
                    _ => {
                        let pv = match args.get(1).and_then(literal_of) {
                            Some(Literal::Int(i)) => Some(*i as f64),
                            Some(Literal::Float { value, .. }) => Some(*value),
                            _ => None,
                        };
                        match pv {
                            Some(v) if (0.0..=100.0).contains(&v) => v,
                            _ => {
                                let at = args.get(1).map_or(span, |a| a.span);
                                return Err(invalid(
                                    at,
                                    "percentile() needs a number literal from 0 to 100 as its second argument",
                                ));
                            }
                        }
                    }
                };
                let x = if t.fam() == Fam::Duration {
                    cast(t.expr, DataType::Int64)
                } else {
                    self.agg_numeric(n, t, &args[0])?
                };
                // p / 100 without a rounding artefact (99.9 → 0.999, not 0.9990000000000001).
                let frac = format!("{p}e-2").parse::<f64>().unwrap_or(p / 100.0);
                agg::approx_percentile_cont(
                    cast(x, DataType::Float64).sort(true, false),
                    lit(frac),
                    None,
                )
            }
            _ => return Err(invalid(span, format!("{n}() got the wrong arguments"))),
        };
        let out = self.push_agg(e, span)?;
        if duration_out {
            let d = cast(
                cast(out.expr, DataType::Int64),
                DataType::Duration(TimeUnit::Microsecond),
            );
            return self.typed(d, span);
        }
        Ok(out)
    }

    fn agg_numeric(&self, fname: &str, t: Typed, e: &Ast) -> R<Expr> {
        if t.fam().is_numeric() || t.fam() == Fam::Null {
            Ok(t.expr)
        } else {
            let hint = (t.fam() == Fam::String)
                .then(|| format!("convert it first: {fname}(todouble({}))", show(e)));
            Err(want(fname, "a number", &t, e).maybe_hint(hint))
        }
    }

    fn bool_arg(&self, fname: &str, t: &Typed, e: &Ast) -> R<()> {
        if matches!(t.fam(), Fam::Bool | Fam::Null) {
            Ok(())
        } else {
            Err(want(fname, "a condition (bool)", t, e))
        }
    }
}

/// `count(*)`: the number of rows (unaliased, unlike DataFusion's `count_all()`).
pub(crate) fn count_star() -> Expr {
    agg::count(lit(1i64))
}
