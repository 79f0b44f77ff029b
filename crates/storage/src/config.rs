//! Storage settings (`[storage]` in loupe.toml).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::wal::SyncMode;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Local directory for the WAL (and, by default, the tables).
    pub data_dir: PathBuf,
    /// Where tables live: unset = `<data_dir>/tables` on local disk; `s3://bucket/prefix` with
    /// `[storage.s3]` for S3-compatible stores.
    pub table_url: Option<String>,
    pub wal: WalConfig,
    /// Flush the memtable to the table every this many milliseconds…
    pub flush_interval_ms: u64,
    /// …or as soon as it holds this many rows.
    pub flush_max_rows: usize,
    /// Compact small files every this many seconds (0 = never).
    pub compact_interval_secs: u64,
    /// Target size of compacted files.
    pub compact_target_bytes: u64,
    /// Delete rows whose `created_at` day is older than this many days (unset = keep forever).
    pub retention_days: Option<u32>,
    /// Request ids whose `created_at` is within this many hours of now are deduplicated exactly.
    pub dedup_window_hours: u32,
    /// Identifies this node in the table's transaction log (idempotent flushes per node).
    pub node_id: String,
    pub s3: Option<S3Config>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// `fsync` (default: ack after fdatasync, shared by concurrent writers) or `buffered`.
    pub sync: SyncMode,
    pub buffered_sync_interval_ms: u64,
    pub segment_bytes: u64,
    /// Ingest answers 503 once unflushed WAL data exceeds this.
    pub disk_budget_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("loupe-data"),
            table_url: None,
            wal: WalConfig::default(),
            flush_interval_ms: 5_000,
            flush_max_rows: 200_000,
            compact_interval_secs: 300,
            compact_target_bytes: 128 << 20,
            retention_days: None,
            dedup_window_hours: 48,
            node_id: "node-0".into(),
            s3: None,
        }
    }
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            sync: SyncMode::Fsync,
            buffered_sync_interval_ms: 200,
            segment_bytes: 64 << 20,
            disk_budget_bytes: 2 << 30,
        }
    }
}
