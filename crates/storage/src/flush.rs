//! Background work: flushing the memtable into the Delta table, compaction, retention.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::protocol::SaveMode;
use loupe_model::schema::PARTITION_COLUMN;
use object_store::ObjectStore;
use url::Url;

use crate::config::S3Config;
use crate::{Inner, StorageError, lock_poisoned, rollup, table_builder};

/// How long files replaced by compaction are kept for readers of older snapshots.
pub(crate) const VACUUM_RETENTION_HOURS: i64 = 1;

pub(crate) fn writer_properties() -> WriterProperties {
    let zstd = ZstdLevel::try_new(3)
        .map(Compression::ZSTD)
        .unwrap_or(Compression::SNAPPY);
    WriterProperties::builder()
        .set_compression(zstd)
        .set_max_row_group_row_count(Some(64 * 1024))
        .build()
}

/// A session with one partition, so the writer keeps our (org_id, created_at) row order instead
/// of hash-repartitioning rows across concurrent writers.
fn ordered_session() -> Result<Arc<dyn datafusion::catalog::Session>, StorageError> {
    let overrides = std::collections::HashMap::from([(
        "datafusion.execution.target_partitions".to_string(),
        "1".to_string(),
    )]);
    let ctx =
        deltalake::delta_datafusion::DeltaSessionContext::new_with_session_overrides(&overrides)?;
    Ok(Arc::new(ctx.state()))
}

/// The background loop: flush on interval or when the memtable is full; compact; expire.
pub(crate) async fn run(inner: Arc<Inner>) {
    let interval = Duration::from_millis(inner.cfg.flush_interval_ms.max(10));
    let mut shutdown = inner.shutdown.subscribe();
    let mut backoff = Duration::ZERO;
    let mut last_compact = Instant::now();
    let mut last_retention: Option<Instant> = None;
    loop {
        if inner.spec.rollup
            && let Err(e) = rollup::rebuild(&inner).await
        {
            tracing::warn!(error = %e, "roll-up rebuild failed; queries read raw rows meanwhile");
        }
        let stopping = *shutdown.borrow();
        if !stopping {
            tokio::select! {
                _ = tokio::time::sleep(interval + backoff) => {}
                _ = inner.flush_now.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
        match flush_once(&inner).await {
            Ok(()) => backoff = Duration::ZERO,
            Err(e) => {
                inner.stats.flush_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "flush failed; records stay in the WAL and will be retried");
                if let Ok(mut le) = inner.last_flush_error.lock() {
                    *le = Some(e.to_string());
                }
                backoff = (backoff * 2).clamp(Duration::from_millis(500), Duration::from_secs(30));
            }
        }
        if stopping {
            // That was the final flush (a shutdown seen during an earlier flush loops once more).
            return;
        }
        inner.prune_dedup();
        let compact_every = inner.cfg.compact_interval_secs;
        if compact_every > 0 && last_compact.elapsed() >= Duration::from_secs(compact_every) {
            last_compact = Instant::now();
            if let Err(e) = compact(&inner).await {
                tracing::warn!(error = %e, "compaction failed; will retry");
            }
        }
        if inner.cfg.retention_days.is_some()
            && last_retention.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600))
        {
            last_retention = Some(Instant::now());
            if let Err(e) = expire(&inner).await {
                tracing::warn!(error = %e, "retention failed; will retry");
            }
        }
    }
}

fn sort_for_pruning(batch: &RecordBatch) -> Result<RecordBatch, StorageError> {
    let key = |name: &str| -> Result<SortColumn, StorageError> {
        let values = batch
            .column_by_name(name)
            .ok_or_else(|| StorageError::Wal(format!("batch lacks column {name}")))?
            .clone();
        Ok(SortColumn {
            values,
            options: Some(SortOptions::default()),
        })
    };
    let idx = lexsort_to_indices(&[key("org_id")?, key("created_at")?], None)?;
    Ok(take_record_batch(batch, &idx)?)
}

