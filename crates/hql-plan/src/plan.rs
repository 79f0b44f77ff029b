//! Operators: each pipeline stage becomes one or two logical plan nodes.

use std::collections::HashSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};

use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, SortExpr, cast, lit};
use loupe_hql_syntax::Span;
use loupe_hql_syntax::ast::{
    Ident, NamedExpr, NullsOrder, Op, OpKind, Query, Rename, SortKey, SortOrder,
};

use crate::error::{PlanError, codes};
use crate::expr::{Compiler, R, Typed, column_of, mismatch, show, suggest_name, ucol};
use crate::types::{Fam, type_name};
use crate::{Catalog, PlanOptions};

/// The column every table must have; the scan is filtered on it before anything else.
pub(crate) const ORG_COLUMN: &str = "org_id";

pub(crate) fn plan_query(q: &Query, catalog: &dyn Catalog, opts: &PlanOptions) -> R<LogicalPlan> {
    // A dashboard-shaped query over a table with a roll-up reads the roll-up. Should that plan
    // fail, the raw plan runs (and reports the query's real error, if any).
    if let Ok(Some((mut plan, ops))) = crate::rollup::try_plan(q, catalog, opts) {
        let mut ok = true;
        for op in &ops {
            match apply(plan.clone(), op, opts) {
                Ok(p) => plan = p,
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && let Ok(p) = finish(plan, q.span) {
            return Ok(p);
        }
    }
    let mut plan = scan(q, catalog, opts)?;
    for op in &q.ops {
        plan = apply(plan, op, opts)?;
    }
    finish(plan, q.span)
}

/// `TableScan` then `Filter(org_id = …)`: the first two nodes of every plan.
fn scan(q: &Query, catalog: &dyn Catalog, opts: &PlanOptions) -> R<LogicalPlan> {
    let name = &q.source.name;
    let span = q.source.span;
    let Some(source) = catalog.table(name) else {
        let mut names = catalog.table_names();
        names.sort();
        let hint = match suggest_name(name, names.iter().map(String::as_str)) {
            Some(s) => format!("did you mean '{s}'?"),
            None if names.is_empty() => "no tables are available".to_string(),
            None => format!("tables: {}", names.join(", ")),
        };
        return Err(PlanError::new(
            codes::UNKNOWN_TABLE,
            span,
            format!("unknown table '{name}'"),
        )
        .hint(hint));
    };
    let schema = source.schema();
    let Ok(org_field) = schema.field_with_name(ORG_COLUMN) else {
        return Err(PlanError::new(
            codes::UNSCOPED_TABLE,
            span,
            format!("table '{name}' has no '{ORG_COLUMN}' column, so it cannot be queried"),
        ));
    };
    let org = match org_field.data_type() {
        DataType::Utf8View => lit(ScalarValue::Utf8View(Some(opts.org_id.clone()))),
        DataType::LargeUtf8 => lit(ScalarValue::LargeUtf8(Some(opts.org_id.clone()))),
        _ => lit(ScalarValue::Utf8(Some(opts.org_id.clone()))),
    };
    let table = TableReference::bare(name.as_str());
    let org_col = Expr::Column(Column::new(Some(table.clone()), ORG_COLUMN));
    LogicalPlanBuilder::scan(table, source, None)
        .and_then(|b| b.filter(org_col.eq(org)))
        .and_then(LogicalPlanBuilder::build)
        .map_err(|e| PlanError::engine(span, &e))
}

/// The output has the user's names, unqualified (`model`, never `requests.model`).
fn finish(plan: LogicalPlan, span: Span) -> R<LogicalPlan> {
    let schema = plan.schema();
    if schema.iter().all(|(q, _)| q.is_none()) {
        return Ok(plan);
    }
    let exprs: Vec<Expr> = schema
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())).alias(f.name()))
        .collect();
    build(LogicalPlanBuilder::from(plan).project(exprs), span)
}

fn build(b: datafusion::error::Result<LogicalPlanBuilder>, span: Span) -> R<LogicalPlan> {
    b.and_then(LogicalPlanBuilder::build)
        .map_err(|e| PlanError::engine(span, &e))
}

