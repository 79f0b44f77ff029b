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
