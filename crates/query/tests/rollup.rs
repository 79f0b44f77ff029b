//! The hourly roll-ups answer dashboard-shaped queries (counts and sums by model, latency and
//! TTFT histograms, top users) with exactly the raw scan's results, over flushed rows, unflushed
//! rows and time bounds that cut hours in half; the dashboard's answers are identical with and
//! without them; they are rebuilt when missing or behind the table, and queries read raw rows
//! until then.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use loupe_model::PriceTable;
use loupe_model::schema::{ROLLUPS, log_bucket_hql};
use loupe_query::analytics::{self, Dimension, Filter, Metric, Percentiles};
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
    "requests | where created_at > ago(4d) | summarize saved = sum(cost_saved_usd) by cache_hit | sort by cache_hit",
    // Histograms (requests_latency_hourly, requests_ttft_hourly).
    "requests | where created_at >= datetime(2026-11-15 10:17:23.5) and created_at < datetime(2026-11-19 03:00) | summarize n = count(), s = sum(latency_ms) by b = toint(log10(latency_ms + 1) * 200) | sort by b",
    "requests | where created_at > ago(5d) | summarize n = count(), s = sum(latency_ms) by t = bin(created_at, 6h), b = toint(log10(latency_ms + 1) * 200) | sort by t, b",
    "requests | where created_at > ago(5d) | summarize n = count(), s = sum(ttft_ms) by b = toint(log10(ttft_ms + 1) * 200) | sort by b nulls first",
    "requests | summarize n = count() by t = bin(created_at, 1d), b = toint(log10(ttft_ms + 1) * 200) | sort by t, b nulls first",
    // Top users (requests_users_hourly).
    "requests | where created_at >= datetime(2026-11-15 06:30) and created_at < datetime(2026-11-19 18:00) | summarize requests = count(), errors = countif(status >= 400), cost_usd = sum(cost_usd), total_tokens = sum(total_tokens) by key = user_id | sort by cost_usd desc, key asc nulls last | take 10",
    "requests | where created_at > ago(6d) and status < 400 and user_id in ('user_1', 'user_7') | summarize n = count(), c = sum(cost_usd) by user_id, status | sort by user_id, status",
];

