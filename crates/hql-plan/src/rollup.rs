//! Transparent use of hourly roll-ups.
//!
//! A query shaped like a dashboard tile — `T | where … | summarize count(), countif(…),
//! sum(<summed column>) by <dimensions>, bin(created_at, <whole hours>) | …` — is answered from
//! three sources when the catalog offers a roll-up of `T` whose dimensions and sums cover it
//! ([`RollupSources`]; the first such roll-up, smallest first):
//!
//! * the roll-up's rows for the whole hours inside the query's time bounds,
//! * the flushed raw rows outside those hours (the partial hours at the edges),
//! * every raw row not flushed yet (the roll-up only covers flushed rows),
//!
//! as one union in which a raw row counts 1 (`n`) and a roll-up row counts its `n`. The user's
//! `where` is applied above the union (roll-up rows carry the start of their hour in
//! `created_at`, which satisfies the time bounds exactly when the whole hour does), then
//! `count()` becomes `coalesce(sum(n), 0)`, `countif(p)` becomes `coalesce(sum(iff(p, n, 0)), 0)`
//! and `sum(x)` stays. A histogram roll-up also has the log-scale bucket of one column as a
//! dimension: `by b = toint(log10(latency_ms + 1) * 200)` (exactly that expression,
//! `loupe_model::schema::log_bucket_hql`) groups by its stored `bucket`, and the raw branches
//! compute the same expression with the same compiler. Results are identical to the raw plan,
//! which is used for every other shape.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableSource, cast, lit};
use loupe_hql_syntax::ast::{
    BinaryOp, CaseBranch, Expr as Ast, ExprKind, Ident, Literal, NamedExpr, Op, OpKind, Query,
};

use crate::expr::R;
use crate::plan::ORG_COLUMN;
use crate::{Catalog, PlanError, PlanOptions};

/// One roll-up table: its spec and its rows (columns as in `loupe_storage::rollup`).
#[derive(Clone)]
pub struct RollupTable {
    pub spec: &'static RollupSpec,
    /// One row per (org_id, hour in `created_at`, dimensions[, bucket]) with `n` and the sums.
    pub source: Arc<dyn TableSource>,
}

/// What a roll-up-backed table offers the planner. `flushed` and `pending` have the columns of
/// the table.
#[derive(Clone)]
pub struct RollupSources {
    /// The roll-ups in step with `flushed`, smallest first.
    pub tables: Vec<RollupTable>,
    /// The raw rows the roll-up covers.
    pub flushed: Arc<dyn TableSource>,
    /// The raw rows it does not cover yet.
    pub pending: Arc<dyn TableSource>,
}

impl std::fmt::Debug for RollupSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RollupSources")
    }
}

use loupe_model::schema::{
    PARTITION_COLUMN, ROLLUP_BUCKET, ROLLUP_GRAIN, RollupSpec, log_bucket_hql,
};

/// Columns a roll-up row has exactly (besides `created_at`): the org, the grouping columns and
/// the day (derived from the hour).
fn is_dimension(name: &str, spec: &RollupSpec) -> bool {
    name == ORG_COLUMN || name == PARTITION_COLUMN || spec.dimensions.contains(&name)
}

/// True if `e` is the log-scale bucket expression of the roll-up's histogram column.
fn is_bucket(e: &Ast, spec: &RollupSpec) -> bool {
    let Some(c) = spec.bucket_of else {
        return false;
    };
    let Ok(want) = loupe_hql_syntax::parse_expr(&log_bucket_hql(c)) else {
        return false;
    };
    use loupe_hql_syntax::pretty::expr_to_hql;
    expr_to_hql(e) == expr_to_hql(&want)
}

/// True if `plan` reads a roll-up table (the plan of a query answered from one).
pub fn reads_rollup(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNode;
    plan.exists(|p| {
        Ok(matches!(p, LogicalPlan::TableScan(s)
            if loupe_model::schema::ROLLUPS.iter().any(|r| s.table_name.table() == r.table)))
    })
    .unwrap_or(false)
}

const TIME: &str = "created_at";
const COUNT: &str = "n";
const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

