//! Shared helpers for Loupe's benches: synthetic NDJSON bodies with fresh request ids, storage
//! set-up, and the machine-readable figure format written by the report benches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Duration, Utc};
use loupe_model::PriceTable;
use loupe_storage::{Storage, StorageConfig, SyncMode};
use loupe_testkit::{GenOptions, Generator, record_to_native_json};

/// True for CI's smoke run: tiny sizes, every code path once, no figures that mean anything.
pub fn smoke() -> bool {
    std::env::var("LOUPE_BENCH_SMOKE").is_ok_and(|v| v == "1")
        || std::env::args().any(|a| a == "--test")
}

pub fn prices() -> Arc<PriceTable> {
    Arc::new(PriceTable::bundled().expect("bundled price table"))
}

/// NDJSON bodies of `batch` realistic records whose request ids are rewritten on every call,
/// so each body is new to the dedup index (rewriting costs a few ns per record).
#[derive(Clone)]
pub struct Bodies {
    template: Vec<u8>,
    /// Byte offsets of the 12 hex digits to overwrite in each record's request_id.
    slots: Vec<usize>,
    counter: Arc<AtomicU64>,
}

const ID_PREFIX: &str = "00000000-0000-4000-8000-";

impl Bodies {
    pub fn new(batch: usize, prices: Arc<PriceTable>, counter: Arc<AtomicU64>) -> Bodies {
        let opts = GenOptions {
            seed: 42,
            start: Utc::now() - Duration::hours(1),
            span: Duration::minutes(50),
            count: batch.max(1) as u64,
            ..GenOptions::default()
        };
        let mut g = Generator::new(opts, prices);
        let mut template = Vec::new();
        let mut slots = Vec::new();
        for _ in 0..batch {
            let mut v = record_to_native_json(&g.next_record());
            if let Some(o) = v.as_object_mut() {
                o.remove("request_id");
            }
            let line = serde_json::to_string(&v).expect("json");
            // {"request_id":"<prefix>XXXXXXXXXXXX",...}
            let head = format!("{{\"request_id\":\"{ID_PREFIX}");
            slots.push(template.len() + head.len());
            template.extend_from_slice(head.as_bytes());
            template.extend_from_slice(b"000000000000\",");
            template.extend_from_slice(&line.as_bytes()[1..]);
            template.push(b'\n');
        }
        Bodies {
            template,
            slots,
            counter,
        }
    }

    /// A body with fresh ids.
    pub fn next_body(&mut self) -> Vec<u8> {
        let mut body = self.template.clone();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &s in &self.slots {
            let mut n = self.counter.fetch_add(1, Ordering::Relaxed);
            for i in (0..12).rev() {
                body[s + i] = HEX[(n & 0xf) as usize];
                n >>= 4;
            }
        }
        body
    }

    pub fn len(&self) -> usize {
        self.template.len()
    }

    pub fn is_empty(&self) -> bool {
        self.template.is_empty()
    }
}

pub async fn open_storage(dir: &std::path::Path, sync: SyncMode) -> Storage {
    open_table(dir, sync, loupe_storage::TableSpec::REQUESTS).await
}

/// [`open_storage`] of any table (`TableSpec::SPANS` for the `spans` table).
pub async fn open_table(
    dir: &std::path::Path,
    sync: SyncMode,
    spec: loupe_storage::TableSpec,
) -> Storage {
    let mut cfg = StorageConfig {
        data_dir: dir.to_path_buf(),
        compact_interval_secs: 0,
        ..StorageConfig::default()
    };
    cfg.wal.sync = sync;
    cfg.wal.disk_budget_bytes = 64 << 30;
    Storage::open_table(cfg, spec).await.expect("open storage")
}

/// One machine-readable figure (see `./scripts/bench`).
pub fn figure(
    name: &str,
    value: f64,
    unit: &str,
    baseline: Option<(&str, f64)>,
) -> serde_json::Value {
    let mut v = serde_json::json!({ "figure": name, "value": value, "unit": unit });
    if let Some((b, bv)) = baseline {
        v["baseline"] = serde_json::json!(b);
        v["baseline_value"] = serde_json::json!(bv);
        v["ratio"] = serde_json::json!(if bv != 0.0 { value / bv } else { f64::NAN });
    }
    v
}
