//! Every dashboard query in queries/*.hql runs against a fixed dataset (half of it flushed to
//! Parquet, half still in the memtable) and must give the snapshotted result; the snapshots were
//! checked by hand against the generator's dataset. A second org's rows must never leak in.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use loupe_model::PriceTable;
use loupe_query::{QueryEngine, QueryLimits, format};
use loupe_storage::{Storage, StorageConfig};
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

    let engine = QueryEngine::new(storage.clone(), QueryLimits::default());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../queries");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("queries/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 9, "queries/ has {} files", files.len());
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
}
