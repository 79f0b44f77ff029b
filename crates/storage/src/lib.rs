//! Durable storage of request records: a write-ahead log with group commit on local disk, an
//! in-memory table of records not yet flushed (visible to queries at once), and a Delta Lake table
//! (`deltalake`) of zstd Parquet files on object storage (local disk by default, S3-compatible by
//! config), with Hive-style `day=` partitions, compaction (OPTIMIZE + VACUUM) and retention.
//!
//! Exactly-once: every flush commits the highest WAL sequence number it contains as a Delta
//! application transaction (`txn` action) in the same atomic commit, so recovery replays only the
//! WAL frames the table does not hold yet. This crate knows nothing of HTTP or HQL; it must not
//! depend on ingest, query, gateway or server.

pub mod config;
pub mod error;
mod flush;
pub mod journal;
pub mod rollup;
pub mod wal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use chrono::Utc;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::future::BoxFuture;
use loupe_model::{AppendAck, EventSink, RequestRecord, SinkError, SpanRecord, TableRow};
use object_store::ObjectStore;
use tokio::sync::Notify;
use url::Url;

pub use config::{S3Config, StorageConfig, WalConfig};
pub use error::StorageError;
pub use wal::SyncMode;

/// What distinguishes one stored table from another: its name (the directory under `tables/`
/// or the table URL), its schema, its WAL directory, the column holding each row's id (the
/// dedup key with `org_id`) and whether it has the hourly roll-up.
#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    pub schema: fn() -> arrow::datatypes::SchemaRef,
    pub wal_dir: &'static str,
    pub id_column: &'static str,
    pub rollup: bool,
}

impl TableSpec {
    /// `requests`: one row per LLM call, with the hourly roll-up.
    pub const REQUESTS: TableSpec = TableSpec {
        name: "requests",
        schema: loupe_model::requests_schema,
        wal_dir: "wal",
        id_column: "request_id",
        rollup: true,
    };
    /// `spans`: every OpenTelemetry span (see [`loupe_model::SpanRecord`]).
    pub const SPANS: TableSpec = TableSpec {
        name: "spans",
        schema: loupe_model::spans_schema,
        wal_dir: "wal-spans",
        id_column: "span_uid",
        rollup: false,
    };
}

/// What queries see: the table as of its last commit plus every acknowledged record not yet in it.
#[derive(Clone)]
pub struct Snapshot {
    /// `None` until the first flush creates the table.
    pub table: Option<DeltaTable>,
    /// The roll-ups (see [`rollup`]) of exactly the rows of `table`: those not in step are left out.
    pub rollups: rollup::RollupTables,
    /// Record batches (schema [`loupe_model::requests_schema`]) not yet in `table`.
    pub pending: Vec<RecordBatch>,
}

/// Counters for `/metrics` and tests.
#[derive(Debug, Default)]
pub struct StorageStats {
    pub appended_records: AtomicU64,
    pub duplicate_records: AtomicU64,
    pub flushes: AtomicU64,
    pub flushed_records: AtomicU64,
    pub flush_errors: AtomicU64,
    pub compactions: AtomicU64,
}

pub(crate) struct Visible {
    table: Option<DeltaTable>,
    /// The WAL sequence number the table holds everything up to (its `txn` version), -1 if none.
    table_seq: i64,
    /// The roll-ups (see [`rollup`]) and the sequence numbers they cover.
    rollups: rollup::Rollups,
    /// WAL sequence number → batches, for every durable record not yet in `table`.
    pending: BTreeMap<u64, Vec<RecordBatch>>,
    pending_rows: usize,
}

/// The dedup key: request ids are unique per org, so one org can never shadow another's records.
fn dedup_key(org: &str, id: uuid::Uuid) -> u128 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: stable across restarts.
    let mut h = std::hash::DefaultHasher::new();
    org.hash(&mut h);
    let o = u128::from(h.finish());
    id.as_u128() ^ (o << 64 | o)
}

/// Exact deduplication of request ids created within the configured window.
struct Dedup {
    seen: HashMap<u128, i64>,
    window_micros: i64,
}

