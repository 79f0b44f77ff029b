//! Running HQL: compile against the session's tables, execute under limits, format results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::provider_as_source;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_plan::{ExecutionPlan, collect};
use loupe_hql_plan::{Catalog, PlanOptions};
use serde::Serialize;

use crate::QueryError;

/// Limits of one HQL query.
#[derive(Debug, Clone, Copy)]
pub struct HqlLimits {
    /// Results with more rows than this are refused (422) rather than truncated silently.
    pub max_rows: usize,
    pub timeout: Duration,
}

impl Default for HqlLimits {
    fn default() -> Self {
        HqlLimits {
            max_rows: 100_000,
            timeout: Duration::from_secs(30),
        }
    }
}

/// What a query returned, before formatting.
#[derive(Debug)]
pub struct HqlOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub stats: HqlStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct HqlStats {
    pub rows: usize,
    pub elapsed_ms: f64,
    pub compile_ms: f64,
    /// Parquet files the scans read after partition and statistics pruning.
    pub files_scanned: usize,
    /// Rows still in the memtable (not yet in Parquet) that the query saw.
    pub memtable_rows: usize,
}

/// The `requests` table (and, later, others) as HQL sees them.
pub(crate) async fn catalog(
    ctx: &SessionContext,
    requests_rollup: Option<loupe_hql_plan::RollupSources>,
) -> Result<impl Catalog, QueryError> {
    let mut tables = Vec::new();
    for name in ["requests", "spans"] {
        if let Ok(t) = ctx.table_provider(name).await {
            tables.push((name.to_string(), provider_as_source(t)));
        }
    }
    let rollups = requests_rollup
        .map(|r| vec![("requests".to_string(), r)])
        .unwrap_or_default();
    Ok(loupe_hql_plan::TableList { tables, rollups })
}

pub(crate) fn compile(
    src: &str,
    catalog: &dyn Catalog,
    org_id: &str,
    max_rows: Option<usize>,
    now_micros: i64,
) -> Result<LogicalPlan, QueryError> {
    let opts = PlanOptions {
        org_id: org_id.to_string(),
        now_micros,
    };
    let plan = loupe_hql_plan::compile(src, catalog, &opts).map_err(QueryError::Hql)?;
    match max_rows {
        // One extra row tells "exactly max_rows" from "more than max_rows".
        Some(n) => Ok(LogicalPlanBuilder::from(plan)
            .limit(0, Some(n + 1))?
            .build()?),
        None => Ok(plan),
    }
}

/// Parquet files a physical plan will read.
pub(crate) fn files_scanned(plan: &Arc<dyn ExecutionPlan>) -> usize {
    use datafusion::datasource::physical_plan::FileScanConfig;
    use datafusion::datasource::source::DataSourceExec;
    let mut n = 0;
    if let Some(ds) = plan.downcast_ref::<DataSourceExec>()
        && let Some(cfg) = ds.data_source().downcast_ref::<FileScanConfig>()
    {
        n += cfg.file_groups.iter().map(|g| g.len()).sum::<usize>();
    }
    for child in plan.children() {
        n += files_scanned(child);
    }
    n
}

pub(crate) async fn execute(
    ctx: &SessionContext,
    plan: LogicalPlan,
    limits: HqlLimits,
    compile_ms: f64,
    memtable_rows: usize,
) -> Result<HqlOutput, QueryError> {
    let start = Instant::now();
    let run = async {
        let physical = ctx.state().create_physical_plan(&plan).await?;
        let files = files_scanned(&physical);
        let schema = physical.schema();
        let batches = collect(physical, ctx.task_ctx()).await?;
        Ok::<_, QueryError>((schema, batches, files))
    };
    let (schema, batches, files) = tokio::time::timeout(limits.timeout, run)
        .await
        .map_err(|_| QueryError::Timeout(limits.timeout))??;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > limits.max_rows {
        return Err(QueryError::TooManyRows(limits.max_rows));
    }
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
        schema.fields().clone(),
    ));
    Ok(HqlOutput {
        schema,
        batches,
        stats: HqlStats {
            rows,
            elapsed_ms: start.elapsed().as_secs_f64() * 1e3 + compile_ms,
            compile_ms,
            files_scanned: files,
            memtable_rows,
        },
    })
}
