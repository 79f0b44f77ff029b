//! Every dashboard query in queries/*.hql runs against a fixed dataset (half of it flushed to
//! Parquet, half still in the memtable) and must give the snapshotted result; the snapshots were
//! checked by hand against the generator's dataset. A second org's rows must never leak in.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use loupe_model::{PriceTable, SpanRecord};
use loupe_query::{QueryEngine, QueryLimits, format};
use loupe_storage::{Storage, StorageConfig, TableSpec};
use loupe_testkit::{GenOptions, Generator};

/// Debug builds put DataFusion's large futures on the stack: give the test the same 8 MiB stacks
/// the server's runtime uses.
#[test]
fn dashboard_queries_give_their_expected_results() {
    let run = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(8 << 20)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(Box::pin(dashboard_queries()))
    };
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(run)
        .expect("thread")
        .join()
        .expect("test panicked");
}

async fn dashboard_queries() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = Storage::open(StorageConfig {
        data_dir: dir.path().to_path_buf(),
        flush_interval_ms: 3_600_000,
        compact_interval_secs: 0,
        ..StorageConfig::default()
    })
    .await
    .expect("open");
    let prices = Arc::new(PriceTable::bundled().expect("prices"));
    let now = Utc
        .with_ymd_and_hms(2026, 11, 20, 12, 0, 0)
        .single()
        .expect("time");
    let opts = GenOptions {
        seed: 2026,
        start: now - chrono::Duration::days(10),
        span: chrono::Duration::days(10),
        count: 4000,
        orgs: vec!["default".into(), "other".into()],
        ..GenOptions::default()
    };
    let records: Vec<_> = Generator::new(opts, prices).collect();
    let (first, second) = records.split_at(records.len() / 2);
    storage.append(first.to_vec()).await.expect("append");
    storage.flush().await.expect("flush");
    storage.append(second.to_vec()).await.expect("append");

    let spans = Storage::open_table(
        StorageConfig {
            data_dir: dir.path().to_path_buf(),
            flush_interval_ms: 3_600_000,
            compact_interval_secs: 0,
            ..StorageConfig::default()
        },
        TableSpec::SPANS,
    )
    .await
    .expect("open spans");
    let rows: Vec<SpanRecord> = ["default", "other"]
        .iter()
        .flat_map(|org| (0..120).map(move |i| span_row(org, i, now)))
        .collect();
    let (first, second) = rows.split_at(rows.len() / 2);
    spans
        .append_spans(first.to_vec())
        .await
        .expect("append spans");
    spans.flush().await.expect("flush spans");
    spans
        .append_spans(second.to_vec())
        .await
        .expect("append spans");

    let engine =
        QueryEngine::new(storage.clone(), QueryLimits::default()).with_spans(spans.clone());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../queries");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("queries/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "queries/ has {} files", files.len());
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "hql"))
    {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let src = std::fs::read_to_string(path).expect("read");
        let out = engine
            .hql_at("default", &src, now.timestamp_micros())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.stats.rows > 0, "{name} returned no rows");
        let json = format::to_json(&out.schema, &out.batches).expect("json");
        insta::assert_json_snapshot!(name.clone(), json);
        // The other org's view differs (tenant scoping end to end through storage).
        let other = engine
            .hql_at("other", &src, now.timestamp_micros())
            .await
            .expect("other org");
        let other_json = format::to_json(&other.schema, &other.batches).expect("json");
        assert_ne!(json, other_json, "{name}: both orgs see the same result");
    }
    storage.shutdown().await;
    spans.shutdown().await;
}

/// A workflow step span, deterministic in `(org, i)`: names, durations and failures differ by org.
fn span_row(org: &str, i: u32, now: chrono::DateTime<Utc>) -> SpanRecord {
    const NAMES: [&str; 4] = [
        "search.tool",
        "fetch.tool",
        "rerank.task",
        "answer.workflow",
    ];
    let other = u32::from(org == "other");
    let name = NAMES[((i + other) % 4) as usize];
    let start = now - chrono::Duration::minutes(i64::from(i) * 37);
    let duration_ms = i64::from((i * 53 + other * 11) % 900 + 5);
    let trace_id = format!("{:032x}", u128::from(i / 4) + 1 + u128::from(other) * 1000);
    let span_id = format!("{:016x}", u64::from(i) + 1);
    SpanRecord {
        span_uid: uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("{org}:{trace_id}:{span_id}").as_bytes(),
        ),
        org_id: org.to_owned(),
        trace_id,
        span_id,
        parent_span_id: None,
        created_at: start,
        completed_at: start + chrono::Duration::milliseconds(duration_ms),
        duration_ms,
        name: name.to_owned(),
        kind: "internal".into(),
        status: if i.is_multiple_of(7 + other) {
            "error"
        } else {
            "unset"
        }
        .into(),
        status_message: None,
        service_name: Some("bot".into()),
        scope_name: None,
        // Every fifth span is an LLM call (left out by the query).
        request_id: (i % 5 == 4).then(|| uuid::Uuid::from_u128(u128::from(i))),
        user_id: None,
        session_id: Some(format!("s{}", i / 8)),
        session_path: None,
        session_name: None,
        properties: Default::default(),
        attributes: "{}".into(),
        resource: "{}".into(),
        events: None,
        links: None,
    }
}
