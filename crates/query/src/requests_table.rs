//! The `requests` table provider: Delta table scan ∪ memtable scan, one consistent snapshot.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
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
    pub async fn try_new(snapshot: Snapshot) -> Result<Self, QueryError> {
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
            None => loupe_model::requests_schema(),
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
            inputs.push(d.scan(state, projection, filters, limit).await?);
        }
        let (pending, schema) = self.pending_projected(projection)?;
        if !pending.is_empty() || inputs.is_empty() {
            // Batches are already projected, so the memory source gets no further projection.
            inputs.push(MemorySourceConfig::try_new_exec(&[pending], schema, None)?);
        }
        UnionExec::try_new(inputs)
    }
}