impl Dedup {
    fn cutoff(&self) -> i64 {
        Utc::now().timestamp_micros() - self.window_micros
    }
    fn prune(&mut self) {
        let cutoff = self.cutoff();
        self.seen.retain(|_, created| *created >= cutoff);
    }
}

pub(crate) struct Inner {
    pub(crate) cfg: StorageConfig,
    pub(crate) spec: TableSpec,
    pub(crate) wal: wal::Wal,
    pub(crate) state: Arc<RwLock<Visible>>,
    dedup: Mutex<Dedup>,
    pub(crate) table_url: Url,
    pub(crate) backend: Option<Arc<dyn ObjectStore>>,
    pub(crate) app_id: String,
    pub(crate) flush_now: Notify,
    pub(crate) stats: StorageStats,
    pub(crate) last_flush_error: Mutex<Option<String>>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// Serialises table writers in this process (flush, compaction, retention): concurrent
    /// commits of one node would only conflict with each other.
    pub(crate) table_writer: tokio::sync::Mutex<()>,
    /// The last flush attempt failed (its commit may still have landed).
    pub(crate) flush_failed: std::sync::atomic::AtomicBool,
}

impl Inner {
    /// Forgets dedup entries that fell out of the window.
    pub(crate) fn prune_dedup(&self) {
        if let Ok(mut d) = self.dedup.lock() {
            d.prune();
        }
    }
}

/// The storage engine. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
    /// Resolves when the flusher thread has finished its last flush.
    flusher: Arc<Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
}

fn lock_poisoned() -> StorageError {
    StorageError::Wal("internal lock poisoned".into())
}

impl Storage {
    /// Opens (or creates) the `requests` storage under `cfg.data_dir`, replays the WAL and
    /// starts the background flusher.
    pub async fn open(cfg: StorageConfig) -> Result<Storage, StorageError> {
        Self::open_table(cfg, TableSpec::REQUESTS).await
    }

    /// Opens (or creates) the storage of one table under `cfg.data_dir` (its own WAL directory,
    /// table and flusher), replays its WAL and starts its background flusher.
    pub async fn open_table(cfg: StorageConfig, spec: TableSpec) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let data_dir = std::fs::canonicalize(&cfg.data_dir)?;
        let wal_dir = data_dir.join(spec.wal_dir);
        std::fs::create_dir_all(&wal_dir)?;
        let (table_url, backend) = resolve_table(&cfg, &data_dir, spec.name)?;
        let app_id = format!("loupe-wal-{}", cfg.node_id);

        let table = match load_table(&table_url, backend.clone()).await? {
            Some(t) => Some(add_missing_columns(t, &spec).await?),
            None => None,
        };
        let flushed: i64 = txn_seq(table.as_ref(), &app_id).await?;

        // Replay the WAL: every frame the table does not hold yet becomes pending again.
        let Replay {
            pending,
            pending_rows,
            max_seq,
            wal_bytes,
        } = replay(&wal_dir, flushed, true, &(spec.schema)())?;
        let replayed = pending.len();
        let next_seq = (max_seq + 1).max(0) as u64;

        let rollups = if spec.rollup {
            rollup::Rollups::load(&table_url, backend.clone(), &app_id).await?
        } else {
            rollup::Rollups::none()
        };
        let state = Arc::new(RwLock::new(Visible {
            table,
            table_seq: flushed,
            rollups,
            pending,
            pending_rows,
        }));
        let on_durable_state = state.clone();
        let on_durable: wal::OnDurable = Box::new(move |seq, batches| {
            if let Ok(mut st) = on_durable_state.write() {
                st.pending_rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
                st.pending.insert(seq, batches);
            }
        });
        let wal = wal::Wal::start(
            wal_dir,
            next_seq,
            wal_bytes,
            wal::WalOptions {
                sync: cfg.wal.sync,
                segment_bytes: cfg.wal.segment_bytes.max(1 << 16),
                buffered_sync_interval: Duration::from_millis(cfg.wal.buffered_sync_interval_ms),
            },
            on_durable,
        )?;
        if flushed >= 0 {
            wal.truncate_through(flushed as u64)?;
        }

