//! Ingest figures that criterion does not give: ack latency percentiles under concurrency, fsync
//! vs buffered throughput ratio, bytes on disk per event vs raw NDJSON, and ack → queryable /
//! ack → in Parquet delays. Prints one JSON figure per line (and appends them to
//! $LOUPE_BENCH_OUT if set). `LOUPE_BENCH_SMOKE=1` runs tiny sizes.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use chrono::Utc;
use datafusion::prelude::{col, lit};
use loupe_benches::{Bodies, figure, open_storage, prices, smoke};
use loupe_ingest::IngestContext;
use loupe_query::{QueryEngine, QueryLimits};
use loupe_storage::{Storage, StorageConfig, SyncMode};
use loupe_testkit::{GenOptions, Generator, write_ndjson};

fn emit(out: &mut Vec<serde_json::Value>, v: serde_json::Value) {
    println!("{v}");
    out.push(v);
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Runs `requests` appends of `batch` records from `conc` tasks; returns (events/s, latencies).
async fn load(
    storage: &Storage,
    batch: usize,
    conc: usize,
    requests: usize,
    bodies: &Bodies,
) -> (f64, Vec<Duration>) {
    let prices = prices();
    let per_task = requests.div_ceil(conc);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let storage = storage.clone();
        let mut bodies = bodies.clone();
        let ctx = IngestContext::new("default", prices.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let body = bodies.next_body();
                let t = Instant::now();
                let records = loupe_ingest::parse_native(&body, Some("application/x-ndjson"), &ctx)
                    .expect("parse");
                storage.append(records).await.expect("append");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    ((per_task * conc * batch) as f64 / secs, all)
}

async fn throughput_and_latency(out: &mut Vec<serde_json::Value>) {
    let prices = prices();
    let counter = Arc::new(AtomicU64::new(1));
    let scale = if smoke() { 0.01 } else { 1.0 };
    for (batch, conc, requests) in [
        (1000usize, 4usize, 300usize),
        (100, 16, 2000),
        (1, 16, 20000),
    ] {
        let requests = ((requests as f64 * scale) as usize).max(conc);
        let bodies = Bodies::new(batch, prices.clone(), counter.clone());
        let mut eps = [0.0f64; 2];
        for (i, sync) in [SyncMode::Buffered, SyncMode::Fsync]
            .into_iter()
            .enumerate()
        {
            let dir = tempfile::tempdir().expect("tmp");
            let storage = open_storage(dir.path(), sync).await;
            let (e, lat) = load(&storage, batch, conc, requests, &bodies).await;
            storage.shutdown().await;
            eps[i] = e;
            let mode = format!("{sync:?}").to_lowercase();
            let base = if i == 1 {
                Some(("buffered mode, same run", eps[0]))
            } else {
                None
            };
            emit(
                out,
                figure(
                    &format!("ingest.{mode}.batch{batch}.c{conc}.events_per_s"),
                    e,
                    "events/s",
                    base,
                ),
            );
            emit(
                out,
                figure(
                    &format!("ingest.{mode}.batch{batch}.c{conc}.ack_p50"),
                    pct(&lat, 0.5),
                    "ms",
                    None,
                ),
            );
            emit(
                out,
                figure(
                    &format!("ingest.{mode}.batch{batch}.c{conc}.ack_p99"),
                    pct(&lat, 0.99),
                    "ms",
                    None,
                ),
            );
        }
    }
}

async fn bytes_on_disk(out: &mut Vec<serde_json::Value>) {
    let n = if smoke() { 2_000 } else { 1_000_000 };
    let prices = prices();
    let opts = GenOptions {
        seed: 3,
        start: Utc::now() - chrono::Duration::days(7),
        span: chrono::Duration::days(7),
        count: n as u64,
        ..GenOptions::default()
    };
    let dir = tempfile::tempdir().expect("tmp");
    let storage = open_storage(dir.path(), SyncMode::Buffered).await;
    let mut g = Generator::new(opts, prices);
    let mut ndjson_bytes = 0u64;
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        let recs = g.batch(k);
        let mut buf = Vec::new();
        write_ndjson(recs.iter(), &mut buf).expect("ndjson");
        ndjson_bytes += buf.len() as u64;
        storage.append(recs).await.expect("append");
        left -= k;
    }
    storage.flush().await.expect("flush");
    storage.compact().await.expect("compact");
    let table = storage.snapshot().table.expect("table");
    let mut parquet = 0u64;
    for uri in table.get_file_uris().expect("files") {
        let path = uri.strip_prefix("file://").unwrap_or(&uri).to_string();
        parquet += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    }
    storage.shutdown().await;
    let per_million = parquet as f64 * 1e6 / n as f64;
    emit(
        out,
        figure(
            "storage.parquet_bytes_per_million_events",
            per_million,
            "bytes",
            Some((
                "raw NDJSON of the same events",
                ndjson_bytes as f64 * 1e6 / n as f64,
            )),
        ),
    );
}

async fn visibility(out: &mut Vec<serde_json::Value>) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = StorageConfig {
        data_dir: dir.path().to_path_buf(),
        compact_interval_secs: 0,
        flush_interval_ms: 1000,
        ..StorageConfig::default()
    };
    cfg.wal.sync = SyncMode::Fsync;
    let storage = Storage::open(cfg).await.expect("open");
    let engine = QueryEngine::new(storage.clone(), QueryLimits::default());
    let mut g = Generator::new(GenOptions::default(), prices());
    let rounds = if smoke() { 1 } else { 5 };
    let (mut queryable, mut in_parquet) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let rec = g.next_record();
        let id = rec.request_id.to_string();
        storage.append(vec![rec]).await.expect("append");
        let acked = Instant::now();
        loop {
            let ctx = engine.session().await.expect("session");
            let df = engine
                .requests(&ctx, "default")
                .await
                .expect("df")
                .filter(col("request_id").eq(lit(id.as_str())))
                .expect("filter");
            let n: usize = engine
                .collect(df)
                .await
                .expect("collect")
                .iter()
                .map(|b| b.num_rows())
                .sum();
            if n == 1 {
                queryable.push(acked.elapsed());
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(10),
                "record not queryable after 10 s"
            );
        }
        while storage.pending_rows() > 0 {
            assert!(
                acked.elapsed() < Duration::from_secs(30),
                "record not flushed after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        in_parquet.push(acked.elapsed());
    }
    storage.shutdown().await;
    queryable.sort();
    in_parquet.sort();
    emit(
        out,
        figure(
            "visibility.ack_to_queryable_p50",
            pct(&queryable, 0.5),
            "ms",
            None,
        ),
    );
    emit(
        out,
        figure(
            "visibility.ack_to_parquet_p50_flush_interval_1000ms",
            pct(&in_parquet, 0.5),
            "ms",
            None,
        ),
    );
}

fn main() {
    // `cargo bench` passes --bench; criterion-style filters are ignored here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let mut out = Vec::new();
    rt.block_on(async {
        throughput_and_latency(&mut out).await;
        bytes_on_disk(&mut out).await;
        visibility(&mut out).await;
    });
    if let Ok(path) = std::env::var("LOUPE_BENCH_OUT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open LOUPE_BENCH_OUT");
        for v in out {
            writeln!(f, "{v}").expect("write");
        }
    }
}