/// The roll-up each query shape above is answered from.
const READS: &[(usize, &str)] = &[
    (0, "requests_hourly"),
    (1, "requests_hourly"),
    (13, "requests_hourly"),
    (14, "requests_latency_hourly"),
    (15, "requests_latency_hourly"),
    (16, "requests_ttft_hourly"),
    (17, "requests_ttft_hourly"),
    (18, "requests_users_hourly"),
    (19, "requests_users_hourly"),
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
            users: 50,
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
    assert_eq!(
        storage.snapshot().rollups.len(),
        ROLLUPS.len(),
        "roll-ups in step"
    );

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
    for (i, table) in READS {
        let q = QUERIES[*i];
        let e = with.explain("default", q).await.expect("explain");
        assert!(scans(&e.logical, table), "{q}\n{}", e.logical);
        let e = without.explain("default", q).await.expect("explain");
        assert!(!e.logical.contains("_hourly"), "{q}");
    }
    // Whole days are read from the daily rows, unless a `by` bin is finer than a day.
    for (i, daily) in [(1, true), (10, true), (13, true), (4, false), (15, false)] {
        let q = QUERIES[i];
        let e = with.explain("default", q).await.expect("explain");
        assert_eq!(
            e.logical.contains("grain = Int32(24)"),
            daily,
            "{q}\n{}",
            e.logical
        );
        assert!(e.logical.contains("grain = Int32(1)"), "{q}\n{}", e.logical);
    }
    for q in [
        "requests | summarize p95(latency_ms) by model",
        "requests | where isnotempty(user_id) | summarize count() by model",
        "requests | where model == 'gpt-4o' | summarize count() by b = toint(log10(latency_ms + 1) * 200)",
    ] {
        let e = with.explain("default", q).await.expect("explain");
        assert!(!e.logical.contains("_hourly"), "{q}");
    }
    // The dashboard's percentiles and top users: identical with and without the roll-ups.
    let n = now().timestamp_micros();
    let hour = 3_600_000_000;
    for (from, to) in [
        (n - 5 * 24 * hour, n),
        ((n / hour - 4 * 24) * hour, (n / hour + 1) * hour),
    ] {
        let f = Filter {
            from,
            to,
            ..Filter::default()
        };
        let (x, y) = (dashboard(&with, &f).await, dashboard(&without, &f).await);
        assert_eq!(x, y);
        assert!(x[0]["latency_p50_ms"].as_f64().is_some(), "{}", x[0]);
        assert!(
            x[2]["groups"].as_array().is_some_and(|g| g.len() == 10),
            "{}",
            x[2]
        );
        for user_filter in [true, false] {
            let f = Filter {
                users: if user_filter {
                    vec!["user_2".into(), "user_3".into()]
                } else {
                    Vec::new()
                },
                status: Some(analytics::StatusClass::Ok),
                ..f.clone()
            };
            let b = |e| {
                let f = f.clone();
                async move {
                    analytics::breakdown(e, "default", &f, &Dimension::User, Metric::Requests, 5)
                        .await
                        .expect("breakdown")
                }
            };
            assert_eq!(b(&with).await, b(&without).await);
        }
    }
    // The dashboard's own shapes (see analytics.rs) are the ones the roll-ups answer.
    let f = Filter {
        from: (n / hour - 4 * 24) * hour,
        to: (n / hour + 1) * hour,
        ..Filter::default()
    };
    let lat = log_bucket_hql("latency_ms");
    for (rest, table) in [
        (format!("summarize n = count(), s = sum(latency_ms) by b = {lat}"), "requests_latency_hourly"),
        (format!("summarize n = count(), s = sum(latency_ms) by t = bin(created_at, 21600s), b = {lat}"), "requests_latency_hourly"),
        (format!("summarize n = count(), s = sum(ttft_ms) by b = {}", log_bucket_hql("ttft_ms")), "requests_ttft_hourly"),
        (
            "summarize requests = count(), errors = countif(status >= 400), cost_usd = sum(cost_usd), \
             total_tokens = sum(total_tokens) by key = user_id\n| sort by cost_usd desc, key asc nulls last\n| take 10"
                .to_string(),
            "requests_users_hourly",
        ),
    ] {
        let q = format!("requests\n| where {}\n| {rest}", f.predicate());
        let e = with.explain("default", &q).await.expect("explain");
        assert!(scans(&e.logical, table), "{q}\n{}", e.logical);
    }
    storage.shutdown().await;
}

/// True if the plan text scans `table` itself.
fn scans(plan: &str, table: &str) -> bool {
    let scan = format!("TableScan: {table}");
    plan.lines().map(str::trim).any(|l| {
        l.strip_prefix(&scan)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    })
}

/// Summary percentiles, the latency series and the top users by cost of `f`.
async fn dashboard(engine: &QueryEngine, f: &Filter) -> Vec<serde_json::Value> {
    let org = "default";
    let mut out = vec![
        analytics::summary(engine, org, f, Percentiles::Only)
            .await
            .expect("summary"),
    ];
    for bucket in [Some(6 * 3_600), Some(3_600), None] {
        out.push(
            analytics::timeseries(engine, org, f, bucket, Percentiles::Only)
                .await
                .expect("timeseries"),
        );
    }
    out.insert(
        2,
        analytics::breakdown(engine, org, f, &Dimension::User, Metric::Cost, 10)
            .await
            .expect("breakdown"),
    );
    out
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
    // As if the node crashed between the commits of a flush (or predates these roll-ups).
    for t in [
        "requests_hourly",
        "requests_latency_hourly",
        "requests_users_hourly",
    ] {
        std::fs::remove_dir_all(dir.path().join("tables").join(t)).expect("rm");
    }
    let mut cfg = config(dir.path());
    cfg.flush_interval_ms = 20;
    let storage = Storage::open(cfg).await.expect("reopen");
    // The background loop rebuilds it; queries meanwhile read raw rows (same answers).
    let engine = QueryEngine::new(storage.clone(), QueryLimits::default());
    assert_eq!(answers(&engine).await, raw);
    let mut waited = 0;
    while storage.snapshot().rollups.len() < ROLLUPS.len() {
        assert!(waited < 500, "roll-ups not rebuilt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
    for (i, table) in READS {
        let e = engine
            .explain("default", QUERIES[*i])
            .await
            .expect("explain");
        assert!(scans(&e.logical, table), "{}", e.logical);
    }
    assert_eq!(answers(&engine).await, raw);
    storage.shutdown().await;
}