        let dedup = Dedup {
            seen: HashMap::new(),
            window_micros: i64::from(cfg.dedup_window_hours) * 3_600_000_000,
        };
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            cfg,
            spec,
            wal,
            state,
            dedup: Mutex::new(dedup),
            table_url,
            backend,
            app_id,
            flush_now: Notify::new(),
            stats: StorageStats::default(),
            last_flush_error: Mutex::new(None),
            shutdown,
            table_writer: tokio::sync::Mutex::new(()),
            flush_failed: std::sync::atomic::AtomicBool::new(false),
        });
        let storage = Storage {
            inner,
            flusher: Arc::new(Mutex::new(None)),
        };
        storage.rebuild_dedup_index().await?;
        tracing::info!(
            table = %storage.inner.table_url,
            flushed_through = flushed,
            replayed_frames = replayed,
            "storage opened"
        );
        // The flusher gets its own OS thread (and runtime): encoding Parquet and sorting batches
        // is CPU work that would otherwise hold a request worker for tens of milliseconds; on
        // its own thread the OS scheduler preempts it instead. (Gateway bench, 1 pinned core:
        // added p99 33.9 ms with the flusher on the request runtime.)
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let inner = storage.inner.clone();
        std::thread::Builder::new()
            .name("loupe-flush".into())
            .stack_size(8 << 20)
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(flush::run(inner)),
                    Err(e) => tracing::error!(error = %e, "cannot start the flusher's runtime"),
                }
                let _ = done_tx.send(());
            })?;
        if let Ok(mut f) = storage.flusher.lock() {
            *f = Some(done_rx);
        }
        Ok(storage)
    }

    /// A snapshot of a data directory without opening it for writing: the table as it is plus
    /// the WAL frames it does not hold yet. Safe while a server owns the directory (nothing is
    /// written, a frame being appended is skipped); used by `loupe query --data-dir`.
    pub async fn read_only_snapshot(cfg: &StorageConfig) -> Result<Snapshot, StorageError> {
        Self::read_only_snapshot_of(cfg, TableSpec::REQUESTS).await
    }

    /// [`Storage::read_only_snapshot`] of any table; an empty snapshot when the table and its
    /// WAL do not exist yet.
    pub async fn read_only_snapshot_of(
        cfg: &StorageConfig,
        spec: TableSpec,
    ) -> Result<Snapshot, StorageError> {
        let data_dir = std::fs::canonicalize(&cfg.data_dir).map_err(|e| {
            StorageError::Io(std::io::Error::new(
                e.kind(),
                format!("no Loupe data directory at {}: {e}", cfg.data_dir.display()),
            ))
        })?;
        let (table_url, backend) = resolve_table(cfg, &data_dir, spec.name)?;
        let app_id = format!("loupe-wal-{}", cfg.node_id);
        let wal_dir = data_dir.join(spec.wal_dir);
        let schema = (spec.schema)();
        // A server may flush (commit, then drop WAL segments) while we read: read the table, then
        // the WAL, and start over if the table moved on meanwhile.
        let mut attempts = 0;
        let (table, pending) = loop {
            attempts += 1;
            let table = load_table(&table_url, backend.clone()).await?;
            let version = table.as_ref().and_then(|t| t.version());
            let flushed: i64 = txn_seq(table.as_ref(), &app_id).await?;
            let replayed = if wal_dir.is_dir() {
                replay(&wal_dir, flushed, false, &schema)
            } else {
                Ok(Replay {
                    pending: BTreeMap::new(),
                    pending_rows: 0,
                    max_seq: flushed,
                    wal_bytes: 0,
                })
            };
            let now = load_table(&table_url, backend.clone()).await?;
            let moved = now.as_ref().and_then(|t| t.version()) != version;
            match replayed {
                Ok(r) if !moved => {
                    break (table, r.pending.into_values().flatten().collect());
                }
                Ok(_) if attempts < 5 => continue,
                Err(StorageError::Io(e))
                    if e.kind() == std::io::ErrorKind::NotFound && attempts < 5 =>
                {
                    continue;
                }
                Ok(_) => {
                    return Err(StorageError::Wal(
                        "the table kept changing while it was read; try again".into(),
                    ));
                }
                Err(e) => return Err(e),
            }
        };
        // The roll-ups in step with the table that was read.
        let rollups = match &table {
            Some(t) if spec.rollup => rollup::Rollups::load(&table_url, backend.clone(), &app_id)
                .await?
                .in_step(txn_seq(Some(t), &app_id).await?),
            _ => rollup::RollupTables::default(),
        };
        Ok(Snapshot {
            table,
            rollups,
            pending,
        })
    }

    /// Loads the ids of recent records (pending and in the table) into the dedup index.
    async fn rebuild_dedup_index(&self) -> Result<(), StorageError> {
        let snap = self.snapshot();
        let cutoff = self
            .inner
            .dedup
            .lock()
            .map_err(|_| lock_poisoned())?
            .cutoff();
        // Pending records were ingested recently whatever their created_at: keep them all. Table
        // rows created within the window are loaded; older ones are checked on demand.
        let now = Utc::now().timestamp_micros();
        let mut sources: Vec<(RecordBatch, bool)> =
            snap.pending.iter().map(|b| (b.clone(), true)).collect();
        if let Some(table) = &snap.table {
            sources.extend(
                flush::recent_ids(table, cutoff, self.inner.spec.id_column)
                    .await?
                    .into_iter()
                    .map(|b| (b, false)),
            );
        }
        let mut dedup = self.inner.dedup.lock().map_err(|_| lock_poisoned())?;
        for (b, pending) in &sources {
            let (Some(ids), Some(created), Some(orgs)) = (
                b.column_by_name(self.inner.spec.id_column),
                b.column_by_name("created_at"),
                b.column_by_name("org_id"),
            ) else {
                continue;
            };
            // Gateway records were stored with `append_unique`: never in the index.
            let source = match b.column_by_name("source") {
                Some(s) => Some(arrow::compute::cast(s, &DataType::Utf8)?),
                None => None,
            };
            let source = source.as_ref().map(|s| s.as_string::<i32>());
            let ids = arrow::compute::cast(ids, &DataType::Utf8)?;
            let ids = ids.as_string::<i32>();
            let orgs = arrow::compute::cast(orgs, &DataType::Utf8)?;
            let orgs = orgs.as_string::<i32>();
            let created = created.as_primitive::<TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                if ids.is_null(i)
                    || orgs.is_null(i)
                    || source.is_some_and(|s| {
                        s.is_valid(i) && s.value(i) == loupe_model::Source::Gateway.as_str()
                    })
                {
                    continue;
                }
                if let Ok(id) = uuid::Uuid::parse_str(ids.value(i)) {
                    let c = created.value(i);
                    let stamp = if *pending { c.max(now) } else { c };
                    if stamp >= cutoff {
                        dedup.seen.insert(dedup_key(orgs.value(i), id), stamp);
                    }
                }
            }
        }
        Ok(())
    }

    /// Stores records durably; see [`EventSink::append`].
    pub async fn append(&self, records: Vec<RequestRecord>) -> Result<AppendAck, StorageError> {
        self.append_rows(records).await
    }

    /// Stores spans durably (a storage opened with [`TableSpec::SPANS`]); spans already stored
    /// (same trace and span id) are skipped and counted as duplicates.
    pub async fn append_spans(&self, spans: Vec<SpanRecord>) -> Result<AppendAck, StorageError> {
        self.append_rows(spans).await
    }

    /// Stores rows of this storage's table durably, skipping (and counting) rows whose id the
    /// org already stored.
    pub async fn append_rows<R: TableRow>(
        &self,
        records: Vec<R>,
    ) -> Result<AppendAck, StorageError> {
        self.check_table::<R>()?;
        let total = records.len();
        // Reserve ids first so two concurrent appends of the same id cannot both win. Every
        // reserved id stays in the index for the dedup window after it was ingested.
        let (mut fresh, reserved, old) = {
            let mut dedup = self.inner.dedup.lock().map_err(|_| lock_poisoned())?;
            let cutoff = dedup.cutoff();
            let now = Utc::now().timestamp_micros();
            let mut in_batch = HashSet::new();
            let mut fresh = Vec::with_capacity(total);
            let mut reserved = Vec::with_capacity(total);
            let mut old = Vec::new();
            for r in records {
                let id = dedup_key(r.org_id(), r.row_id());
                if !in_batch.insert(id) || dedup.seen.contains_key(&id) {
                    continue;
                }
                let created = r.created_at().timestamp_micros();
                dedup.seen.insert(id, created.max(now));
                reserved.push(id);
                if created < cutoff {
                    // Created before the window: the index may not know it, the table might.
                    old.push(fresh.len());
                }
                fresh.push(r);
            }
            (fresh, reserved, old)
        };
        if !old.is_empty()
            && let Err(e) = self.drop_stored(&mut fresh, &old).await
        {
            self.release(&reserved);
            return Err(e);
        }
        let duplicates = total - fresh.len();
        self.inner
            .stats
            .duplicate_records
            .fetch_add(duplicates as u64, Ordering::Relaxed);
        match self.write_new(&fresh).await {
            Ok(accepted) => Ok(AppendAck {
                accepted,
                duplicates,
            }),
            Err(e) => {
                self.release(&reserved);
                Err(e)
            }
        }
    }

    fn check_table<R: TableRow>(&self) -> Result<(), StorageError> {
        if R::TABLE == self.inner.spec.name {
            Ok(())
        } else {
            Err(StorageError::Config(format!(
                "{} rows cannot be stored in the {} table",
                R::TABLE,
                self.inner.spec.name
            )))
        }
    }

    /// Stores records that are new by construction (see [`EventSink::append_unique`]): no dedup
    /// check, no dedup index entry. The index is what would otherwise grow with traffic: about
    /// 40 bytes per record for the whole dedup window (48 h at 1k req/s: ~7 GB).
    pub async fn append_unique(
        &self,
        records: Vec<RequestRecord>,
    ) -> Result<AppendAck, StorageError> {
        self.check_table::<RequestRecord>()?;
        Ok(AppendAck {
            accepted: self.write_new(&records).await?,
            duplicates: 0,
        })
    }

    /// WAL write (durable on return), memtable, flush trigger. Returns the number written.
    async fn write_new<R: TableRow>(&self, records: &[R]) -> Result<usize, StorageError> {
        if records.is_empty() {
            return Ok(0);
        }
        self.write_wal(records).await?;
        self.inner
            .stats
            .appended_records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let rows = self.inner.state.read().map(|s| s.pending_rows).unwrap_or(0);
        if rows >= self.inner.cfg.flush_max_rows {
            self.inner.flush_now.notify_one();
        }
        Ok(records.len())
    }

    /// Un-reserves ids of an append that failed, so a retry is accepted.
    fn release(&self, reserved: &[u128]) {
        if let Ok(mut dedup) = self.inner.dedup.lock() {
            for id in reserved {
                dedup.seen.remove(id);
            }
        }
    }

    /// Removes from `records` (at the indexes in `old`) those the table already holds.
    async fn drop_stored<R: TableRow>(
        &self,
        records: &mut Vec<R>,
        old: &[usize],
    ) -> Result<(), StorageError> {
        let Some(table) = self.snapshot().table else {
            return Ok(());
        };
        let candidates: Vec<(i32, u128)> = old
            .iter()
            .map(|&i| {
                let r = &records[i];
                (
                    loupe_model::schema::day_of(r.created_at()),
                    dedup_key(r.org_id(), r.row_id()),
                )
            })
            .collect();
        let stored = flush::stored_keys(&table, &candidates, self.inner.spec.id_column).await?;
        if stored.is_empty() {
            return Ok(());
        }
        records.retain(|r| !stored.contains(&dedup_key(r.org_id(), r.row_id())));
        Ok(())
    }

    async fn write_wal<R: TableRow>(&self, records: &[R]) -> Result<(), StorageError> {
        let batch = R::to_batch(records)?;
        let payload = wal::encode_batch(&batch)?;
        let used = self.inner.wal.bytes();
        let budget = self.inner.cfg.wal.disk_budget_bytes;
        if used + payload.len() as u64 > budget {
            return Err(StorageError::OverBudget { used, budget });
        }
        self.inner.wal.append(payload, batch).await?;
        Ok(())
    }

    /// A consistent view for queries: no record is missing and none appears twice.
    pub fn snapshot(&self) -> Snapshot {
        match self.inner.state.read() {
            Ok(st) => Snapshot {
                table: st.table.clone(),
                rollups: st.rollups.in_step(st.table_seq),
                pending: st.pending.values().flatten().cloned().collect(),
            },
            Err(_) => Snapshot {
                table: None,
                rollups: rollup::RollupTables::default(),
                pending: Vec::new(),
            },
        }
    }

    /// Flushes everything acknowledged so far into the table, now.
    pub async fn flush(&self) -> Result<(), StorageError> {
        flush::flush_once(&self.inner).await
    }

    /// Compacts small files now (OPTIMIZE, then VACUUM of files no snapshot needs).
    pub async fn compact(&self) -> Result<(), StorageError> {
        flush::compact(&self.inner).await
    }

    /// Deletes days older than `retention_days` now (the flusher also does this hourly).
    pub async fn apply_retention(&self) -> Result<(), StorageError> {
        flush::expire(&self.inner).await
    }

    /// Request ids held in the dedup index (for `/metrics`).
    pub fn dedup_index_len(&self) -> usize {
        self.inner.dedup.lock().map(|d| d.seen.len()).unwrap_or(0)
    }

    /// Records acknowledged but not yet in the table.
    pub fn pending_rows(&self) -> usize {
        self.inner.state.read().map(|s| s.pending_rows).unwrap_or(0)
    }

    /// Bytes of WAL on disk (compared with the disk budget).
    pub fn wal_bytes(&self) -> u64 {
        self.inner.wal.bytes()
    }

    pub fn stats(&self) -> &StorageStats {
        &self.inner.stats
    }

    /// The last flush error, cleared by the next successful flush.
    pub fn last_flush_error(&self) -> Option<String> {
        self.inner
            .last_flush_error
            .lock()
            .ok()
            .and_then(|e| e.clone())
    }

    /// The table this storage holds.
    pub fn spec(&self) -> TableSpec {
        self.inner.spec
    }

    /// URL of the Delta table.
    pub fn table_url(&self) -> &Url {
        &self.inner.table_url
    }

    /// Stops the flusher after a final flush attempt. Acknowledged records stay in the WAL if
    /// that flush fails.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        self.inner.flush_now.notify_one();
        let handle = self.flusher.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl EventSink for Storage {
    fn append(&self, records: Vec<RequestRecord>) -> BoxFuture<'_, Result<AppendAck, SinkError>> {
        Box::pin(async move {
            Storage::append(self, records)
                .await
                .map_err(SinkError::from)
        })
    }

    fn append_unique(
        &self,
        records: Vec<RequestRecord>,
    ) -> BoxFuture<'_, Result<AppendAck, SinkError>> {
        Box::pin(async move {
            Storage::append_unique(self, records)
                .await
                .map_err(SinkError::from)
        })
    }
}