/// The roll-up plan of `q`, or `None` when its shape needs raw rows.
pub(crate) fn try_plan(
    q: &Query,
    catalog: &dyn Catalog,
    opts: &PlanOptions,
) -> R<Option<(LogicalPlan, Vec<Op>)>> {
    let Some(sources) = catalog.rollup(&q.source.name) else {
        return Ok(None);
    };
    let Some(raw) = catalog.table(&q.source.name) else {
        return Ok(None);
    };
    for table in &sources.tables {
        let Some((bounds, ops, daily)) = rewrite(q, table.spec, opts.now_micros) else {
            continue;
        };
        let plan = union(table, &sources, raw.schema().as_ref(), bounds, daily, opts)
            .map_err(|e| PlanError::engine(q.source.span, &e))?;
        return Ok(Some((plan, ops)));
    }
    Ok(None)
}

/// Whole hours `[lo, hi)` the time bounds fully include (`None`: unbounded on that side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Hours {
    lo: Option<i64>,
    hi: Option<i64>,
}

fn floor_hour(t: i64) -> i64 {
    t.div_euclid(HOUR) * HOUR
}

/// The rewritten operators (leading `where`s kept, the summarize rewritten, the rest as is), the
/// whole hours of the time bounds, and whether whole days may be read from daily rows (no `by`
/// bin finer than a day).
fn rewrite(q: &Query, spec: &RollupSpec, now: i64) -> Option<(Hours, Vec<Op>, bool)> {
    let mut hours = Hours::default();
    let mut ops = Vec::with_capacity(q.ops.len());
    let mut it = q.ops.iter();
    let summarize = loop {
        let op = it.next()?;
        match &op.kind {
            OpKind::Where { predicate } => {
                let mut conjuncts = Vec::new();
                split_and(predicate, &mut conjuncts);
                for c in conjuncts {
                    if !time_bound(c, now, &mut hours) && !only_dimensions(c, spec) {
                        return None;
                    }
                }
                ops.push(op.clone());
            }
            OpKind::Summarize { aggregates, by } => break (op, aggregates.clone(), by.clone()),
            OpKind::Count => {
                let agg = NamedExpr {
                    alias: Some(ident("count", op.span)),
                    expr: call("count", vec![], op.span),
                    span: op.span,
                };
                break (op, vec![agg], Vec::new());
            }
            _ => return None,
        }
    };
    let (op, aggregates, by) = summarize;
    let mut groups = Vec::with_capacity(by.len());
    let mut daily = true;
    for b in by {
        let name = b.output_name()?;
        if is_bucket(&b.expr, spec) {
            groups.push(NamedExpr {
                alias: Some(ident(&name, b.alias.as_ref().map_or(b.span, |i| i.span))),
                expr: column(ROLLUP_BUCKET, b.expr.span),
                span: b.span,
            });
        } else if only_dimensions(&b.expr, spec) {
            groups.push(b);
        } else if let Some(width) = hourly_bin(&b.expr) {
            daily &= width % DAY == 0;
            groups.push(b);
        } else {
            return None;
        }
    }
    let mut rewritten = Vec::with_capacity(aggregates.len());
    for a in aggregates {
        let name = a.output_name()?;
        let span = a.expr.span;
        let n = || column(COUNT, span);
        let zero = || {
            Ast::new(
                ExprKind::Literal {
                    value: Literal::Int(0),
                },
                span,
            )
        };
        let expr = match &a.expr.kind {
            ExprKind::Call { name: f, args } => match (f.name.as_str(), args.as_slice()) {
                ("count", []) => call("coalesce", vec![call("sum", vec![n()], span), zero()], span),
                ("countif", [p]) if only_dimensions(p, spec) => {
                    let iff = Ast::new(
                        ExprKind::Case {
                            branches: vec![CaseBranch {
                                when: p.clone(),
                                then: n(),
                            }],
                            otherwise: Box::new(zero()),
                        },
                        span,
                    );
                    call("coalesce", vec![call("sum", vec![iff], span), zero()], span)
                }
                ("sum", [x]) if matches!(&x.kind, ExprKind::Column { name } if spec.sums.contains(&name.name.as_str())) => {
                    a.expr.clone()
                }
                _ => return None,
            },
            _ => return None,
        };
        rewritten.push(NamedExpr {
            alias: Some(ident(&name, a.alias.as_ref().map_or(span, |i| i.span))),
            expr,
            span: a.span,
        });
    }
    ops.push(Op {
        kind: OpKind::Summarize {
            aggregates: rewritten,
            by: groups,
        },
        span: op.span,
    });
    ops.extend(it.cloned());
    Some((hours, ops, daily))
}

