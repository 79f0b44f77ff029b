//! Roll-ups: Delta tables beside `requests`, one per [`ROLLUPS`] entry, each holding per
//! (org_id, hour, its dimensions[, a log-scale latency/TTFT bucket]) the number of requests and
//! the sums of some columns:
//!
//! | table | grouped by (besides org, hour) | sums |
//! |---|---|---|
//! | `requests_hourly` | model, provider, status, cache_hit, stream | cost, cost saved, tokens |
//! | `requests_latency_hourly` | bucket of `latency_ms` | `latency_ms` |
//! | `requests_ttft_hourly` | bucket of `ttft_ms` | `ttft_ms` |
//! | `requests_users_hourly` | user_id, status | cost, total tokens |
//!
//! Each table holds two grains: hourly rows (`grain` = 1, `created_at` the start of the hour) and
//! daily rows (`grain` = 24, `created_at` the UTC midnight), so a long range reads one row per
//! group and day for its whole days and hourly rows only at its edges.
//!
//! Every flush appends to each roll-up the roll-up of exactly the rows it wrote, in a commit that
//! carries the same WAL sequence number (`txn`) as the flush's commit to `requests`; a roll-up is
//! used together with `requests` only while those numbers are equal. When they differ (a crash
//! between the commits, a failed roll-up write, a table from before that roll-up existed or with
//! another layout) the roll-up is rebuilt from `requests` in the background, and until then
//! queries read raw rows instead. The writes of one flush run concurrently (one commit each).
//!
//! Each flush appends its own partial groups, so with frequent small flushes a roll-up would hold
//! about one row per group per flush; compaction re-aggregates every day partition written more
//! than once into one file of whole groups (same sums, no `txn` change).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::functions::datetime::expr_fn::date_bin;
use datafusion::functions::math::expr_fn::log10;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, try_cast};
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use loupe_model::requests_schema;
use loupe_model::schema::{HIST_PER_DECADE, PARTITION_COLUMN};
use object_store::ObjectStore;
use url::Url;

use crate::{Inner, StorageError, lock_poisoned};

pub use loupe_model::schema::{ROLLUP_BUCKET, ROLLUP_GRAIN, ROLLUP_GRAINS, ROLLUPS, RollupSpec};

/// The row-count column.
pub const ROLLUP_COUNT: &str = "n";

/// The first roll-up's table name (`requests_hourly`).
pub const ROLLUP_TABLE: &str = "requests_hourly";

static SCHEMAS: LazyLock<Vec<SchemaRef>> =
    LazyLock::new(|| ROLLUPS.iter().map(schema_of).collect());

fn schema_of(spec: &RollupSpec) -> SchemaRef {
    let raw = requests_schema();
    // Every column is nullable in a roll-up (a sum over nulls is null).
    let like = |name: &str| -> Option<Field> {
        raw.field_with_name(name)
            .ok()
            .map(|f| Field::new(name, f.data_type().clone(), true))
    };
    let mut fields: Vec<Field> = ["org_id", "created_at"]
        .into_iter()
        .filter_map(like)
        .collect();
    fields.push(Field::new(ROLLUP_GRAIN, DataType::Int32, true));
    fields.extend(spec.dimensions.iter().copied().filter_map(like));
    if spec.bucket_of.is_some() {
        fields.push(Field::new(ROLLUP_BUCKET, DataType::Int64, true));
    }
    fields.push(Field::new(ROLLUP_COUNT, DataType::Int64, true));
    fields.extend(spec.sums.iter().copied().filter_map(like));
    fields.push(Field::new(PARTITION_COLUMN, DataType::Date32, true));
    Arc::new(Schema::new(fields))
}

/// The index of a roll-up in [`ROLLUPS`].
fn index_of(spec: &RollupSpec) -> usize {
    ROLLUPS
        .iter()
        .position(|r| r.table == spec.table)
        .unwrap_or_default()
}

/// The schema of a roll-up table (`created_at` is the start of the hour, UTC).
pub fn rollup_schema(spec: &RollupSpec) -> SchemaRef {
    SCHEMAS[index_of(spec)].clone()
}

