//! The hourly roll-up answers dashboard-shaped queries with exactly the raw scan's results, over
//! flushed rows, unflushed rows and time bounds that cut hours in half; it is rebuilt when it is
//! missing or behind the table, and queries read raw rows until then.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use loupe_model::PriceTable;
use loupe_query::{QueryEngine, QueryLimits, format};
use loupe_storage::{Storage, StorageConfig};
use loupe_testkit::{GenOptions, Generator};

const QUERIES: &[&str] = &[
    "requests | where created_at > ago(3d) | summarize requests = count(), hits = countif(cache_hit), cost = sum(cost_usd) by model | sort by model",
    "requests | where created_at > ago(5d) | summarize requests = count(), cost = sum(cost_usd) by day = bin(created_at, 1d), model | sort by day asc, model asc",
    "requests | where created_at > ago(2d) | summarize n = count(), errors = countif(status >= 400), rl = countif(status == 429) by model, provider | sort by model, provider",
    "requests | summarize prompt = sum(prompt_tokens), completion = sum(completion_tokens), cached = sum(cache_read_tokens), total = sum(total_tokens) by bin(created_at, 1d) | sort by created_at",
    "requests | where created_at >= datetime(2026-11-15 10:17:23.5) and created_at <= datetime(2026-11-18 03:00) and status < 400 | summarize count(), sum(cost_usd) by bin(created_at, 6h) | sort by created_at",
    "requests | where created_at between (datetime(2026-11-16 00:30) .. datetime(2026-11-16 05:00)) | count",
    "requests | where created_at > now() - 36h and stream | count",
    "requests | where created_at == datetime(2026-11-16 00:00) | count",
    "requests | where model startswith 'gpt' and not(cache_hit) | summarize c = sum(cost_usd), w = sum(cache_write_tokens), r = sum(reasoning_tokens) by provider, status | sort by provider, status",
    "requests | where created_at < ago(4d) | summarize count() by day | sort by day",
    "requests | where created_at > ago(30d) | summarize count()",
    "requests | where created_at > ago(1h) | summarize count(), sum(cost_usd)",
    "requests | where model == 'no-such-model' | summarize n = count(), k = countif(cache_hit), c = sum(cost_usd)",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .expect("runtime")
}

fn in_big_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("test panicked");
}

fn config(dir: &std::path::Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        flush_interval_ms: 3_600_000,
        compact_interval_secs: 0,
        ..StorageConfig::default()
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 34, 56)
        .single()
        .expect("time")
}

async fn answers(engine: &QueryEngine) -> Vec<String> {
    let mut out = Vec::new();
    for q in QUERIES {
        let r = engine
            .hql_at("default", q, now().timestamp_micros())
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        out.push(
            format::to_json(&r.schema, &r.batches)
                .expect("json")
                .to_string(),
        );
    }
    out
}

#[test]
fn rollup_answers_equal_raw_answers() {
    in_big_stack(|| runtime().block_on(Box::pin(equal_answers())));
}

async fn equal_answers() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = Storage::open(config(dir.path())).await.expect("open");
    let prices = Arc::new(PriceTable::bundled().expect("prices"));
    let records: Vec<_> = Generator::new(
        GenOptions {
            seed: 11,
            start: now() - chrono::Duration::days(6),
            span: chrono::Duration::days(6),
            count: 12_000,
            orgs: vec!["default".into(), "other".into()],
            ..GenOptions::default()
        },
        prices,
    )
    .collect();
    // Two flushes (two roll-up commits), then a part that stays in the memtable.
    let (a, rest) = records.split_at(5_000);
    let (b, c) = rest.split_at(4_000);
    for part in [a, b] {
        storage.append(part.to_vec()).await.expect("append");
        storage.flush().await.expect("flush");
    }
    storage.append(c.to_vec()).await.expect("append");
    assert!(storage.snapshot().rollup.is_some(), "roll-up in step");

    let with = QueryEngine::new(storage.clone(), QueryLimits::default());
    let without = QueryEngine::new(
        storage.clone(),
        QueryLimits {
            use_rollups: false,
            ..QueryLimits::default()
        },
    );
    let (x, y) = (answers(&with).await, answers(&without).await);
    for ((q, a), b) in QUERIES.iter().zip(&x).zip(&y) {
        assert_eq!(a, b, "{q}");
        assert!(a.len() > 20, "{q}: {a}");
    }
    // The roll-up is really read (and raw rows are not, for these).
    for q in &QUERIES[..4] {
        let e = with.explain("default", q).await.expect("explain");
        assert!(e.logical.contains("requests_hourly"), "{q}\n{}", e.logical);
        let e = without.explain("default", q).await.expect("explain");
        assert!(!e.logical.contains("requests_hourly"), "{q}");
    }
    for q in [
        "requests | summarize p95(latency_ms) by model",
        "requests | where isnotempty(user_id) | summarize count() by model",
    ] {
        let e = with.explain("default", q).await.expect("explain");
        assert!(!e.logical.contains("requests_hourly"), "{q}");
    }
    storage.shutdown().await;
}

#[test]
fn a_missing_or_stale_rollup_is_rebuilt_and_skipped_meanwhile() {
    in_big_stack(|| runtime().block_on(Box::pin(rebuild())));
}

async fn rebuild() {
    let dir = tempfile::tempdir().expect("tmp");
    let prices = Arc::new(PriceTable::bundled().expect("prices"));
    let records: Vec<_> = Generator::new(
        GenOptions {
            seed: 3,
            start: now() - chrono::Duration::days(3),
            span: chrono::Duration::days(3),
            count: 3_000,
            ..GenOptions::default()
        },
        prices,
    )
    .collect();
    let storage = Storage::open(config(dir.path())).await.expect("open");
    storage.append(records.clone()).await.expect("append");
    storage.flush().await.expect("flush");
    storage.shutdown().await;
    let raw = {
        let engine = QueryEngine::new(
            Storage::open(config(dir.path())).await.expect("open"),
            QueryLimits {
                use_rollups: false,
                ..QueryLimits::default()
            },
        );
        answers(&engine).await
    };
    // As if the node crashed between the two commits of a flush (or predates roll-ups).
    std::fs::remove_dir_all(dir.path().join("tables/requests_hourly")).expect("rm");
    let mut cfg = config(dir.path());
    cfg.flush_interval_ms = 20;
    let storage = Storage::open(cfg).await.expect("reopen");
    // The background loop rebuilds it; queries meanwhile read raw rows (same answers).
    let engine = QueryEngine::new(storage.clone(), QueryLimits::default());
    assert_eq!(answers(&engine).await, raw);
    let mut waited = 0;
    while storage.snapshot().rollup.is_none() {
        assert!(waited < 300, "roll-up not rebuilt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
    let e = engine
        .explain("default", QUERIES[0])
        .await
        .expect("explain");
    assert!(e.logical.contains("requests_hourly"));
    assert_eq!(answers(&engine).await, raw);
    storage.shutdown().await;
}