fn ident(name: &str, span: loupe_hql_syntax::Span) -> Ident {
    Ident {
        name: name.to_owned(),
        quoted: false,
        span,
    }
}

fn column(name: &str, span: loupe_hql_syntax::Span) -> Ast {
    Ast::new(
        ExprKind::Column {
            name: ident(name, span),
        },
        span,
    )
}

fn call(name: &str, args: Vec<Ast>, span: loupe_hql_syntax::Span) -> Ast {
    Ast::new(
        ExprKind::Call {
            name: ident(name, span),
            args,
        },
        span,
    )
}

fn split_and<'a>(e: &'a Ast, out: &mut Vec<&'a Ast>) {
    match &e.kind {
        ExprKind::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        _ => out.push(e),
    }
}

/// True if `e` reads no column but the roll-up's dimensions (and calls no aggregate: the
/// planner rejects those in `where`/`by` anyway, the same way for both plans).
fn only_dimensions(e: &Ast, spec: &RollupSpec) -> bool {
    let mut ok = true;
    visit(e, &mut |x| match &x.kind {
        ExprKind::Column { name } => ok &= is_dimension(&name.name, spec),
        ExprKind::Property { .. } => ok = false,
        _ => {}
    });
    ok
}

fn visit(e: &Ast, f: &mut dyn FnMut(&Ast)) {
    f(e);
    match &e.kind {
        ExprKind::Literal { .. } | ExprKind::Column { .. } | ExprKind::Property { .. } => {}
        ExprKind::Unary { operand, .. } => visit(operand, f),
        ExprKind::Binary { left, right, .. } => {
            visit(left, f);
            visit(right, f);
        }
        ExprKind::Between {
            expr, low, high, ..
        } => {
            visit(expr, f);
            visit(low, f);
            visit(high, f);
        }
        ExprKind::InList { expr, list, .. } => {
            visit(expr, f);
            list.iter().for_each(|x| visit(x, f));
        }
        ExprKind::IsNull { expr, .. } => visit(expr, f),
        ExprKind::StringMatch { expr, pattern, .. } => {
            visit(expr, f);
            visit(pattern, f);
        }
        ExprKind::Call { args, .. } => args.iter().for_each(|x| visit(x, f)),
        ExprKind::Case {
            branches,
            otherwise,
        } => {
            for b in branches {
                visit(&b.when, f);
                visit(&b.then, f);
            }
            visit(otherwise, f);
        }
    }
}

fn is_time_column(e: &Ast) -> bool {
    matches!(&e.kind, ExprKind::Column { name } if name.name == TIME)
}

