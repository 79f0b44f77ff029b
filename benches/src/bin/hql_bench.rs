//! The Rust half of the HQL side-by-side bench (`benches/hql_side_by_side.py` drives it).
//!
//! `hql-bench generate --data-dir D --rows N` writes N generated records (30 days, one org
//! `default`) into a Loupe data directory: one flush per 1M records, so every day partition ends
//! up with a few large zstd Parquet files and no superseded ones (DuckDB and chDB read the same
//! files through a glob).
//!
//! `hql-bench run --data-dir D --spec spec.json --runs 5` runs every query of the spec twice per
//! round in one process over one `QueryEngine` (same table provider, same files, same threads):
//! once as HQL (parse + plan + execute) and once as hand-written DataFusion SQL. The difference
//! is what the HQL compiler costs. It prints one JSON line per query with the timings (ms) and
//! whether the two answers are equal.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{Duration, Utc};
use datafusion::arrow::util::pretty::pretty_format_batches;
use loupe_query::{QueryEngine, QueryLimits};
use loupe_storage::{Storage, StorageConfig, SyncMode};
use loupe_testkit::{GenOptions, Generator};
use serde_json::{Value, json};

fn usage() -> ! {
    eprintln!(
        "usage: hql-bench generate --data-dir D --rows N [--days 30] [--seed 7]\n       \
         hql-bench run --data-dir D --spec spec.json [--runs 5] [--now-micros T]"
    );
    std::process::exit(2)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        usage()
    };
    let Some(data_dir) = arg(&args, "--data-dir").map(PathBuf::from) else {
        usage()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .expect("runtime");
    let result = match cmd.as_str() {
        "generate" => {
            let rows: u64 = arg(&args, "--rows")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage());
            let days: i64 = arg(&args, "--days")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            let seed: u64 = arg(&args, "--seed")
                .and_then(|v| v.parse().ok())
                .unwrap_or(7);
            rt.block_on(async move {
                // Worker threads have 8 MiB stacks; the main thread's is too small for the
                // Delta commit futures.
                tokio::spawn(generate(data_dir, rows, days, seed))
                    .await
                    .map_err(|e| e.to_string())?
            })
        }
        "run" => {
            let Some(spec) = arg(&args, "--spec") else {
                usage()
            };
            let runs: usize = arg(&args, "--runs")
                .and_then(|v| v.parse().ok())
                .unwrap_or(5);
            rt.block_on(async move {
                tokio::spawn(run(data_dir, PathBuf::from(spec), runs))
                    .await
                    .map_err(|e| e.to_string())?
            })
        }
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("hql-bench: {e}");
        std::process::exit(1);
    }
}

fn config(data_dir: PathBuf) -> StorageConfig {
    let mut cfg = StorageConfig {
        data_dir,
        flush_interval_ms: 24 * 3_600_000,
        flush_max_rows: 4_000_000,
        compact_interval_secs: 0,
        ..StorageConfig::default()
    };
    cfg.wal.sync = SyncMode::Buffered;
    cfg
}

async fn generate(data_dir: PathBuf, rows: u64, days: i64, seed: u64) -> Result<(), String> {
    let storage = Storage::open(config(data_dir.clone()))
        .await
        .map_err(|e| e.to_string())?;
    // The span ends an hour ago, so `ago(1d)` … `ago(30d)` all see data.
    let end = Utc::now() - Duration::hours(1);
    let opts = GenOptions {
        seed,
        start: end - Duration::days(days),
        span: Duration::days(days),
        count: rows,
        orgs: vec!["default".into()],
        users: 5_000,
        with_bodies: false,
    };
    let started = Instant::now();
    let mut gen_ = Generator::new(opts, loupe_benches::prices());
    let mut done = 0u64;
    let mut since_flush = 0u64;
    while done < rows {
        let n = (rows - done).min(50_000) as usize;
        let batch: Vec<_> = (&mut gen_).take(n).collect();
        if batch.is_empty() {
            break;
        }
        done += batch.len() as u64;
        since_flush += batch.len() as u64;
        storage.append(batch).await.map_err(|e| e.to_string())?;
        if since_flush >= 1_000_000 {
            storage.flush().await.map_err(|e| e.to_string())?;
            since_flush = 0;
            eprintln!("  {done} rows, {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    storage.flush().await.map_err(|e| e.to_string())?;
    storage.shutdown().await;
    let meta =
        json!({"rows": done, "days": days, "seed": seed, "end_micros": end.timestamp_micros()});
    std::fs::write(data_dir.join("bench-meta.json"), meta.to_string())
        .map_err(|e| e.to_string())?;
    eprintln!(
        "generated {done} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn run(data_dir: PathBuf, spec: PathBuf, runs: usize) -> Result<(), String> {
    let spec: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&spec).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let storage = Storage::open(config(data_dir))
        .await
        .map_err(|e| e.to_string())?;
    let engine = QueryEngine::new(
        storage.clone(),
        QueryLimits {
            target_partitions: 2,
            use_rollups: std::env::var("LOUPE_BENCH_ROLLUPS").map_or(true, |v| v != "0"),
            ..QueryLimits::default()
        },
    );
    for q in &spec {
        let name = q["name"].as_str().unwrap_or("?");
        let hql = q["hql"].as_str().ok_or("spec entry without hql")?;
        let sql = q["datafusion"]
            .as_str()
            .ok_or("spec entry without datafusion")?;
        let mut t_hql = Vec::with_capacity(runs);
        let mut t_compile = Vec::with_capacity(runs);
        let mut t_sql = Vec::with_capacity(runs);
        let mut hql_text = String::new();
        let mut sql_text = String::new();
        // One first run of each (not counted), then `runs` alternating rounds.
        for round in 0..=runs {
            let start = Instant::now();
            let out = engine
                .hql("default", hql)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let text = pretty_format_batches(&out.batches)
                .map_err(|e| e.to_string())?
                .to_string();
            let start = Instant::now();
            let ctx = engine.session().await.map_err(|e| e.to_string())?;
            let df = ctx.sql(sql).await.map_err(|e| format!("{name} sql: {e}"))?;
            let batches = df.collect().await.map_err(|e| format!("{name} sql: {e}"))?;
            let sql_ms = start.elapsed().as_secs_f64() * 1e3;
            if round > 0 {
                t_hql.push(ms);
                t_compile.push(out.stats.compile_ms);
                t_sql.push(sql_ms);
            } else {
                hql_text = text;
                sql_text = pretty_format_batches(&batches)
                    .map_err(|e| e.to_string())?
                    .to_string();
            }
        }
        let same = strip_header(&hql_text) == strip_header(&sql_text);
        println!(
            "{}",
            json!({
                "name": name,
                "hql_ms": median(&mut t_hql),
                "hql_min_ms": t_hql.iter().copied().fold(f64::INFINITY, f64::min),
                "hql_compile_ms": median(&mut t_compile),
                "datafusion_sql_ms": median(&mut t_sql),
                "datafusion_sql_min_ms": t_sql.iter().copied().fold(f64::INFINITY, f64::min),
                "same_answer": same,
            })
        );
        if !same {
            eprintln!(
                "{name}: HQL and SQL answers differ\n--- hql\n{hql_text}\n--- sql\n{sql_text}"
            );
        }
    }
    storage.shutdown().await;
    Ok(())
}

/// The rows of a table text, sorted, without the header (column names differ: HQL names vs SQL
/// aliases; rows that tie in the sort key may come in either order).
fn strip_header(t: &str) -> String {
    let mut rows: Vec<&str> = t.lines().skip(3).collect();
    rows.sort_unstable();
    rows.join("\n")
}
