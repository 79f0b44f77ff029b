//! HQL planning: owns the journey from the typed syntax tree of `loupe-hql-syntax` to a DataFusion
//! [`LogicalPlan`], built with the plan builder and expression API (never through SQL text).
//! Names are resolved and types checked here, so unknown columns, unknown functions, type
//! mismatches and misplaced aggregates are reported before anything runs, each with the span of
//! the offending text. Every table scan is immediately filtered on `org_id` (the caller's
//! organisation), below anything the query says. This crate must not depend on storage, HTTP or
//! the server: tables come in through the small [`Catalog`] trait, and executing the plan is the
//! query crate's business.

mod error;
mod expr;
mod functions;
mod plan;
mod rollup;
mod types;

use std::sync::Arc;

use datafusion::logical_expr::{LogicalPlan, TableSource};
use loupe_hql_syntax::Query;

pub use error::{HqlError, PlanError, codes};
pub use functions::{AGGREGATES, SCALARS};
pub use rollup::{RollupSources, RollupTable, reads_rollup};

/// The tables a query can read, by name.
pub trait Catalog {
    fn table(&self, name: &str) -> Option<Arc<dyn TableSource>>;
    fn table_names(&self) -> Vec<String>;
    /// Hourly roll-ups of `table` that dashboard-shaped queries may read instead of raw rows
    /// (same answers; see the `rollup` module). `None`: always read raw rows.
    fn rollup(&self, _table: &str) -> Option<RollupSources> {
        None
    }
}

/// A [`Catalog`] over a fixed list of named tables.
#[derive(Default)]
pub struct TableList {
    pub tables: Vec<(String, Arc<dyn TableSource>)>,
    pub rollups: Vec<(String, RollupSources)>,
}

impl Catalog for TableList {
    fn table(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        self.tables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
    }
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|(n, _)| n.clone()).collect()
    }
    fn rollup(&self, table: &str) -> Option<RollupSources> {
        self.rollups
            .iter()
            .find(|(n, _)| n == table)
            .map(|(_, r)| r.clone())
    }
}

/// What a plan depends on besides the query.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Every scan is filtered to this organisation.
    pub org_id: String,
    /// "Now" for `now()` and `ago()`, in microseconds since the Unix epoch (fixed at plan time,
    /// so a plan is deterministic and its time filters can prune partitions).
    pub now_micros: i64,
}

/// Plans a parsed query. The output columns carry exactly the query's names.
pub fn plan_query(
    query: &Query,
    catalog: &dyn Catalog,
    opts: &PlanOptions,
) -> Result<LogicalPlan, PlanError> {
    plan::plan_query(query, catalog, opts)
}

/// Parses and plans `src`; parse and plan errors come back alike.
pub fn compile(
    src: &str,
    catalog: &dyn Catalog,
    opts: &PlanOptions,
) -> Result<LogicalPlan, HqlError> {
    let query = loupe_hql_syntax::parse(src).map_err(HqlError::from)?;
    plan_query(&query, catalog, opts).map_err(|e| e.into_hql(src))
}