/// The width of `bin(created_at, <a whole number of hours>)`.
fn hourly_bin(e: &Ast) -> Option<i64> {
    match &e.kind {
        ExprKind::Call { name, args } if name.name == "bin" && args.len() == 2 => {
            match &args[1].kind {
                ExprKind::Literal {
                    value: Literal::Duration(d),
                } if is_time_column(&args[0]) && *d > 0 && d % HOUR == 0 => Some(*d),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A datetime the planner folds to a constant: `datetime(…)`, `now()`, `ago(d)`, `± d`.
fn time_const(e: &Ast, now: i64) -> Option<i64> {
    let dur = |e: &Ast| match &e.kind {
        ExprKind::Literal {
            value: Literal::Duration(d),
        } => Some(*d),
        _ => None,
    };
    match &e.kind {
        ExprKind::Literal {
            value: Literal::DateTime(t),
        } => Some(*t),
        ExprKind::Call { name, args } if name.name == "now" && args.is_empty() => Some(now),
        ExprKind::Call { name, args } if name.name == "ago" && args.len() == 1 => {
            now.checked_sub(dur(&args[0])?)
        }
        ExprKind::Binary {
            op: BinaryOp::Add,
            left,
            right,
        } => time_const(left, now)?.checked_add(dur(right)?),
        ExprKind::Binary {
            op: BinaryOp::Sub,
            left,
            right,
        } => time_const(left, now)?.checked_sub(dur(right)?),
        _ => None,
    }
}

/// Records `created_at <op> constant` (either side) or `created_at between (a .. b)` in `hours`.
fn time_bound(e: &Ast, now: i64, hours: &mut Hours) -> bool {
    let mut lower = |h: i64| hours.lo = Some(hours.lo.map_or(h, |x| x.max(h)));
    let lo_excl = |t: i64| -> Option<i64> { floor_hour(t).checked_add(HOUR) };
    let lo_incl = |t: i64| -> Option<i64> { Some(floor_hour(t.checked_add(HOUR - 1)?)) };
    let mut upper_vals = Vec::new();
    match &e.kind {
        ExprKind::Binary { op, left, right } => {
            let (op, t) = if is_time_column(left) {
                match time_const(right, now) {
                    Some(t) => (*op, t),
                    None => return false,
                }
            } else if is_time_column(right) {
                let Some(t) = time_const(left, now) else {
                    return false;
                };
                let flipped = match op {
                    BinaryOp::Lt => BinaryOp::Gt,
                    BinaryOp::LtEq => BinaryOp::GtEq,
                    BinaryOp::Gt => BinaryOp::Lt,
                    BinaryOp::GtEq => BinaryOp::LtEq,
                    BinaryOp::Eq => BinaryOp::Eq,
                    _ => return false,
                };
                (flipped, t)
            } else {
                return false;
            };
            match op {
                BinaryOp::Gt => match lo_excl(t) {
                    Some(h) => lower(h),
                    None => return false,
                },
                BinaryOp::GtEq => match lo_incl(t) {
                    Some(h) => lower(h),
                    None => return false,
                },
                BinaryOp::Lt => upper_vals.push(floor_hour(t)),
                BinaryOp::LtEq => match t.checked_add(1) {
                    Some(u) => upper_vals.push(floor_hour(u)),
                    None => return false,
                },
                BinaryOp::Eq => {
                    // A single instant covers no whole hour.
                    match (lo_incl(t), t.checked_add(1)) {
                        (Some(h), Some(u)) => {
                            lower(h);
                            upper_vals.push(floor_hour(u));
                        }
                        _ => return false,
                    }
                }
                _ => return false,
            }
        }
        ExprKind::Between {
            expr,
            low,
            high,
            negated: false,
        } if is_time_column(expr) => {
            let (Some(a), Some(b)) = (time_const(low, now), time_const(high, now)) else {
                return false;
            };
            match (lo_incl(a), b.checked_add(1)) {
                (Some(h), Some(u)) => {
                    lower(h);
                    upper_vals.push(floor_hour(u));
                }
                _ => return false,
            }
        }
        _ => return false,
    }
    for u in upper_vals {
        hours.hi = Some(hours.hi.map_or(u, |x| x.min(u)));
    }
    true
}

fn ts(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

/// Daily roll-up rows for the whole days in `hours` (when `daily`) ∪ hourly roll-up rows for the
/// other whole hours ∪ flushed raw rows outside them ∪ unflushed raw rows, each branch scoped to
/// the caller's org, all with the raw table's column types plus `n` (and `bucket`).
fn union(
    rollup: &RollupTable,
    s: &RollupSources,
    raw: &datafusion::arrow::datatypes::Schema,
    hours: Hours,
    daily: bool,
    opts: &PlanOptions,
) -> datafusion::error::Result<LogicalPlan> {
    let spec = rollup.spec;
    let mut columns: Vec<(&str, DataType)> = Vec::new();
    let dims = [ORG_COLUMN, PARTITION_COLUMN]
        .into_iter()
        .chain(spec.dimensions.iter().copied());
    for c in dims.chain([TIME]).chain(spec.sums.iter().copied()) {
        columns.push((c, raw.field_with_name(c)?.data_type().clone()));
    }
    let org_type = raw.field_with_name(ORG_COLUMN)?.data_type().clone();
    // The bucket of a raw row: the same HQL expression, compiled by the same compiler.
    let bucket = spec
        .bucket_of
        .map(|c| loupe_hql_syntax::parse_expr(&log_bucket_hql(c)))
        .transpose()
        .map_err(|e| datafusion::error::DataFusionError::Plan(e.to_string()))?;
    let branch = |source: &Arc<dyn TableSource>,
                  table: &str,
                  filter: Option<Expr>,
                  counted: bool|
     -> datafusion::error::Result<LogicalPlan> {
        let t = TableReference::bare(table);
        let c = |n: &str| Expr::Column(Column::new(Some(t.clone()), n));
        let org = cast(lit(opts.org_id.clone()), org_type.clone());
        let mut b = LogicalPlanBuilder::scan(t.clone(), source.clone(), None)?
            .filter(c(ORG_COLUMN).eq(org))?;
        if let Some(f) = filter {
            b = b.filter(f)?;
        }
        let mut exprs: Vec<Expr> = columns
            .iter()
            .map(|(n, ty)| cast(c(n), ty.clone()).alias(*n))
            .collect();
        if let Some(bucket) = &bucket {
            let e = if counted {
                c(ROLLUP_BUCKET)
            } else {
                let schema = b.schema().clone();
                crate::expr::Compiler::new(&schema, opts, "summarize")
                    .compile(bucket)
                    .map_err(|e| datafusion::error::DataFusionError::Plan(e.message))?
                    .expr
            };
            exprs.push(cast(e, DataType::Int64).alias(ROLLUP_BUCKET));
        }
        exprs.push(if counted {
            cast(c(COUNT), DataType::Int64).alias(COUNT)
        } else {
            lit(1_i64).alias(COUNT)
        });
        b.project(exprs)?.build()
    };
    let tc = |t: &str| Expr::Column(Column::new(Some(TableReference::bare(t)), TIME));
    // `[lo, hi)` (a side `None`: unbounded) as a filter on `created_at`, and its complement.
    let inside = |t: &str, lo: Option<i64>, hi: Option<i64>| -> Option<Expr> {
        match (lo, hi) {
            (None, None) => None,
            (Some(lo), None) => Some(tc(t).gt_eq(ts(lo))),
            (None, Some(hi)) => Some(tc(t).lt(ts(hi))),
            (Some(lo), Some(hi)) => Some(tc(t).gt_eq(ts(lo)).and(tc(t).lt(ts(hi)))),
        }
    };
    let outside = |t: &str, lo: Option<i64>, hi: Option<i64>| -> Option<Expr> {
        match (lo, hi) {
            (None, None) => None,
            (Some(lo), None) => Some(tc(t).lt(ts(lo))),
            (None, Some(hi)) => Some(tc(t).gt_eq(ts(hi))),
            (Some(lo), Some(hi)) => Some(tc(t).lt(ts(lo)).or(tc(t).gt_eq(ts(hi)))),
        }
    };
    let and = |a: Expr, b: Option<Expr>| match b {
        Some(b) => a.and(b),
        None => a,
    };
    let name = spec.table;
    let grain = |hours: i32| {
        Expr::Column(Column::new(Some(TableReference::bare(name)), ROLLUP_GRAIN)).eq(lit(hours))
    };
    // The whole UTC days inside the whole hours, when the query allows daily rows.
    let days = Hours {
        lo: hours
            .lo
            .map(|t| t.div_euclid(DAY) * DAY + if t % DAY == 0 { 0 } else { DAY }),
        hi: hours.hi.map(|t| t.div_euclid(DAY) * DAY),
    };
    let days =
        (daily && !matches!((days.lo, days.hi), (Some(lo), Some(hi)) if lo >= hi)).then_some(days);
    // One scan of the roll-up: its daily rows for the whole days, its hourly rows for the
    // other whole hours (the edges; none when the days are the whole range).
    let hourly = |edges: Option<Expr>| and(and(grain(1), inside(name, hours.lo, hours.hi)), edges);
    let filter = match days {
        Some(d) => {
            let whole_days = and(grain(24), inside(name, d.lo, d.hi));
            match outside(name, d.lo, d.hi) {
                Some(edges) => whole_days.or(hourly(Some(edges))),
                None => whole_days,
            }
        }
        None => hourly(None),
    };
    let mut branches = vec![branch(&rollup.source, name, Some(filter), true)?];
    let flushed_name = format!("{name}_flushed");
    if let Some(o) = outside(&flushed_name, hours.lo, hours.hi) {
        branches.push(branch(&s.flushed, &flushed_name, Some(o), false)?);
    }
    let pending_name = format!("{name}_pending");
    branches.push(branch(&s.pending, &pending_name, None, false)?);
    let mut it = branches.into_iter();
    let Some(first) = it.next() else {
        return Err(datafusion::error::DataFusionError::Plan(
            "roll-up union without branches".into(),
        ));
    };
    let mut plan = LogicalPlanBuilder::from(first);
    for b in it {
        plan = plan.union(b)?;
    }
    plan.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loupe_model::schema::ROLLUPS;

    const NOW: i64 = 1_790_000_000_000_000 + 1_234; // not on an hour

    /// The whole hours of `src` when `requests_hourly` answers it.
    fn hours_of(src: &str) -> Option<Hours> {
        let q = loupe_hql_syntax::parse(src).expect("parse");
        rewrite(&q, &ROLLUPS[0], NOW).map(|(h, _, _)| h)
    }

    #[test]
    fn whole_days_come_from_daily_rows_unless_a_bin_is_finer() {
        let daily = |src: &str| {
            let q = loupe_hql_syntax::parse(src).expect("parse");
            rewrite(&q, &ROLLUPS[0], NOW).map(|(_, _, d)| d)
        };
        for (q, d) in [
            (
                "requests | where created_at > ago(30d) | summarize count() by model",
                true,
            ),
            (
                "requests | summarize count() by t = bin(created_at, 1d)",
                true,
            ),
            (
                "requests | summarize count() by t = bin(created_at, 7d), provider",
                true,
            ),
            ("requests | summarize count() by day", true),
            (
                "requests | summarize count() by t = bin(created_at, 6h)",
                false,
            ),
            (
                "requests | summarize count() by t = bin(created_at, 1h), model",
                false,
            ),
        ] {
            assert_eq!(daily(q), Some(d), "{q}");
        }
    }

    /// The roll-up that answers `src` (the first that can), if any.
    fn rollup_of(src: &str) -> Option<&'static str> {
        let q = loupe_hql_syntax::parse(src).expect("parse");
        ROLLUPS
            .iter()
            .find(|spec| rewrite(&q, spec, NOW).is_some())
            .map(|spec| spec.table)
    }

    #[test]
    fn each_shape_reads_the_smallest_rollup_that_has_its_columns() {
        let range =
            "created_at >= datetime(2026-10-01 10:00) and created_at < datetime(2026-10-31 10:00)";
        let lat = log_bucket_hql("latency_ms");
        let ttft = log_bucket_hql("ttft_ms");
        for (q, table) in [
            (
                format!("requests | where {range} | summarize count() by model"),
                "requests_hourly",
            ),
            (
                format!("requests | where {range} | summarize count(), sum(cost_usd)"),
                "requests_hourly",
            ),
            (
                format!(
                    "requests | where {range} | summarize c = sum(cost_saved_usd) by cache_hit"
                ),
                "requests_hourly",
            ),
            (
                format!(
                    "requests | where {range} | summarize n = count(), s = sum(latency_ms) by b = {lat}"
                ),
                "requests_latency_hourly",
            ),
            (
                format!(
                    "requests | where {range} | summarize n = count(), s = sum(latency_ms) by t = bin(created_at, 6h), b = {lat}"
                ),
                "requests_latency_hourly",
            ),
            (
                format!("requests | summarize n = count() by b = {lat} | sort by b"),
                "requests_latency_hourly",
            ),
            (
                format!(
                    "requests | where {range} | summarize n = count(), s = sum(ttft_ms) by b = {ttft}"
                ),
                "requests_ttft_hourly",
            ),
            (
                format!(
                    "requests | where {range} | summarize requests = count(), errors = countif(status >= 400), \
                 cost_usd = sum(cost_usd), total_tokens = sum(total_tokens) by key = user_id \
                 | sort by cost_usd desc, key asc nulls last | take 10"
                ),
                "requests_users_hourly",
            ),
            (
                format!(
                    "requests | where {range} and user_id in ('a', 'b') | summarize count() by user_id"
                ),
                "requests_users_hourly",
            ),
            (
                "requests | summarize sum(cost_usd) by user_id".to_string(),
                "requests_users_hourly",
            ),
        ] {
            assert_eq!(rollup_of(&q), Some(table), "{q}");
        }
    }

    #[test]
    fn dashboard_shapes_are_rewritten_with_their_whole_hours() {
        let base = floor_hour(NOW);
        let d7 = floor_hour(NOW - 7 * 24 * HOUR) + HOUR;
        let h = hours_of(
            "requests | where created_at > ago(7d) | summarize n = count(), c = sum(cost_usd) by model",
        );
        assert_eq!(
            h,
            Some(Hours {
                lo: Some(d7),
                hi: None
            })
        );
        let h = hours_of(
            "requests | where created_at >= datetime(2026-01-01) and created_at < datetime(2026-01-02 10:30) and status >= 400 | count",
        );
        assert_eq!(
            h,
            Some(Hours {
                lo: Some(1_767_225_600_000_000),
                hi: Some(1_767_225_600_000_000 + 34 * HOUR)
            })
        );
        let h = hours_of(
            "requests | summarize requests = count(), hits = countif(cache_hit) by day = bin(created_at, 1d), provider | sort by day",
        );
        assert_eq!(h, Some(Hours::default()));
        let h = hours_of(
            "requests | where now() - 1h <= created_at | summarize count() by bin(created_at, 1h)",
        );
        assert_eq!(
            h,
            Some(Hours {
                lo: Some(base),
                hi: None
            })
        );
        // One instant covers no whole hour.
        let h = hours_of("requests | where created_at == datetime(2026-01-01) | count")
            .expect("rewritten");
        assert!(h.lo >= h.hi);
    }

    #[test]
    fn other_shapes_read_raw_rows() {
        for q in [
            "requests | summarize p95(latency_ms) by model",
            "requests | summarize dcount(user_id) by model",
            "requests | where isnotempty(user_id) | summarize count() by model",
            "requests | where properties.feature == 'x' | count",
            "requests | summarize count() by bin(created_at, 30m)",
            "requests | summarize count() by created_at",
            "requests | where created_at > ago(7d) or status == 500 | count",
            "requests | where created_at != datetime(2026-01-01) | count",
            "requests | where created_at > ago(7d)",
            "requests | extend x = 1 | count",
            "requests | summarize sum(latency_ms) by model",
            "requests | summarize count() + 1 by model",
            "requests | summarize countif(latency_ms > 5) by model",
            "requests | summarize avg(cost_usd)",
            "requests | summarize max(total_tokens)",
            "requests | where bin(created_at, 1h) > ago(1d) | count",
            "requests | summarize n = count() by b = toint(log10(latency_ms + 2) * 200)",
            "requests | summarize n = count() by b = toint(log10(latency_ms + 1) * 100)",
            "requests | summarize n = count() by b = toint(log10(latency_ms) * 200)",
            "requests | summarize s = sum(latency_ms) by b = toint(log10(ttft_ms + 1) * 200)",
            "requests | where model == 'x' | summarize n = count() by b = toint(log10(latency_ms + 1) * 200)",
            "requests | summarize n = count() by b = toint(log10(latency_ms + 1) * 200), model",
            "requests | summarize n = count() by b = toint(log10(latency_ms + 1) * 200), user_id",
            "requests | summarize sum(prompt_tokens) by user_id",
            "requests | summarize count() by user_id, model",
        ] {
            assert_eq!(rollup_of(q), None, "{q}");
        }
    }
}
