//! Acknowledged records are queryable at once, exactly once, before and after a flush, and
//! scans are scoped to one org.

use chrono::Utc;
use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::prelude::{col, lit};
use loupe_model::RequestRecord;
use loupe_query::{QueryEngine, QueryLimits};
use loupe_storage::{Storage, StorageConfig};

fn rec(org: &str, tokens: i64) -> RequestRecord {
    let mut r = RequestRecord::new(uuid::Uuid::new_v4(), org, Utc::now());
    r.model = "gpt-4o-mini".into();
    r.provider = "openai".into();
    r.prompt_tokens = tokens;
    r.properties.insert("env".into(), "prod".into());
    r
}

async fn count_and_sum(engine: &QueryEngine, org: &str) -> (i64, i64) {
    let ctx = engine.session().await.expect("session");
    let df = engine
        .requests(&ctx, org)
        .await
        .expect("requests")
        .aggregate(
            vec![],
            vec![
                count(lit(1)).alias("n"),
                sum(col("prompt_tokens")).alias("t"),
            ],
        )
        .expect("agg");
    let batches = engine.collect(df).await.expect("collect");
    let b = &batches[0];
    let n = b.column(0).as_primitive::<Int64Type>().value(0);
    let t = b
        .column(1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| if a.is_null(0) { 0 } else { a.value(0) })
        .unwrap_or(0);
    (n, t)
}

#[tokio::test]
async fn records_are_queryable_immediately_and_after_flush() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = Storage::open(StorageConfig {
        data_dir: dir.path().to_path_buf(),
        flush_interval_ms: 3_600_000,
        compact_interval_secs: 0,
        ..StorageConfig::default()
    })
    .await
    .expect("open");
    let engine = QueryEngine::new(storage.clone(), QueryLimits::default());
    assert_eq!(count_and_sum(&engine, "default").await, (0, 0));

    storage
        .append((1..=10).map(|i| rec("default", i)).collect())
        .await
        .expect("append");
    storage
        .append((1..=3).map(|i| rec("other", i * 100)).collect())
        .await
        .expect("append");
    assert_eq!(
        count_and_sum(&engine, "default").await,
        (10, 55),
        "memtable not visible"
    );

    storage.flush().await.expect("flush");
    assert_eq!(
        count_and_sum(&engine, "default").await,
        (10, 55),
        "after flush"
    );

    // Half in the table, half in the memtable: still exactly once, still scoped.
    storage
        .append((1..=5).map(|i| rec("default", i)).collect())
        .await
        .expect("append");
    assert_eq!(count_and_sum(&engine, "default").await, (15, 70));
    assert_eq!(count_and_sum(&engine, "other").await, (3, 600));
    assert_eq!(count_and_sum(&engine, "nobody").await, (0, 0));

    // Property maps survive the round trip through both paths.
    let ctx = engine.session().await.expect("session");
    let df = engine
        .requests(&ctx, "default")
        .await
        .expect("requests")
        .select(vec![
            datafusion::functions_nested::expr_fn::map_extract(col("properties"), lit("env"))
                .alias("env"),
        ])
        .expect("select");
    let rows: usize = engine
        .collect(df)
        .await
        .expect("collect")
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 15);
    storage.shutdown().await;
}

/// A time filter skips whole days: `created_at` bounds imply `day` partition bounds, so files of
/// other days are never opened, and the answer is the same as without pruning.
#[tokio::test]
async fn time_filters_skip_other_days_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = Storage::open(StorageConfig {
        data_dir: dir.path().to_path_buf(),
        flush_interval_ms: 3_600_000,
        compact_interval_secs: 0,
        ..StorageConfig::default()
    })
    .await
    .expect("open");
    // Raw-scan pruning is under test here, not the roll-up.
    let engine = QueryEngine::new(
        storage.clone(),
        QueryLimits {
            use_rollups: false,
            ..QueryLimits::default()
        },
    );
    let day0 = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
        .expect("time")
        .with_timezone(&Utc);
    // Five days, three records a day (one just before midnight), one file per day.
    let mut recs = Vec::new();
    for d in 0..5 {
        for (h, m) in [(0, 0), (12, 0), (23, 59)] {
            let mut r = rec("default", 1);
            r.created_at = day0 + chrono::Duration::days(d) + chrono::Duration::minutes(h * 60 + m);
            r.completed_at = r.created_at;
            recs.push(r);
        }
    }
    storage.append(recs).await.expect("append");
    storage.flush().await.expect("flush");

    let now = (day0 + chrono::Duration::days(5)).timestamp_micros();
    let run = |q: &'static str| {
        let engine = &engine;
        async move { engine.hql_at("default", q, now).await.expect(q) }
    };
    let all = run("requests | count").await;
    assert_eq!(all.stats.files_scanned, 5);
    for (q, files, rows) in [
        (
            "requests | where created_at >= datetime(2026-11-04) | count",
            2,
            6,
        ),
        (
            "requests | where created_at > datetime(2026-11-03 23:59) | count",
            3,
            6,
        ),
        (
            "requests | where created_at < datetime(2026-11-02) | count",
            1,
            3,
        ),
        (
            "requests | where created_at between (datetime(2026-11-02) .. datetime(2026-11-02 23:00)) | count",
            1,
            2,
        ),
        (
            "requests | where created_at > ago(1d) and status == 200 | count",
            1,
            2,
        ),
        (
            "requests | where created_at > ago(1d) or status == 200 | count",
            5,
            15,
        ),
        ("requests | where model == 'gpt-4o-mini' | count", 5, 15),
    ] {
        let out = run(q).await;
        assert_eq!(out.stats.files_scanned, files, "{q}");
        let n = out.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0);
        assert_eq!(n, rows, "{q}");
    }
}