/// The roll-up tables in step with a snapshot's `requests` table (see [`crate::Snapshot`]).
#[derive(Clone, Default)]
pub struct RollupTables(Vec<(&'static RollupSpec, DeltaTable)>);

impl RollupTables {
    pub fn iter(&self) -> impl Iterator<Item = (&'static RollupSpec, &DeltaTable)> {
        self.0.iter().map(|(s, t)| (*s, t))
    }

    /// The table of the roll-up named `table`, when it is in step.
    pub fn get(&self, table: &str) -> Option<&DeltaTable> {
        self.0
            .iter()
            .find(|(s, _)| s.table == table)
            .map(|(_, t)| t)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// One roll-up's table (`None` until first written) and the WAL sequence number it covers.
#[derive(Clone)]
struct Slot {
    table: Option<DeltaTable>,
    seq: i64,
}

/// Every roll-up's state, in [`ROLLUPS`] order.
#[derive(Clone)]
pub(crate) struct Rollups(Vec<Slot>);

impl Rollups {
    /// Loads every roll-up table beside `requests`. A table whose columns are not its spec's
    /// (written by an older Loupe) counts as covering nothing, so it is rebuilt.
    pub(crate) async fn load(
        requests_url: &Url,
        backend: Option<Arc<dyn ObjectStore>>,
        app_id: &str,
    ) -> Result<Rollups, StorageError> {
        let mut slots = Vec::with_capacity(ROLLUPS.len());
        for (i, spec) in ROLLUPS.iter().enumerate() {
            let table = crate::load_table(&table_url(requests_url, spec)?, backend.clone()).await?;
            let seq = match &table {
                Some(t) if same_columns(t, &SCHEMAS[i])? => crate::txn_seq(Some(t), app_id).await?,
                _ => -1,
            };
            slots.push(Slot { table, seq });
        }
        Ok(Rollups(slots))
    }

    /// No roll-ups (a table without them, e.g. `spans`).
    pub(crate) fn none() -> Rollups {
        Rollups(Vec::new())
    }

    /// The roll-ups covering exactly WAL sequence `seq` (none for a table never flushed).
    pub(crate) fn in_step(&self, seq: i64) -> RollupTables {
        RollupTables(
            self.0
                .iter()
                .zip(ROLLUPS)
                .filter(|(s, _)| seq >= 0 && s.seq == seq)
                .filter_map(|(s, spec)| s.table.clone().map(|t| (spec, t)))
                .collect(),
        )
    }

    /// Indexes of the roll-ups covering exactly `seq` (those a flush after it appends to).
    pub(crate) fn at(&self, seq: i64) -> Vec<usize> {
        (0..self.0.len())
            .filter(|&i| self.0[i].seq == seq)
            .collect()
    }
}

fn same_columns(t: &DeltaTable, want: &Schema) -> Result<bool, StorageError> {
    let have = t.snapshot()?.schema();
    Ok(have.fields().len() == want.fields().len()
        && want.fields().iter().all(|f| have.field(f.name()).is_some()))
}

/// The roll-up `spec`'s table beside `requests` (a sibling directory).
pub(crate) fn table_url(requests_url: &Url, spec: &RollupSpec) -> Result<Url, StorageError> {
    let url = requests_url
        .join(&format!("../{}/", spec.table))
        .map_err(|e| StorageError::Config(format!("roll-up table url: {e}")))?;
    if url.scheme() == "file"
        && let Ok(p) = url.to_file_path()
    {
        std::fs::create_dir_all(p)?;
    }
    Ok(url)
}

/// The log-scale bucket of `column`, computed exactly as HQL computes
/// `toint(log10(<column> + 1) * 200)` (`loupe_model::schema::log_bucket_hql`): integer `+ 1`, cast
/// to a double, `log10`, `× 200`, then a conversion to a whole number that truncates and gives
/// null for what does not convert. Tests compare the two on the same rows.
fn bucket_expr(column: &str) -> Expr {
    let plus_one = col(column) + lit(1_i64);
    let log = log10(datafusion::logical_expr::cast(plus_one, DataType::Float64));
    try_cast(log * lit(HIST_PER_DECADE), DataType::Int64)
}

/// The start of the `hours`-hour period (UTC, from the epoch) holding `created_at`.
fn period_of(created_at: Expr, hours: i32) -> Expr {
    let width = lit(ScalarValue::IntervalMonthDayNano(Some(
        arrow::datatypes::IntervalMonthDayNano::new(0, 0, i64::from(hours) * 3_600_000_000_000),
    )));
    let epoch = lit(ScalarValue::TimestampMicrosecond(
        Some(0),
        Some("UTC".into()),
    ));
    date_bin(width, created_at, epoch)
}

/// The roll-up `spec` of `requests` rows: its hourly rows, then its daily rows.
async fn rollup_of(df: DataFrame, spec: &RollupSpec) -> Result<Vec<RecordBatch>, StorageError> {
    let mut out = Vec::new();
    for hours in ROLLUP_GRAINS {
        let mut group = vec![
            col("org_id"),
            period_of(col("created_at"), hours).alias("created_at"),
            lit(hours).alias(ROLLUP_GRAIN),
        ];
        group.extend(spec.dimensions.iter().map(|d| col(*d)));
        if let Some(c) = spec.bucket_of {
            group.push(bucket_expr(c).alias(ROLLUP_BUCKET));
        }
        let mut aggs = vec![count(lit(1)).alias(ROLLUP_COUNT)];
        aggs.extend(spec.sums.iter().map(|s| sum(col(*s)).alias(*s)));
        let batches = df.clone().aggregate(group, aggs)?.collect().await?;
        for b in &batches {
            out.push(conform(b, spec)?);
        }
    }
    Ok(out)
}

/// Roll-up rows merged into whole groups (for compaction).
async fn merge_of(df: DataFrame, spec: &RollupSpec) -> Result<Vec<RecordBatch>, StorageError> {
    let mut group = vec![col("org_id"), col("created_at"), col(ROLLUP_GRAIN)];
    group.extend(spec.dimensions.iter().map(|d| col(*d)));
    if spec.bucket_of.is_some() {
        group.push(col(ROLLUP_BUCKET));
    }
    let mut aggs = vec![sum(col(ROLLUP_COUNT)).alias(ROLLUP_COUNT)];
    aggs.extend(spec.sums.iter().map(|s| sum(col(*s)).alias(*s)));
    let batches = df.aggregate(group, aggs)?.collect().await?;
    batches.iter().map(|b| conform(b, spec)).collect()
}

/// The roll-ups `which` (indexes in [`ROLLUPS`]) of `requests` rows, in that order.
pub(crate) async fn aggregate(
    batches: Vec<RecordBatch>,
    which: &[usize],
) -> Result<Vec<Vec<RecordBatch>>, StorageError> {
    let ctx = SessionContext::new();
    let df = ctx.read_batches(batches)?;
    let mut out = Vec::with_capacity(which.len());
    for &i in which {
        out.push(rollup_of(df.clone(), &ROLLUPS[i]).await?);
    }
    Ok(out)
}

/// The days (partition values) of a table and how many files each has.
fn files_per_day(table: &DeltaTable) -> Result<BTreeMap<i32, usize>, StorageError> {
    let mut days = BTreeMap::new();
    for f in table.snapshot()?.log_data().iter() {
        let Some(Some(v)) = f.partition_values_map().remove(PARTITION_COLUMN) else {
            continue;
        };
        let day = chrono::NaiveDate::parse_from_str(&v, "%Y-%m-%d")
            .map_err(|e| StorageError::Wal(format!("partition day={v}: {e}")))?;
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
        *days.entry((day - epoch).num_days() as i32).or_insert(0) += 1;
    }
    Ok(days)
}

fn on_days(days: &[i32]) -> Expr {
    col(PARTITION_COLUMN).in_list(
        days.iter()
            .map(|d| lit(ScalarValue::Date32(Some(*d))))
            .collect(),
        false,
    )
}

async fn read(table: &DeltaTable) -> Result<(SessionContext, DataFrame), StorageError> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let df = ctx.read_table(table.table_provider().await?)?;
    Ok((ctx, df))
}

/// The roll-up `spec` of a whole `requests` table (for a rebuild), one day partition at a time
/// (so the groups held in memory are one day's).
async fn aggregate_table(
    table: &DeltaTable,
    spec: &RollupSpec,
) -> Result<Vec<RecordBatch>, StorageError> {
    let (_ctx, df) = read(table).await?;
    let mut out = Vec::new();
    for day in files_per_day(table)?.into_keys() {
        out.extend(rollup_of(df.clone().filter(on_days(&[day]))?, spec).await?);
    }
    Ok(out)
}

/// Casts an aggregate batch to exactly the roll-up's schema, adding `day`.
fn conform(b: &RecordBatch, spec: &RollupSpec) -> Result<RecordBatch, StorageError> {
    let schema = rollup_schema(spec);
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let src = if f.name() == PARTITION_COLUMN {
            let hour = b
                .column_by_name("created_at")
                .ok_or_else(|| StorageError::Wal("roll-up lacks created_at".into()))?;
            cast(hour, &DataType::Date32)?
        } else {
            b.column_by_name(f.name())
                .ok_or_else(|| StorageError::Wal(format!("roll-up lacks {}", f.name())))?
                .clone()
        };
        cols.push(if src.data_type() == f.data_type() {
            src
        } else {
            cast(&src, f.data_type())?
        });
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// Snappy, not zstd as for `requests`: roll-ups are small (15 MB for 10 M requests) and read by
/// every dashboard query, and opening a zstd column chunk allocates a compression and a
/// decompression context (Parquet's codec), 12 % of the CPU of a roll-up query over 31 day files.
fn writer_properties() -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::Compression;
    deltalake::parquet::file::properties::WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build()
}

/// How a roll-up write commits.
enum Commit<'a> {
    /// A flush's rows, tagged with its WAL sequence number.
    Append(i64),
    /// The whole table, replaced (any older layout too), tagged with the sequence it covers.
    Rebuild(i64),
    /// These days' rows replaced by the same groups merged (no new sequence number).
    Merge(&'a [i32]),
}

async fn write(
    table: DeltaTable,
    spec: &RollupSpec,
    rows: Vec<RecordBatch>,
    app_id: &str,
    commit: Commit<'_>,
) -> Result<DeltaTable, StorageError> {
    let rows = if rows.is_empty() {
        vec![RecordBatch::new_empty(rollup_schema(spec))]
    } else {
        rows
    };
    let w = table
        .write(rows)
        .with_partition_columns([PARTITION_COLUMN])
        .with_writer_properties(writer_properties());
    let txn = |seq: i64| {
        CommitProperties::default().with_application_transaction(Transaction::new(app_id, seq))
    };
    let w = match commit {
        Commit::Append(seq) => w
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(txn(seq)),
        Commit::Rebuild(seq) => w
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_commit_properties(txn(seq)),
        Commit::Merge(days) => w
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(on_days(days)),
    };
    Ok(w.await?)
}

/// Roll-up `i`'s table as last installed (`None` before its first write).
fn installed(inner: &Inner, i: usize) -> Result<Option<DeltaTable>, StorageError> {
    Ok(inner
        .state
        .read()
        .map_err(|_| lock_poisoned())?
        .rollups
        .0
        .get(i)
        .and_then(|s| s.table.clone()))
}

fn table_or_new(inner: &Inner, i: usize) -> Result<DeltaTable, StorageError> {
    let current = installed(inner, i)?;
    match current {
        Some(t) => Ok(t),
        None => Ok(crate::table_builder(
            &table_url(&inner.table_url, &ROLLUPS[i])?,
            inner.backend.clone(),
        )?
        .build()?),
    }
}

fn install(
    inner: &Inner,
    i: usize,
    table: DeltaTable,
    seq: Option<i64>,
) -> Result<(), StorageError> {
    let mut st = inner.state.write().map_err(|_| lock_poisoned())?;
    if let Some(slot) = st.rollups.0.get_mut(i) {
        slot.table = Some(table);
        if let Some(seq) = seq {
            slot.seq = seq;
        }
    }
    Ok(())
}

/// Appends the roll-ups `which` of a flush's `rows` (WAL sequence `seq`), all at once. A roll-up
/// whose write fails is left behind; the background loop rebuilds it.
pub(crate) async fn append(inner: &Inner, rows: RecordBatch, seq: i64, which: Vec<usize>) {
    if which.is_empty() {
        return;
    }
    let aggregates = match aggregate(vec![rows], &which).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "roll-up aggregation failed; the roll-ups will be rebuilt");
            return;
        }
    };
    let writes = which.iter().zip(aggregates).map(|(&i, rows)| async move {
        let table = table_or_new(inner, i)?;
        let table = write(table, &ROLLUPS[i], rows, &inner.app_id, Commit::Append(seq)).await?;
        install(inner, i, table, Some(seq))
    });
    let results = futures::future::join_all(writes).await;
    for (i, r) in which.iter().zip(results) {
        if let Err(e) = r {
            tracing::warn!(table = ROLLUPS[*i].table, error = %e, "roll-up write failed; it will be rebuilt");
        }
    }
}

