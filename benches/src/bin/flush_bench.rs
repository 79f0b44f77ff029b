//! What a flush costs (the roll-ups are written on the flush path) and how many rows the
//! roll-up tables hold, on the bench machine.
//!
//! `flush-bench [--runs 7] [--out bench-results/flush.json]`:
//! * `flush_<N>_rows`: p50 wall time of `Storage::flush` moving N acknowledged records (one
//!   day of generated traffic, 5 000 users) into the tables: N = 5 000 (5 s of traffic at
//!   1 000 req/s, the default flush interval) and 200 000 (the default `flush_max_rows`), a
//!   fresh data directory per run, and the same without the roll-ups (the baseline, same run);
//! * `small_flushes`: 300 flushes of 200 records spread over 6 hours (steady traffic, one
//!   flush every 5 s), then the row count of every table beside `requests` before and after
//!   `Storage::compact`.
//!
//! Run it on two builds (before/after a change) back to back; the figures are only comparable
//! within one machine and one run.

use std::time::Instant;

use chrono::{Duration, Utc};
use datafusion::prelude::SessionContext;
use loupe_storage::{Storage, StorageConfig, SyncMode, TableSpec};
use loupe_testkit::{GenOptions, Generator};
use serde_json::{Value, json};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn config(dir: &std::path::Path) -> StorageConfig {
    let mut cfg = StorageConfig {
        data_dir: dir.to_path_buf(),
        flush_interval_ms: 24 * 3_600_000,
        flush_max_rows: usize::MAX,
        compact_interval_secs: 0,
        ..StorageConfig::default()
    };
    cfg.wal.sync = SyncMode::Buffered;
    cfg.wal.disk_budget_bytes = 64 << 30;
    cfg
}

fn records(seed: u64, count: u64, span: Duration) -> Vec<loupe_model::RequestRecord> {
    let end = Utc::now() - Duration::minutes(5);
    Generator::new(
        GenOptions {
            seed,
            start: end - span,
            span,
            count,
            orgs: vec!["default".into()],
            users: 5_000,
            with_bodies: false,
        },
        loupe_benches::prices(),
    )
    .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Rows of every Delta table under `<dir>/tables` (the raw table and the roll-ups).
async fn table_rows(dir: &std::path::Path) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    let tables = dir.join("tables");
    let mut names: Vec<String> = std::fs::read_dir(&tables)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("_delta_log").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let url = url::Url::from_directory_path(tables.join(&name))
            .map_err(|_| format!("bad path for {name}"))?;
        let table = deltalake::open_table(url)
            .await
            .map_err(|e| e.to_string())?;
        let ctx = SessionContext::new();
        table
            .update_datafusion_session(&ctx.state())
            .map_err(|e| e.to_string())?;
        let provider = table.table_provider().await.map_err(|e| e.to_string())?;
        let n = ctx
            .read_table(provider)
            .map_err(|e| e.to_string())?
            .count()
            .await
            .map_err(|e| e.to_string())?;
        let files = table
            .snapshot()
            .map_err(|e| e.to_string())?
            .log_data()
            .num_files();
        out.insert(name, json!({ "rows": n, "files": files }));
    }
    Ok(Value::Object(out))
}

/// p50 of `runs` flushes of `rows` records, with the roll-ups or without them (the baseline).
async fn flush_cost(rows: u64, runs: usize, rollups: bool) -> Result<f64, String> {
    let spec = TableSpec {
        rollup: rollups,
        ..TableSpec::REQUESTS
    };
    let mut times = Vec::with_capacity(runs);
    for run in 0..=runs {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let storage = Storage::open_table(config(dir.path()), spec)
            .await
            .map_err(|e| e.to_string())?;
        // A table that already holds a day, as in steady state.
        storage
            .append_unique(records(1_000 + run as u64, 20_000, Duration::days(1)))
            .await
            .map_err(|e| e.to_string())?;
        storage.flush().await.map_err(|e| e.to_string())?;
        storage
            .append_unique(records(run as u64, rows, Duration::days(1)))
            .await
            .map_err(|e| e.to_string())?;
        let t = Instant::now();
        storage.flush().await.map_err(|e| e.to_string())?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if run > 0 {
            times.push(ms);
        }
        storage.shutdown().await;
    }
    Ok((median(&mut times) * 10.0).round() / 10.0)
}

/// 300 flushes of 200 records; the mean flush time and the directory (kept for the table stats).
async fn steady_flushes(rollups: bool) -> Result<(f64, Storage, tempfile::TempDir), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let spec = TableSpec {
        rollup: rollups,
        ..TableSpec::REQUESTS
    };
    let storage = Storage::open_table(config(dir.path()), spec)
        .await
        .map_err(|e| e.to_string())?;
    let all = records(99, 60_000, Duration::hours(6));
    let started = Instant::now();
    for chunk in all.chunks(200) {
        storage
            .append_unique(chunk.to_vec())
            .await
            .map_err(|e| e.to_string())?;
        storage.flush().await.map_err(|e| e.to_string())?;
    }
    let flush_ms = started.elapsed().as_secs_f64() * 1e3 / (all.len() / 200) as f64;
    Ok(((flush_ms * 10.0).round() / 10.0, storage, dir))
}

async fn small_flushes() -> Result<Value, String> {
    let (without, storage, _dir) = steady_flushes(false).await?;
    storage.shutdown().await;
    let (with, storage, dir) = steady_flushes(true).await?;
    let before = table_rows(dir.path()).await?;
    let t = Instant::now();
    storage.compact().await.map_err(|e| e.to_string())?;
    let compact_ms = t.elapsed().as_secs_f64() * 1e3;
    let after = table_rows(dir.path()).await?;
    storage.shutdown().await;
    Ok(json!({
        "flushes": 300,
        "rows_per_flush": 200,
        "mean_flush_ms": with,
        "without_rollups_mean_flush_ms": without,
        "ratio_vs_without": (with / without * 100.0).round() / 100.0,
        "compact_ms": compact_ms.round(),
        "tables_before_compaction": before,
        "tables_after_compaction": after,
    }))
}

async fn bench(runs: usize) -> Result<Value, String> {
    let mut out = serde_json::Map::new();
    for rows in [5_000u64, 200_000] {
        // Back to back in one run: the baseline is the same flush without the roll-ups.
        let with = flush_cost(rows, runs, true).await?;
        let without = flush_cost(rows, runs, false).await?;
        let r = json!({
            "p50_ms": with,
            "without_rollups_p50_ms": without,
            "ratio_vs_without": (with / without * 100.0).round() / 100.0,
            "runs": runs,
        });
        eprintln!("flush of {rows} rows: {r}");
        out.insert(format!("flush_{rows}_rows"), r);
    }
    let s = small_flushes().await?;
    eprintln!("small flushes: {s}");
    out.insert("small_flushes".into(), s);
    Ok(Value::Object(out))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = arg(&args, "--runs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let out = arg(&args, "--out").unwrap_or_else(|| "bench-results/flush.json".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .expect("runtime");
    let result =
        rt.block_on(async move { tokio::spawn(bench(runs)).await.map_err(|e| e.to_string())? });
    match result {
        Ok(v) => {
            let text = serde_json::to_string_pretty(&v).unwrap_or_default();
            println!("{text}");
            if let Err(e) = std::fs::write(&out, text) {
                eprintln!("flush-bench: cannot write {out}: {e}");
            }
        }
        Err(e) => {
            eprintln!("flush-bench: {e}");
            std::process::exit(1);
        }
    }
}