/// What the WAL holds beyond the table.
struct Replay {
    pending: BTreeMap<u64, Vec<RecordBatch>>,
    pending_rows: usize,
    max_seq: i64,
    wal_bytes: u64,
}

/// Reads every WAL segment; frames with a sequence number above `flushed` are pending. With
/// `truncate`, a torn tail of the last segment is cut off (only the owner of the WAL may).
fn replay(
    wal_dir: &Path,
    flushed: i64,
    truncate: bool,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<Replay, StorageError> {
    let mut r = Replay {
        pending: BTreeMap::new(),
        pending_rows: 0,
        max_seq: flushed,
        wal_bytes: 0,
    };
    let segments = wal::list_segments(wal_dir)?;
    let last_index = segments.len().saturating_sub(1);
    for (i, (_, path)) in segments.iter().enumerate() {
        let (frames, good) = wal::read_segment(path, truncate && i == last_index)?;
        r.wal_bytes += good;
        for f in frames {
            r.max_seq = r.max_seq.max(f.seq as i64);
            if (f.seq as i64) <= flushed {
                continue;
            }
            let batches = wal::decode_batch(&f.payload, schema)?;
            r.pending_rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
            r.pending.insert(f.seq, batches);
        }
    }
    Ok(r)
}

/// The WAL sequence number a table holds everything up to (its `txn` version for `app_id`),
/// -1 for no table or no flush yet.
/// A table written by an older Loupe lacks the columns added since (they are all nullable):
/// add them in one metadata-only commit, so queries see every column at once and old files read
/// as nulls there.
async fn add_missing_columns(
    table: DeltaTable,
    spec: &TableSpec,
) -> Result<DeltaTable, StorageError> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
    let have = table.snapshot()?.schema();
    let mut missing: Vec<deltalake::kernel::StructField> = Vec::new();
    for f in (spec.schema)().fields() {
        if have.field(f.name()).is_some() {
            continue;
        }
        if !f.is_nullable() {
            return Err(StorageError::Config(format!(
                "the {} table lacks the required column '{}'; it was not written by Loupe",
                spec.name,
                f.name()
            )));
        }
        missing.push(f.as_ref().try_into_kernel()?);
    }
    if missing.is_empty() {
        return Ok(table);
    }
    tracing::info!(
        columns = %missing.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
        table = spec.name,
        "adding new columns"
    );
    Ok(table.add_columns().with_fields(missing).await?)
}