/// Moves every pending batch up to the current WAL position into the table in one commit.
pub(crate) async fn flush_once(inner: &Inner) -> Result<(), StorageError> {
    let _writer = inner.table_writer.lock().await;
    let upto = inner.wal.rotate().await?;
    let (table, batches) = {
        let st = inner.state.read().map_err(|_| lock_poisoned())?;
        let batches: Vec<RecordBatch> = st
            .pending
            .range(..=upto)
            .flat_map(|(_, b)| b.iter().cloned())
            .collect();
        (st.table.clone(), batches)
    };
    if batches.is_empty() {
        if let Ok(mut le) = inner.last_flush_error.lock() {
            *le = None;
        }
        return Ok(());
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut table = match table {
        Some(t) => t,
        None => table_builder(&inner.table_url, inner.backend.clone())?.build()?,
    };
    // A failed previous attempt may have committed even though it reported an error: then ask
    // the log (reading the table state costs a log replay, so only after a failure).
    let retrying = inner.flush_failed.swap(true, Ordering::SeqCst);
    let already = if retrying && table.version().is_some() {
        table.update_state().await?;
        crate::txn_seq(Some(&table), &inner.app_id).await?
    } else {
        -1
    };
    let mut written = None;
    let table = if already >= upto as i64 {
        table
    } else {
        let merged = concat_batches(&(inner.spec.schema)(), &batches)?;
        let sorted = sort_for_pruning(&merged)?;
        written = Some(merged);
        table
            .write(vec![sorted])
            .with_save_mode(SaveMode::Append)
            // A table created by an older Loupe gains the columns added since (nullable).
            .with_schema_mode(SchemaMode::Merge)
            .with_partition_columns([PARTITION_COLUMN])
            .with_writer_properties(writer_properties())
            .with_session_state(ordered_session()?)
            .with_commit_properties(
                CommitProperties::default()
                    .with_application_transaction(Transaction::new(&inner.app_id, upto as i64)),
            )
            .await?
    };
    let rollups_in_step = {
        let mut st = inner.state.write().map_err(|_| lock_poisoned())?;
        let in_step = if inner.spec.rollup {
            st.rollups.at(st.table_seq)
        } else {
            Vec::new()
        };
        st.table = Some(table);
        st.table_seq = upto as i64;
        let keep = st.pending.split_off(&(upto + 1));
        let removed: usize = st.pending.values().flatten().map(|b| b.num_rows()).sum();
        st.pending = keep;
        st.pending_rows = st.pending_rows.saturating_sub(removed);
        in_step
    };
    inner.flush_failed.store(false, Ordering::SeqCst);
    inner.wal.truncate_through(upto)?;
    // The roll-ups of exactly these rows, tagged with the same sequence number. A roll-up that
    // was not in step (or whose write fails) is rebuilt from the table by the background loop.
    if let Some(rows) = written {
        rollup::append(inner, rows, upto as i64, rollups_in_step).await;
    }
    inner.stats.flushes.fetch_add(1, Ordering::Relaxed);
    inner
        .stats
        .flushed_records
        .fetch_add(rows as u64, Ordering::Relaxed);
    if let Ok(mut le) = inner.last_flush_error.lock() {
        *le = None;
    }
    tracing::debug!(rows, upto, "flushed");
    Ok(())
}

/// Bin-packs small files (OPTIMIZE) and removes files no recent snapshot references (VACUUM).
pub(crate) async fn compact(inner: &Inner) -> Result<(), StorageError> {
    let _writer = inner.table_writer.lock().await;
    let Some(table) = inner
        .state
        .read()
        .map_err(|_| lock_poisoned())?
        .table
        .clone()
    else {
        return Ok(());
    };
    let target =
        NonZeroU64::new(inner.cfg.compact_target_bytes.max(1 << 20)).unwrap_or(NonZeroU64::MIN);
    let (table, metrics) = optimize_and_vacuum(table, target).await?;
    install(inner, table)?;
    rollup::compact(inner).await?;
    inner.stats.compactions.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        added = metrics.num_files_added,
        removed = metrics.num_files_removed,
        "compacted"
    );
    Ok(())
}

/// OPTIMIZE (bin-pack to `target` bytes) then VACUUM files no recent snapshot references.
async fn optimize_and_vacuum(
    table: DeltaTable,
    target: NonZeroU64,
) -> Result<(DeltaTable, deltalake::operations::optimize::Metrics), StorageError> {
    let (table, metrics) = table
        .optimize()
        .with_target_size(target)
        .with_writer_properties(writer_properties())
        .await?;
    let (table, _) = table
        .vacuum()
        .with_retention_period(chrono::Duration::hours(VACUUM_RETENTION_HOURS))
        .with_enforce_retention_duration(false)
        .await?;
    Ok((table, metrics))
}

/// Deletes whole days older than `retention_days`.
pub(crate) async fn expire(inner: &Inner) -> Result<(), StorageError> {
    let _writer = inner.table_writer.lock().await;
    let (Some(days), Some(table)) = (
        inner.cfg.retention_days,
        inner
            .state
            .read()
            .map_err(|_| lock_poisoned())?
            .table
            .clone(),
    ) else {
        return Ok(());
    };
    let cutoff = loupe_model::schema::day_of(chrono::Utc::now()) - days as i32;
    // The roll-ups first: between the commits they may lack days the table still has (days
    // past retention), never hold rows the table no longer has.
    rollup::expire(inner, cutoff).await?;
    let (table, m) = table
        .delete()
        .with_predicate(col(PARTITION_COLUMN).lt(lit(ScalarValue::Date32(Some(cutoff)))))
        .await?;
    install(inner, table)?;
    tracing::info!(
        files_removed = m.num_removed_files,
        "retention: expired old days"
    );
    Ok(())
}