fn names(schema: &DFSchema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Names for the items of one operator: the alias, else the expression's natural name, else
/// `column1`, `column2`, … (the n-th unnamed item, skipping names already taken).
struct Namer {
    taken: HashSet<String>,
    next: usize,
}

impl Namer {
    fn new(taken: impl IntoIterator<Item = String>) -> Self {
        Namer {
            taken: taken.into_iter().collect(),
            next: 1,
        }
    }

    fn name(&mut self, item: &NamedExpr) -> String {
        if let Some(n) = item.output_name() {
            self.taken.insert(n.clone());
            return n;
        }
        loop {
            let n = format!("column{}", self.next);
            self.next += 1;
            if !self.taken.contains(&n) {
                self.taken.insert(n.clone());
                return n;
            }
        }
    }
}

fn item_span(item: &NamedExpr) -> Span {
    item.alias.as_ref().map_or(item.expr.span, |a| a.span)
}

fn duplicate(name: &str, span: Span, op: &str) -> PlanError {
    PlanError::new(
        codes::DUPLICATE_COLUMN,
        span,
        format!("{op} produces two columns named '{name}'"),
    )
    .hint(format!(
        "give one of them another name: `other_name = {}`",
        name_hql(name)
    ))
}

fn name_hql(name: &str) -> String {
    loupe_hql_syntax::pretty::ident_hql(name)
}

fn apply(plan: LogicalPlan, op: &Op, opts: &PlanOptions) -> R<LogicalPlan> {
    let span = op.span;
    let schema = plan.schema().clone();
    let b = LogicalPlanBuilder::from(plan);
    match &op.kind {
        OpKind::Where { predicate } => {
            let mut c = Compiler::new(&schema, opts, "where");
            let t = c.compile(predicate)?;
            let pred = match t.fam() {
                Fam::Bool => t.expr,
                Fam::Null => cast(t.expr, DataType::Boolean),
                _ => {
                    return Err(mismatch(
                        predicate.span,
                        format!(
                            "where needs a condition (bool), got {} '{}'",
                            type_name(&t.ty),
                            show(predicate)
                        ),
                    ));
                }
            };
            build(b.filter(pred), span)
        }
        OpKind::Summarize { aggregates, by } => summarize(b, &schema, aggregates, by, opts, span),
        OpKind::Extend { columns } => extend(b, &schema, columns, opts, span),
        OpKind::Project { columns } => {
            let mut c = Compiler::new(&schema, opts, "project");
            let mut namer = Namer::new(Vec::new());
            let mut out: Vec<(String, Typed)> = Vec::new();
            for item in columns {
                let t = c.compile(&item.expr)?;
                let name = namer.name(item);
                if out.iter().any(|(n, _)| *n == name) {
                    return Err(duplicate(&name, item_span(item), "project"));
                }
                c.locals.push((name.clone(), t.clone()));
                out.push((name, t));
            }
            let exprs: Vec<Expr> = out.into_iter().map(|(n, t)| t.expr.alias(n)).collect();
            build(b.project(exprs), span)
        }
        OpKind::ProjectAway { columns } => {
            let c = Compiler::new(&schema, opts, "project-away");
            let mut away: HashSet<&str> = HashSet::new();
            for id in columns {
                if column_of(&schema, &id.name).is_none() {
                    return Err(c.unknown_column(&id.name, id.span));
                }
                away.insert(id.name.as_str());
            }
            let exprs: Vec<Expr> = schema
                .iter()
                .filter(|(_, f)| !away.contains(f.name().as_str()))
                .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
                .collect();
            if exprs.is_empty() {
                return Err(PlanError::new(
                    codes::NO_COLUMNS,
                    span,
                    "project-away would remove every column",
                ));
            }
            build(b.project(exprs), span)
        }
        OpKind::ProjectRename { renames } => project_rename(b, &schema, renames, opts, span),
        OpKind::Sort { keys } => {
            let sorts = sort_exprs(&schema, keys, opts, "sort")?;
            build(b.sort(sorts), span)
        }
        OpKind::Take { count } => build(
            b.limit(0, Some(usize::try_from(*count).unwrap_or(usize::MAX))),
            span,
        ),
        OpKind::Top { count, by } => {
            let sorts = sort_exprs(&schema, by, opts, "top")?;
            build(
                b.sort(sorts)
                    .and_then(|b| b.limit(0, Some(usize::try_from(*count).unwrap_or(usize::MAX)))),
                span,
            )
        }
        OpKind::Distinct { columns } => {
            let mut c = Compiler::new(&schema, opts, "distinct");
            let mut namer = Namer::new(Vec::new());
            let mut out: Vec<(String, Expr)> = Vec::new();
            for item in columns {
                let t = c.compile(&item.expr)?;
                if t.fam() == Fam::Map {
                    return Err(mismatch(
                        item.expr.span,
                        format!("distinct cannot compare maps ('{}')", show(&item.expr)),
                    ));
                }
                let name = namer.name(item);
                if out.iter().any(|(n, _)| *n == name) {
                    return Err(duplicate(&name, item_span(item), "distinct"));
                }
                out.push((name, t.expr));
            }
            let exprs: Vec<Expr> = out.into_iter().map(|(n, e)| e.alias(n)).collect();
            build(
                b.project(exprs).and_then(LogicalPlanBuilder::distinct),
                span,
            )
        }
        OpKind::Count => build(
            b.aggregate(
                Vec::<Expr>::new(),
                vec![crate::functions::count_star().alias("count")],
            ),
            span,
        ),
    }
}

fn sort_exprs(
    schema: &DFSchema,
    keys: &[SortKey],
    opts: &PlanOptions,
    op: &'static str,
) -> R<Vec<SortExpr>> {
    let mut c = Compiler::new(schema, opts, op);
    keys.iter()
        .map(|k| {
            let t = c.compile(&k.expr)?;
            if matches!(t.fam(), Fam::Map | Fam::Other) {
                return Err(mismatch(
                    k.expr.span,
                    format!("cannot sort by {} '{}'", type_name(&t.ty), show(&k.expr)),
                ));
            }
            Ok(t.expr
                .sort(k.order == SortOrder::Asc, k.nulls == NullsOrder::First))
        })
        .collect()
}

fn extend(
    b: LogicalPlanBuilder,
    schema: &DFSchema,
    columns: &[NamedExpr],
    opts: &PlanOptions,
    span: Span,
) -> R<LogicalPlan> {
    let mut c = Compiler::new(schema, opts, "extend");
    let mut namer = Namer::new(names(schema));
    let mut new: Vec<(String, Typed)> = Vec::new();
    for item in columns {
        let t = c.compile(&item.expr)?;
        let name = namer.name(item);
        if new.iter().any(|(n, _)| *n == name) {
            return Err(duplicate(&name, item_span(item), "extend"));
        }
        c.locals.push((name.clone(), t.clone()));
        new.push((name, t));
    }
    let mut exprs: Vec<Expr> = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    for (q, f) in schema.iter() {
        match new.iter().find(|(n, _)| n == f.name()) {
            // Replaced in place.
            Some((n, t)) => {
                exprs.push(t.expr.clone().alias(n));
                used.insert(n.clone());
            }
            None => exprs.push(Expr::Column(Column::new(q.cloned(), f.name()))),
        }
    }
    for (n, t) in new {
        if !used.contains(&n) {
            exprs.push(t.expr.alias(n));
        }
    }
    build(b.project(exprs), span)
}

fn project_rename(
    b: LogicalPlanBuilder,
    schema: &DFSchema,
    renames: &[Rename],
    opts: &PlanOptions,
    span: Span,
) -> R<LogicalPlan> {
    let c = Compiler::new(schema, opts, "project-rename");
    let mut map: Vec<(&Ident, &Ident)> = Vec::new();
    for r in renames {
        if column_of(schema, &r.old.name).is_none() {
            return Err(c.unknown_column(&r.old.name, r.old.span));
        }
        if map.iter().any(|(_, old)| old.name == r.old.name) {
            return Err(PlanError::new(
                codes::DUPLICATE_COLUMN,
                r.old.span,
                format!("'{}' is renamed twice", r.old.name),
            ));
        }
        map.push((&r.new, &r.old));
    }
    let mut out_names: Vec<String> = Vec::new();
    let mut exprs = Vec::new();
    for (q, f) in schema.iter() {
        let col = Expr::Column(Column::new(q.cloned(), f.name()));
        match map.iter().find(|(_, old)| old.name == *f.name()) {
            Some((new, _)) => {
                out_names.push(new.name.clone());
                exprs.push((col.alias(&new.name), new.span));
            }
            None => {
                out_names.push(f.name().clone());
                exprs.push((col, span));
            }
        }
    }
    // Any name now twice?
    for (i, n) in out_names.iter().enumerate() {
        if out_names[..i].contains(n) || out_names[i + 1..].contains(n) {
            let at = map
                .iter()
                .find(|(new, _)| new.name == *n)
                .map_or(span, |(new, _)| new.span);
            return Err(PlanError::new(
                codes::DUPLICATE_COLUMN,
                at,
                format!("project-rename produces two columns named '{n}'"),
            )
            .hint(format!(
                "'{n}' already exists: rename or project it away first"
            )));
        }
    }
    build(b.project(exprs.into_iter().map(|(e, _)| e)), span)
}

fn summarize(
    b: LogicalPlanBuilder,
    schema: &DFSchema,
    aggregates: &[NamedExpr],
    by: &[NamedExpr],
    opts: &PlanOptions,
    span: Span,
) -> R<LogicalPlan> {
    let mut namer = Namer::new(Vec::new());
    let mut out_names: Vec<String> = Vec::new();
    let check = |name: &str, at: Span, out: &mut Vec<String>| -> R<()> {
        if out.iter().any(|n| n == name) {
            return Err(duplicate(name, at, "summarize"));
        }
        out.push(name.to_string());
        Ok(())
    };

    // Groups: row-level expressions.
    let mut gc = Compiler::new(schema, opts, "summarize ... by");
    let mut groups: Vec<(String, Expr)> = Vec::new();
    for item in by {
        let t = gc.compile(&item.expr)?;
        if matches!(t.fam(), Fam::Map | Fam::Other) {
            return Err(mismatch(
                item.expr.span,
                format!(
                    "cannot group by {} '{}'",
                    type_name(&t.ty),
                    show(&item.expr)
                ),
            )
            .hint("group by one key instead, e.g. `by properties.Environment`"));
        }
        let name = namer.name(item);
        check(&name, item_span(item), &mut out_names)?;
        groups.push((name, t.expr));
    }

    // Aggregates: every column reference inside an aggregate call.
    let mut ac = Compiler::summarize(schema, opts);
    let mut items: Vec<(String, Typed)> = Vec::new();
    for item in aggregates {
        let before = ac.aggs.as_ref().map_or(0, Vec::len);
        let t = ac.compile(&item.expr)?;
        let after = ac.aggs.as_ref().map_or(0, Vec::len);
        if after == before {
            return Err(PlanError::new(
                codes::NOT_AN_AGGREGATE,
                item.expr.span,
                format!("'{}' is not an aggregate", show(&item.expr)),
            )
            .hint("summarize computes aggregates such as count(), sum(x), avg(x); put grouping columns after `by`"));
        }
        let name = namer.name(item);
        check(&name, item_span(item), &mut out_names)?;
        items.push((name, t));
    }
    let mut slots = ac.aggs.take().unwrap_or_default();

    // When every item is exactly one aggregate, name the aggregates directly.
    let direct = items.len() == slots.len()
        && items
            .iter()
            .zip(&slots)
            .all(|((_, t), s)| t.expr == ucol(&s.name));
    if direct {
        for ((n, _), s) in items.iter().zip(slots.iter_mut()) {
            s.name = n.clone();
        }
    }
    let group_exprs: Vec<Expr> = groups.iter().map(|(n, e)| e.clone().alias(n)).collect();
    let agg_exprs: Vec<Expr> = slots
        .iter()
        .map(|s| s.expr.clone().alias(&s.name))
        .collect();
    let b = b.aggregate(group_exprs, agg_exprs);
    if direct {
        return build(b, span);
    }
    let mut exprs: Vec<Expr> = groups.iter().map(|(n, _)| ucol(n)).collect();
    exprs.extend(items.into_iter().map(|(n, t)| t.expr.alias(n)));
    build(b.and_then(|b| b.project(exprs)), span)
}