pub(crate) async fn txn_seq(table: Option<&DeltaTable>, app_id: &str) -> Result<i64, StorageError> {
    Ok(match table {
        Some(t) => t
            .snapshot()?
            .transaction_version(t.log_store().as_ref(), app_id)
            .await?
            .unwrap_or(-1),
        None => -1,
    })
}

fn resolve_table(
    cfg: &StorageConfig,
    data_dir: &Path,
    name: &str,
) -> Result<(Url, Option<Arc<dyn ObjectStore>>), StorageError> {
    match &cfg.table_url {
        None => {
            let dir = data_dir.join("tables").join(name);
            std::fs::create_dir_all(&dir)?;
            let url = Url::from_directory_path(&dir)
                .map_err(|_| StorageError::Config(format!("bad data_dir {}", dir.display())))?;
            Ok((url, None))
        }
        Some(raw) => {
            let base = Url::parse(raw.trim_end_matches('/'))
                .map_err(|e| StorageError::Config(format!("storage.table_url '{raw}': {e}")))?;
            let url = Url::parse(&format!("{}/{name}/", base.as_str().trim_end_matches('/')))
                .map_err(|e| StorageError::Config(format!("storage.table_url '{raw}': {e}")))?;
            match url.scheme() {
                "file" => {
                    if let Ok(p) = url.to_file_path() {
                        std::fs::create_dir_all(p)?;
                    }
                    Ok((url, None))
                }
                "s3" | "s3a" => {
                    let store = flush::s3_store(&url, cfg.s3.clone().unwrap_or_default())?;
                    Ok((url, Some(store)))
                }
                other => Err(StorageError::Config(format!(
                    "storage.table_url scheme '{other}' is not supported; use file:// or s3://"
                ))),
            }
        }
    }
}

pub(crate) fn table_builder(
    url: &Url,
    backend: Option<Arc<dyn ObjectStore>>,
) -> Result<DeltaTableBuilder, StorageError> {
    let mut b = DeltaTableBuilder::from_url(url.clone())?;
    if let Some(store) = backend {
        b = b.with_storage_backend(store, url.clone());
    }
    Ok(b)
}

async fn load_table(
    url: &Url,
    backend: Option<Arc<dyn ObjectStore>>,
) -> Result<Option<DeltaTable>, StorageError> {
    let mut table = table_builder(url, backend)?.build()?;
    match table.load().await {
        Ok(()) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