/// Installs a newer table version, unless a concurrent flush already installed a newer one.
fn install(inner: &Inner, table: DeltaTable) -> Result<(), StorageError> {
    let mut st = inner.state.write().map_err(|_| lock_poisoned())?;
    let newer = match (&st.table, table.version()) {
        (Some(cur), Some(v)) => cur.version().is_none_or(|c| v >= c),
        _ => true,
    };
    if newer {
        st.table = Some(table);
    }
    Ok(())
}

/// `request_id`, `created_at` of table rows created at or after `cutoff_micros`.
pub(crate) async fn recent_ids(
    table: &DeltaTable,
    cutoff_micros: i64,
    id_column: &str,
) -> Result<Vec<RecordBatch>, StorageError> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    let has_source = provider.schema().column_with_name("source").is_some();
    let cutoff = ScalarValue::TimestampMicrosecond(Some(cutoff_micros), Some("UTC".into()));
    let mut keep = col("created_at").gt_eq(lit(cutoff));
    let mut columns = vec![id_column, "created_at", "org_id"];
    if has_source {
        // Gateway records never enter the index (see `Storage::append_unique`).
        keep = keep.and(col("source").not_eq(lit(loupe_model::Source::Gateway.as_str())));
        columns.push("source");
    }
    let df = ctx
        .read_table(provider)?
        .filter(keep)?
        .select_columns(&columns)?;
    Ok(df.collect().await?)
}

/// Dedup keys of `candidates` that the table already holds (partition-pruned by their days).
///
/// The ids are matched here, not in the scan's filter: an `IN` list of thousands of ids becomes
/// an expression thousands of levels deep in the pruning code (a stack overflow on a large
/// backfill), and random UUIDs prune nothing anyway. The scan reads only `request_id` and
/// `org_id` of the candidates' days, streamed.
pub(crate) async fn stored_keys(
    table: &DeltaTable,
    candidates: &[(i32, u128)],
    id_column: &str,
) -> Result<std::collections::HashSet<u128>, StorageError> {
    use arrow::array::{Array, AsArray};
    use futures::StreamExt;
    let mut days: Vec<i32> = candidates.iter().map(|(day, _)| *day).collect();
    days.sort_unstable();
    days.dedup();
    let wanted: std::collections::HashSet<u128> = candidates.iter().map(|(_, k)| *k).collect();
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    let mut stream = ctx
        .read_table(provider)?
        .filter(
            col(PARTITION_COLUMN).in_list(
                days.into_iter()
                    .map(|d| lit(ScalarValue::Date32(Some(d))))
                    .collect(),
                false,
            ),
        )?
        .select_columns(&[id_column, "org_id"])?
        .execute_stream()
        .await?;
    let mut out = std::collections::HashSet::new();
    while let Some(b) = stream.next().await {
        let b = b?;
        let ids = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        let orgs = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8)?;
        let (ids, orgs) = (ids.as_string::<i32>(), orgs.as_string::<i32>());
        for i in 0..b.num_rows() {
            if ids.is_null(i) || orgs.is_null(i) {
                continue;
            }
            if let Ok(id) = uuid::Uuid::parse_str(ids.value(i)) {
                let key = crate::dedup_key(orgs.value(i), id);
                if wanted.contains(&key) {
                    out.insert(key);
                }
            }
        }
    }
    Ok(out)
}

/// Delta log store for `s3://` tables: the default log store (commits are conditional puts, so no
/// external lock is needed on stores that support `If-None-Match`), over our own S3 client.
struct S3LogStoreFactory;

impl deltalake::logstore::LogStoreFactory for S3LogStoreFactory {
    fn with_options(
        &self,
        prefixed_store: deltalake::logstore::ObjectStoreRef,
        root_store: deltalake::logstore::ObjectStoreRef,
        location: &Url,
        options: &deltalake::logstore::StorageConfig,
    ) -> deltalake::DeltaResult<Arc<dyn deltalake::logstore::LogStore>> {
        Ok(deltalake::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// An S3-compatible object store for `url` (`s3://bucket/prefix/...`).
pub(crate) fn s3_store(url: &Url, cfg: S3Config) -> Result<Arc<dyn ObjectStore>, StorageError> {
    use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
    let registry = deltalake::logstore::logstore_factories();
    for scheme in ["s3://", "s3a://"] {
        if let Ok(u) = Url::parse(scheme)
            && !registry.contains_key(&u)
        {
            registry.insert(u, Arc::new(S3LogStoreFactory));
        }
    }
    let bucket = url
        .host_str()
        .ok_or_else(|| StorageError::Config(format!("storage.table_url '{url}' has no bucket")))?;
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_allow_http(cfg.allow_http);
    if let Some(e) = cfg.endpoint {
        b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
    }
    if let Some(r) = cfg.region {
        b = b.with_region(r);
    }
    if let Some(k) = cfg.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(s) = cfg.secret_access_key {
        b = b.with_secret_access_key(s);
    }
    Ok(Arc::new(b.build()?))
}
