//! The `requests` table provider: Delta table scan ∪ memtable scan, one consistent snapshot.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{col, lit};
use loupe_model::schema::{PARTITION_COLUMN, day_of_micros};
use loupe_storage::Snapshot;

use crate::QueryError;

/// Every acknowledged record exactly once: the table as of a version plus the records that
/// version does not hold yet.
#[derive(Debug)]
pub struct RequestsTable {
    schema: SchemaRef,
    delta: Option<Arc<dyn TableProvider>>,
    pending: Vec<RecordBatch>,
}

impl RequestsTable {
    /// The `requests` table of a snapshot.
    pub async fn try_new(snapshot: Snapshot) -> Result<Self, QueryError> {
        Self::with_schema(snapshot, loupe_model::requests_schema()).await
    }

    /// Any stored table of a snapshot; `schema` is used until the first flush creates the
    /// Delta table.
    pub async fn with_schema(snapshot: Snapshot, schema: SchemaRef) -> Result<Self, QueryError> {
        let delta = match &snapshot.table {
            Some(t) => Some(
                t.table_provider()
                    .await
                    .map_err(|e| QueryError::Storage(e.to_string()))?,
            ),
            None => None,
        };
        let schema = match &delta {
            Some(d) => d.schema(),
            None => schema,
        };
        Ok(RequestsTable {
            schema,
            delta,
            pending: snapshot.pending,
        })
    }

    /// The pending batches with `projection` applied, cast to the table's column types.
    fn pending_projected(
        &self,
        projection: Option<&Vec<usize>>,
    ) -> Result<(Vec<RecordBatch>, SchemaRef)> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        let mut out = Vec::with_capacity(self.pending.len());
        for b in &self.pending {
            let mut cols = Vec::with_capacity(schema.fields().len());
            for f in schema.fields() {
                let src = b.column_by_name(f.name()).ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(format!(
                        "memtable lacks column {}",
                        f.name()
                    ))
                })?;
                cols.push(if src.data_type() == f.data_type() {
                    src.clone()
                } else {
                    cast(src, f.data_type())?
                });
            }
            out.push(RecordBatch::try_new_with_options(
                schema.clone(),
                cols,
                &datafusion::arrow::array::RecordBatchOptions::new()
                    .with_row_count(Some(b.num_rows())),
            )?);
        }
        Ok((out, schema))
    }
}

#[async_trait]
impl TableProvider for RequestsTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // The Delta scan prunes files and row groups with them; DataFusion re-applies them above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::with_capacity(2);
        if let Some(d) = &self.delta {
            // Time filters also bound the `day` partition column, so whole days are skipped
            // without opening their files.
            let mut with_days = filters.to_vec();
            with_days.extend(filters.iter().flat_map(day_bounds));
            inputs.push(d.scan(state, projection, &with_days, limit).await?);
        }
        let (pending, schema) = self.pending_projected(projection)?;
        if !pending.is_empty() || inputs.is_empty() {
            // Batches are already projected, so the memory source gets no further projection.
            inputs.push(MemorySourceConfig::try_new_exec(&[pending], schema, None)?);
        }
        UnionExec::try_new(inputs)
    }
}

/// The column that `day` is derived from (`day = date(created_at)` in UTC).
const TIME_COLUMN: &str = "created_at";

/// Partition filters implied by a pushed-down filter on `created_at`: `created_at > t` implies
/// `day >= date(t)`, `created_at < t` implies `day <= date(t)`, and so on through `and` and
/// `between`. Anything else implies nothing (an `or` is left alone). The implied filters are only
/// ever weaker than the original, so adding them never changes a result.
fn day_bounds(filter: &Expr) -> Vec<Expr> {
    let mut out = Vec::new();
    collect_day_bounds(filter, &mut out);
    out
}

fn collect_day_bounds(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            collect_day_bounds(left, out);
            collect_day_bounds(right, out);
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, t) = match (
                time_column(left),
                micros_of(right),
                time_column(right),
                micros_of(left),
            ) {
                (true, Some(t), _, _) => (*op, t),
                // `t < created_at` is `created_at > t`.
                (_, _, true, Some(t)) => match op.swap() {
                    Some(op) => (op, t),
                    None => return,
                },
                _ => return,
            };
            let day = lit(ScalarValue::Date32(Some(day_of_micros(t))));
            let part = col(PARTITION_COLUMN);
            match op {
                Operator::Gt | Operator::GtEq => out.push(part.gt_eq(day)),
                Operator::Lt | Operator::LtEq => out.push(part.lt_eq(day)),
                Operator::Eq => out.push(part.eq(day)),
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if time_column(expr) => {
            if let (Some(lo), Some(hi)) = (micros_of(low), micros_of(high)) {
                let part = col(PARTITION_COLUMN);
                out.push(
                    part.clone()
                        .gt_eq(lit(ScalarValue::Date32(Some(day_of_micros(lo))))),
                );
                out.push(part.lt_eq(lit(ScalarValue::Date32(Some(day_of_micros(hi))))));
            }
        }
        _ => {}
    }
}

fn time_column(e: &Expr) -> bool {
    matches!(e, Expr::Column(c) if c.name == TIME_COLUMN)
}

/// A timestamp literal as microseconds since the epoch (UTC).
fn micros_of(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v {
        ScalarValue::TimestampMicrosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(t.div_euclid(1_000)),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(micros: i64) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            Some(micros),
            Some("UTC".into()),
        ))
    }

    fn day(d: i32) -> Expr {
        lit(ScalarValue::Date32(Some(d)))
    }

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn time_filters_bound_the_day_partition() {
        let t = 20_000 * DAY + 5; // a moment on day 20000
        let c = || col(TIME_COLUMN);
        assert_eq!(day_bounds(&c().gt(ts(t))), [col("day").gt_eq(day(20_000))]);
        assert_eq!(day_bounds(&c().lt(ts(t))), [col("day").lt_eq(day(20_000))]);
        assert_eq!(day_bounds(&ts(t).lt(c())), [col("day").gt_eq(day(20_000))]);
        assert_eq!(day_bounds(&c().eq(ts(t))), [col("day").eq(day(20_000))]);
        // Before the epoch, days round down.
        assert_eq!(day_bounds(&c().gt_eq(ts(-1))), [col("day").gt_eq(day(-1))]);
        let both = c().gt_eq(ts(t)).and(c().lt(ts(t + 3 * DAY)));
        assert_eq!(
            day_bounds(&both),
            [col("day").gt_eq(day(20_000)), col("day").lt_eq(day(20_003))]
        );
        assert_eq!(
            day_bounds(&c().between(ts(t), ts(t + DAY))),
            [col("day").gt_eq(day(20_000)), col("day").lt_eq(day(20_001))]
        );
    }

    #[test]
    fn other_filters_imply_nothing() {
        let t = 20_000 * DAY;
        let c = || col(TIME_COLUMN);
        assert!(day_bounds(&c().gt(ts(t)).or(c().lt(ts(t)))).is_empty());
        assert!(day_bounds(&c().not_eq(ts(t))).is_empty());
        assert!(day_bounds(&c().not_between(ts(t), ts(t))).is_empty());
        assert!(day_bounds(&col("completed_at").gt(ts(t))).is_empty());
        assert!(day_bounds(&c().gt(lit(5_i64))).is_empty());
        assert!(day_bounds(&std::ops::Not::not(c().gt(ts(t)))).is_empty());
    }
}
