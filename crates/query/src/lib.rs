//! Query execution over Loupe's tables: registers the `requests` table (the Delta table's files
//! plus every acknowledged record still in the memtable, so a record is queryable as soon as it
//! is acknowledged), scopes every scan to one org, and runs DataFusion plans under limits.
//!
//! DataFusion is allowed here (and in hql-plan and storage). This crate must not depend on HTTP
//! (axum), ingest, gateway or server.

pub mod error;
mod requests_table;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext, col, lit};
use loupe_storage::Storage;

pub use error::QueryError;
pub use requests_table::RequestsTable;

/// Limits applied to every query.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Memory DataFusion may use per query before spilling / failing.
    pub memory_bytes: usize,
    /// Threads per query.
    pub target_partitions: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            memory_bytes: 1 << 30,
            target_partitions: 2,
        }
    }
}

/// Builds per-query DataFusion sessions over the current storage snapshot.
#[derive(Clone)]
pub struct QueryEngine {
    storage: Storage,
    limits: QueryLimits,
}

impl QueryEngine {
    pub fn new(storage: Storage, limits: QueryLimits) -> Self {
        QueryEngine { storage, limits }
    }

    /// A fresh session with the `requests` table registered from a consistent snapshot.
    pub async fn session(&self) -> Result<SessionContext, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.limits.memory_bytes)))
            .build_arc()?;
        let config =
            SessionConfig::new().with_target_partitions(self.limits.target_partitions.max(1));
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let snapshot = self.storage.snapshot();
        if let Some(t) = &snapshot.table {
            t.update_datafusion_session(&ctx.state())
                .map_err(|e| QueryError::Storage(e.to_string()))?;
        }
        let table = RequestsTable::try_new(snapshot).await?;
        ctx.register_table("requests", Arc::new(table))?;
        Ok(ctx)
    }

    /// The `requests` rows of one org: the org filter sits directly on the scan, below anything
    /// a caller adds.
    pub async fn requests(
        &self,
        ctx: &SessionContext,
        org_id: &str,
    ) -> Result<DataFrame, QueryError> {
        Ok(ctx
            .table("requests")
            .await?
            .filter(col("org_id").eq(lit(org_id)))?)
    }

    /// Runs a DataFrame to completion.
    pub async fn collect(&self, df: DataFrame) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(df.collect().await?)
    }
}