/// Rebuilds from the whole `requests` table every roll-up not in step with it. Holds the table
/// writer lock during each rebuild, so no flush moves the table on under it.
pub(crate) async fn rebuild(inner: &Inner) -> Result<(), StorageError> {
    let mut first_error = None;
    for (i, spec) in ROLLUPS.iter().enumerate() {
        let _writer = inner.table_writer.lock().await;
        let (table, seq) = {
            let st = inner.state.read().map_err(|_| lock_poisoned())?;
            let behind = st.rollups.0.get(i).is_some_and(|s| s.seq != st.table_seq);
            if st.table_seq < 0 || !behind {
                continue;
            }
            (st.table.clone(), st.table_seq)
        };
        let Some(table) = table else {
            continue;
        };
        let started = Instant::now();
        let result = async {
            let rows = aggregate_table(&table, spec).await?;
            let n: usize = rows.iter().map(|b| b.num_rows()).sum();
            let t = write(
                table_or_new(inner, i)?,
                spec,
                rows,
                &inner.app_id,
                Commit::Rebuild(seq),
            )
            .await?;
            install(inner, i, t, Some(seq))?;
            Ok::<_, StorageError>(n)
        }
        .await;
        match result {
            Ok(n) => tracing::info!(
                table = spec.table,
                rows = n,
                seq,
                ms = started.elapsed().as_millis() as u64,
                "roll-up rebuilt"
            ),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Merges the rows of every day partition written more than once into whole groups, then
/// removes files no recent snapshot needs (VACUUM). The caller holds the table writer lock.
pub(crate) async fn compact(inner: &Inner) -> Result<(), StorageError> {
    for (i, spec) in ROLLUPS.iter().enumerate() {
        let table = installed(inner, i)?;
        let Some(mut table) = table.filter(|t| t.version().is_some()) else {
            continue;
        };
        let days: Vec<i32> = files_per_day(&table)?
            .into_iter()
            .filter(|(_, files)| *files > 1)
            .map(|(d, _)| d)
            .collect();
        if !days.is_empty() {
            let (_ctx, df) = read(&table).await?;
            let rows = merge_of(df.filter(on_days(&days))?, spec).await?;
            table = write(table, spec, rows, &inner.app_id, Commit::Merge(&days)).await?;
        }
        let (table, _) = table
            .vacuum()
            .with_retention_period(chrono::Duration::hours(
                crate::flush::VACUUM_RETENTION_HOURS,
            ))
            .with_enforce_retention_duration(false)
            .await?;
        install(inner, i, table, None)?;
    }
    Ok(())
}

/// Deletes the days before `cutoff` (days since the epoch) from every roll-up.
pub(crate) async fn expire(inner: &Inner, cutoff: i32) -> Result<(), StorageError> {
    for i in 0..ROLLUPS.len() {
        let table = installed(inner, i)?;
        if let Some(t) = table.filter(|t| t.version().is_some()) {
            let (t, _) = t
                .delete()
                .with_predicate(col(PARTITION_COLUMN).lt(lit(ScalarValue::Date32(Some(cutoff)))))
                .await?;
            install(inner, i, t, None)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rollup_column_is_a_requests_column() {
        let raw = requests_schema();
        for (spec, schema) in ROLLUPS.iter().zip(SCHEMAS.iter()) {
            for c in spec
                .dimensions
                .iter()
                .chain(spec.sums)
                .chain(spec.bucket_of.iter())
            {
                assert!(raw.field_with_name(c).is_ok(), "{}: {c}", spec.table);
            }
            let extra = 5 + usize::from(spec.bucket_of.is_some());
            assert_eq!(
                schema.fields().len(),
                spec.dimensions.len() + spec.sums.len() + extra,
                "{}",
                spec.table
            );
        }
        assert_eq!(ROLLUPS[0].table, ROLLUP_TABLE);
    }
}
