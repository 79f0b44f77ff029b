//! Storage engine tests on a real local object store and a real WAL.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use chrono::{Duration, Utc};
use datafusion::prelude::SessionContext;
use loupe_model::RequestRecord;
use loupe_storage::{Storage, StorageConfig, StorageError};
use uuid::Uuid;

fn config(dir: &Path) -> StorageConfig {
    StorageConfig {
        data_dir: dir.to_path_buf(),
        flush_interval_ms: 3_600_000, // tests flush explicitly
        compact_interval_secs: 0,
        ..StorageConfig::default()
    }
}

fn record(i: usize) -> RequestRecord {
    let mut r = RequestRecord::new(
        Uuid::new_v4(),
        if i.is_multiple_of(2) {
            "default"
        } else {
            "acme"
        },
        Utc::now() - Duration::minutes(i as i64),
    );
    r.model = "gpt-4o-mini".into();
    r.provider = "openai".into();
    r.prompt_tokens = i as i64;
    r.properties.insert("env".into(), format!("e{}", i % 3));
    r
}

/// A session that sees the Delta table `t` as the table `t`.
async fn session_with(t: &deltalake::DeltaTable) -> SessionContext {
    let ctx = SessionContext::new();
    t.update_datafusion_session(&ctx.state()).expect("session");
    ctx.register_table("t", t.table_provider().await.expect("provider"))
        .expect("register");
    ctx
}

/// A whole Delta table as a DataFrame.
async fn read(t: &deltalake::DeltaTable) -> datafusion::dataframe::DataFrame {
    session_with(t).await.table("t").await.expect("read")
}

/// The rows of `query` over the Delta table `t` (named `t` in it).
async fn sql(t: &deltalake::DeltaTable, query: &str) -> Vec<arrow::array::RecordBatch> {
    let df = session_with(t).await.sql(query).await.expect("sql");
    df.collect().await.expect("collect")
}

/// Every request id visible to a reader, with how often it appears.
async fn visible_ids(s: &Storage) -> HashMap<String, usize> {
    let snap = s.snapshot();
    let mut batches = snap.pending.clone();
    if let Some(t) = &snap.table {
        batches.extend(
            read(t)
                .await
                .select_columns(&["request_id"])
                .expect("select")
                .collect()
                .await
                .expect("collect"),
        );
    }
    let mut out = HashMap::new();
    for b in batches {
        let ids = arrow::compute::cast(
            b.column_by_name("request_id").expect("col"),
            &DataType::Utf8,
        )
        .expect("cast");
        let ids = ids.as_string::<i32>();
        for i in 0..ids.len() {
            *out.entry(ids.value(i).to_string()).or_default() += 1;
        }
    }
    out
}

fn assert_exactly_once(ids: &HashMap<String, usize>, expected: &[RequestRecord]) {
    for r in expected {
        assert_eq!(
            ids.get(&r.request_id.to_string()),
            Some(&1),
            "record {} not exactly once",
            r.request_id
        );
    }
    assert_eq!(ids.len(), expected.len(), "unexpected extra records");
}

#[tokio::test]
async fn append_is_visible_before_and_after_flush() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Storage::open(config(dir.path())).await.expect("open");
    let recs: Vec<_> = (0..50).map(record).collect();
    let ack = s.append(recs.clone()).await.expect("append");
    assert_eq!((ack.accepted, ack.duplicates), (50, 0));
    assert_eq!(s.pending_rows(), 50);
    assert_exactly_once(&visible_ids(&s).await, &recs);
    s.flush().await.expect("flush");
    assert_eq!(s.pending_rows(), 0);
    assert_exactly_once(&visible_ids(&s).await, &recs);
    // Parquet files exist under Hive-style day partitions.
    let table_dir = dir.path().join("tables/requests");
    let parts: Vec<_> = std::fs::read_dir(&table_dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("day="))
        .collect();
    assert!(!parts.is_empty(), "no day= partitions in {parts:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn duplicates_are_ingested_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Storage::open(config(dir.path())).await.expect("open");
    let r = record(1);
    assert_eq!(
        s.append(vec![r.clone(), r.clone()])
            .await
            .expect("a")
            .accepted,
        1
    );
    let ack = s.append(vec![r.clone()]).await.expect("b");
    assert_eq!((ack.accepted, ack.duplicates), (0, 1));
    s.flush().await.expect("flush");
    s.shutdown().await;
    drop(s);
    // After a restart the id is still known (loaded back from the table).
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    assert_eq!(s.append(vec![r.clone()]).await.expect("c").duplicates, 1);
    assert_exactly_once(&visible_ids(&s).await, &[r]);
    s.shutdown().await;
}

#[tokio::test]
async fn gateway_records_stay_out_of_the_dedup_index() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Storage::open(config(dir.path())).await.expect("open");
    let gateway: Vec<_> = (0..200)
        .map(|i| {
            let mut r = record(i);
            r.source = loupe_model::Source::Gateway;
            r
        })
        .collect();
    let ingested: Vec<_> = (200..210).map(record).collect();
    let ack = s.append_unique(gateway[..100].to_vec()).await.expect("a");
    assert_eq!((ack.accepted, ack.duplicates), (100, 0));
    s.append(ingested.clone()).await.expect("b");
    assert_eq!(s.dedup_index_len(), 10, "only the ingested ids are indexed");
    s.flush().await.expect("flush");
    s.append_unique(gateway[100..].to_vec()).await.expect("c");
    // Ingested records are still deduplicated.
    assert_eq!(
        s.append(ingested[..3].to_vec())
            .await
            .expect("d")
            .duplicates,
        3
    );
    drop(s); // "crash": 100 gateway records in the table, 100 in the WAL only
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    assert_eq!(
        s.dedup_index_len(),
        10,
        "the rebuilt index skips gateway rows, flushed and replayed"
    );
    let mut all = gateway.clone();
    all.extend(ingested.clone());
    assert_exactly_once(&visible_ids(&s).await, &all);
    assert_eq!(
        s.append(ingested[..1].to_vec())
            .await
            .expect("e")
            .duplicates,
        1
    );
    s.shutdown().await;
}

#[tokio::test]
async fn unflushed_records_survive_a_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let recs: Vec<_> = (0..20).map(record).collect();
    {
        let s = Storage::open(config(dir.path())).await.expect("open");
        s.append(recs[..10].to_vec()).await.expect("append");
        s.flush().await.expect("flush");
        s.append(recs[10..].to_vec()).await.expect("append");
        // "crash": no shutdown, no flush; the runtime drops the flusher.
    }
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    assert_eq!(s.pending_rows(), 10);
    assert_exactly_once(&visible_ids(&s).await, &recs);
    s.flush().await.expect("flush");
    assert_exactly_once(&visible_ids(&s).await, &recs);
    s.shutdown().await;
}

#[tokio::test]
async fn wal_frames_already_in_the_table_are_not_replayed() {
    // Crash between the Delta commit and the WAL truncation: the WAL still holds flushed frames.
    let dir = tempfile::tempdir().expect("tmp");
    let recs: Vec<_> = (0..30).map(record).collect();
    let saved = tempfile::tempdir().expect("tmp2");
    {
        let s = Storage::open(config(dir.path())).await.expect("open");
        s.append(recs.clone()).await.expect("append");
        for e in std::fs::read_dir(dir.path().join("wal")).expect("wal") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), saved.path().join(e.file_name())).expect("copy");
        }
        s.flush().await.expect("flush");
        s.shutdown().await;
    }
    for e in std::fs::read_dir(saved.path()).expect("saved") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), dir.path().join("wal").join(e.file_name())).expect("restore");
    }
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    assert_eq!(s.pending_rows(), 0, "flushed frames were replayed");
    assert_exactly_once(&visible_ids(&s).await, &recs);
    s.shutdown().await;
}

#[tokio::test]
async fn torn_wal_tail_is_truncated_and_earlier_frames_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let recs: Vec<_> = (0..5).map(record).collect();
    {
        let s = Storage::open(config(dir.path())).await.expect("open");
        for r in &recs {
            s.append(vec![r.clone()]).await.expect("append");
        }
    }
    // Append half a frame of garbage to the newest segment, as a crash mid-write would.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path().join("wal"))
        .expect("wal")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    segs.sort();
    let last = segs.last().expect("segment");
    let mut bytes = std::fs::read(last).expect("read");
    let good_len = bytes.len();
    bytes.extend_from_slice(&[0x4c, 0x41, 0x57, 0x4c, 200, 0, 0, 0, 1, 2, 3]);
    std::fs::write(last, &bytes).expect("write");
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    assert_eq!(
        std::fs::metadata(last).expect("meta").len() as usize,
        good_len
    );
    assert_exactly_once(&visible_ids(&s).await, &recs);
    s.shutdown().await;
}

#[tokio::test]
async fn compaction_keeps_every_record_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Storage::open(config(dir.path())).await.expect("open");
    let mut all = Vec::new();
    for round in 0..5 {
        let recs: Vec<_> = (0..10).map(|i| record(round * 10 + i)).collect();
        s.append(recs.clone()).await.expect("append");
        s.flush().await.expect("flush");
        all.extend(recs);
    }
    let before = s
        .snapshot()
        .table
        .expect("table")
        .get_file_uris()
        .expect("files")
        .count();
    s.compact().await.expect("compact");
    let after = s
        .snapshot()
        .table
        .expect("table")
        .get_file_uris()
        .expect("files")
        .count();
    assert!(
        after < before,
        "compaction did not reduce files: {before} -> {after}"
    );
    assert_exactly_once(&visible_ids(&s).await, &all);
    s.shutdown().await;
}

#[tokio::test]
async fn over_budget_is_refused_and_nothing_is_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(dir.path());
    cfg.wal.disk_budget_bytes = 4096;
    let s = Storage::open(cfg).await.expect("open");
    let recs: Vec<_> = (0..200).map(record).collect();
    let err = s.append(recs.clone()).await.expect_err("must refuse");
    assert!(matches!(err, StorageError::OverBudget { .. }), "{err}");
    assert_eq!(err.kind(), loupe_model::ErrorKind::Unavailable);
    assert!(visible_ids(&s).await.is_empty());
    // The refused ids are not marked as seen: a retry once there is room is accepted.
    s.shutdown().await;
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    assert_eq!(s.append(recs.clone()).await.expect("retry").accepted, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn concurrent_appends_share_group_commits() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Storage::open(config(dir.path())).await.expect("open");
    let mut tasks = Vec::new();
    let mut all = Vec::new();
    for t in 0..16 {
        let recs: Vec<_> = (0..25).map(|i| record(t * 25 + i)).collect();
        all.extend(recs.clone());
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for r in recs {
                s.append(vec![r]).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_exactly_once(&visible_ids(&s).await, &all);
    s.flush().await.expect("flush");
    assert_exactly_once(&visible_ids(&s).await, &all);
    s.shutdown().await;
}

#[tokio::test]
async fn request_ids_are_unique_per_org_not_globally() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Storage::open(config(dir.path())).await.expect("open");
    let a = record(0);
    let mut b = a.clone();
    b.org_id = "other-org".into();
    let ack = s.append(vec![a.clone(), b.clone()]).await.expect("append");
    assert_eq!((ack.accepted, ack.duplicates), (2, 0));
    s.flush().await.expect("flush");
    s.shutdown().await;
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    let ack = s.append(vec![a, b]).await.expect("again");
    assert_eq!((ack.accepted, ack.duplicates), (0, 2));
    s.shutdown().await;
}

#[tokio::test]
async fn retention_deletes_old_days_only() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(dir.path());
    cfg.retention_days = Some(3);
    cfg.dedup_window_hours = 24 * 30;
    let s = Storage::open(cfg).await.expect("open");
    let mut old: Vec<_> = (0..5).map(record).collect();
    for r in &mut old {
        r.created_at = Utc::now() - Duration::days(10);
        r.completed_at = r.created_at;
    }
    let recent: Vec<_> = (0..7).map(record).collect();
    s.append(old).await.expect("append");
    s.append(recent.clone()).await.expect("append");
    s.flush().await.expect("flush");
    s.apply_retention().await.expect("retention");
    assert_exactly_once(&visible_ids(&s).await, &recent);
    s.shutdown().await;
}

#[tokio::test]
async fn retried_old_records_are_stored_once_even_after_restart() {
    // created_at long before the dedup window (a backfill): still exactly once.
    let dir = tempfile::tempdir().expect("tmp");
    let mut old: Vec<_> = (0..20).map(record).collect();
    for (i, r) in old.iter_mut().enumerate() {
        r.created_at = Utc::now() - Duration::days(400 + i as i64);
        r.completed_at = r.created_at;
    }
    let s = Storage::open(config(dir.path())).await.expect("open");
    assert_eq!(s.append(old.clone()).await.expect("a").accepted, 20);
    assert_eq!(
        s.append(old.clone()).await.expect("b").duplicates,
        20,
        "from the index"
    );
    s.flush().await.expect("flush");
    s.shutdown().await;
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    let ack = s.append(old.clone()).await.expect("c");
    assert_eq!(
        (ack.accepted, ack.duplicates),
        (0, 20),
        "from the table after a restart"
    );
    // Unflushed old records are found after a crash too.
    let mut more: Vec<_> = (0..5).map(record).collect();
    for r in &mut more {
        r.created_at = Utc::now() - Duration::days(300);
        r.completed_at = r.created_at;
    }
    s.append(more.clone()).await.expect("d");
    drop(s);
    let s = Storage::open(config(dir.path())).await.expect("reopen2");
    assert_eq!(s.append(more.clone()).await.expect("e").duplicates, 5);
    let mut all = old;
    all.extend(more);
    assert_exactly_once(&visible_ids(&s).await, &all);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_flushes_racing_the_background_flusher_never_conflict() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(dir.path());
    cfg.flush_interval_ms = 5;
    cfg.flush_max_rows = 10;
    let s = Storage::open(cfg).await.expect("open");
    let mut all = Vec::new();
    for round in 0..20 {
        let recs: Vec<_> = (0..15).map(|i| record(round * 15 + i)).collect();
        s.append(recs.clone()).await.expect("append");
        all.extend(recs);
        s.flush()
            .await
            .expect("explicit flush must not conflict with the background one");
    }
    assert_exactly_once(&visible_ids(&s).await, &all);
    assert_eq!(
        s.stats()
            .flush_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    s.shutdown().await;
}

/// A large backfill of old records (past the in-memory dedup window) is checked against the
/// table in one go, without building a deep expression: no stack overflow, exact counts.
#[tokio::test]
async fn a_large_old_backfill_is_deduplicated_against_the_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut old: Vec<_> = (0..30_000).map(record).collect();
    for (i, r) in old.iter_mut().enumerate() {
        r.created_at = Utc::now() - Duration::days(10 + (i % 3) as i64);
        r.completed_at = r.created_at;
    }
    let s = Storage::open(config(dir.path())).await.expect("open");
    assert_eq!(
        s.append(old[..20_000].to_vec()).await.expect("a").accepted,
        20_000
    );
    s.flush().await.expect("flush");
    s.shutdown().await;
    // After a restart the index is empty for these days: the table answers.
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    let ack = s.append(old.clone()).await.expect("b");
    assert_eq!((ack.accepted, ack.duplicates), (10_000, 20_000));
    s.shutdown().await;
}

/// A data directory written before the gateway's resilience columns existed (`attempts`,
/// `attempt`, `fallback_index`, `cost_saved_usd`) opens, gains them, and reads old rows as nulls.
#[tokio::test]
async fn a_table_from_before_new_columns_opens_and_gains_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let old: Vec<_> = (0..4).map(record).collect();
    let new_cols = ["attempts", "attempt", "fallback_index", "cost_saved_usd"];
    {
        // The table as an older Loupe wrote it: the current batch minus the new columns.
        let batch = loupe_model::records_to_batch(&old).expect("batch");
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|i| !new_cols.contains(&batch.schema().field(*i).name().as_str()))
            .collect();
        let batch = batch.project(&keep).expect("project");
        let table_dir = dir.path().join("tables/requests");
        std::fs::create_dir_all(&table_dir).expect("dir");
        let url = url::Url::from_directory_path(&table_dir).expect("url");
        let table = deltalake::DeltaTableBuilder::from_url(url)
            .expect("builder")
            .build()
            .expect("table");
        table
            .write(vec![batch])
            .with_partition_columns(["day"])
            .await
            .expect("old write");
    }
    let s = Storage::open(config(dir.path()))
        .await
        .expect("open old dir");
    let snap = s.snapshot();
    let schema = snap
        .table
        .as_ref()
        .expect("table")
        .snapshot()
        .expect("state")
        .schema();
    for c in new_cols {
        assert!(schema.field(c).is_some(), "{c} added on open");
    }
    let mut newer = record(10);
    newer.attempt = Some(2);
    newer.fallback_index = Some(1);
    newer.cost_saved_usd = Some("0.5".parse().expect("decimal"));
    newer.attempts = vec![loupe_model::Attempt {
        attempt: 1,
        fallback_index: 0,
        provider: "openai".into(),
        model: "gpt-4o".into(),
        status: 503,
        error_type: Some("http_503".into()),
        error: None,
        latency_ms: 3,
        backoff_ms: 0,
    }];
    s.append(vec![newer.clone()]).await.expect("append");
    s.flush().await.expect("flush into the old table");
    let mut all = old.clone();
    all.push(newer.clone());
    assert_exactly_once(&visible_ids(&s).await, &all);

    let snap = s.snapshot();
    let t = snap.table.as_ref().expect("table");
    let rows = sql(
        t,
        "SELECT request_id, attempt, fallback_index, attempts FROM t WHERE attempt IS NOT NULL",
    )
    .await;
    let n: usize = rows.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, 1, "old rows read as nulls, the new one has its values");
    let attempts = arrow::compute::cast(rows[0].column(3), &DataType::Utf8).expect("cast");
    assert!(
        attempts
            .as_string::<i32>()
            .value(0)
            .contains("\"status\":503")
    );
    s.shutdown().await;
    // And it opens again.
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    assert_exactly_once(&visible_ids(&s).await, &all);
    s.shutdown().await;
}

fn span(i: usize, created: chrono::DateTime<Utc>) -> loupe_model::SpanRecord {
    let trace = format!("{:032x}", 0xabc0 + i / 4);
    let span_id = format!("{:016x}", 0x10 + i);
    loupe_model::SpanRecord {
        span_uid: Uuid::new_v5(
            &Uuid::NAMESPACE_OID,
            format!("{trace}:{span_id}").as_bytes(),
        ),
        org_id: "default".into(),
        trace_id: trace,
        span_id,
        parent_span_id: None,
        created_at: created,
        completed_at: created,
        duration_ms: 0,
        name: format!("task {i}"),
        kind: "internal".into(),
        status: "unset".into(),
        status_message: None,
        service_name: Some("svc".into()),
        scope_name: None,
        request_id: None,
        user_id: None,
        session_id: Some("s".into()),
        session_path: None,
        session_name: None,
        properties: Default::default(),
        attributes: "{}".into(),
        resource: "{}".into(),
        events: None,
        links: None,
    }
}

async fn span_names(s: &Storage) -> Vec<String> {
    let snap = s.snapshot();
    let mut batches = snap.pending.clone();
    if let Some(t) = &snap.table {
        batches.extend(read(t).await.collect().await.expect("collect"));
    }
    let mut out = Vec::new();
    for b in batches {
        let names = arrow::compute::cast(b.column_by_name("name").expect("name"), &DataType::Utf8)
            .expect("cast");
        let names = names.as_string::<i32>();
        out.extend((0..names.len()).map(|i| names.value(i).to_string()));
    }
    out.sort();
    out
}

#[tokio::test]
async fn spans_table_has_its_own_wal_table_and_dedup() {
    use loupe_storage::TableSpec;
    let dir = tempfile::tempdir().expect("tmp");
    let requests = Storage::open(config(dir.path()))
        .await
        .expect("open requests");
    let spans = Storage::open_table(config(dir.path()), TableSpec::SPANS)
        .await
        .expect("open spans");
    let now = Utc::now();
    // An old span (outside the dedup window) too: it is checked against the table on demand.
    let old = now - Duration::days(30);
    let batch: Vec<_> = (0..6).map(|i| span(i, now)).chain([span(6, old)]).collect();
    let ack = spans.append_spans(batch.clone()).await.expect("append");
    assert_eq!((ack.accepted, ack.duplicates), (7, 0));
    // Rows of the other table are refused, not mixed in.
    let err = spans
        .append(vec![record(0)])
        .await
        .expect_err("wrong table");
    assert!(
        err.to_string()
            .contains("requests rows cannot be stored in the spans table")
    );
    assert_eq!(requests.pending_rows(), 0);
    // Unflushed spans survive a restart (WAL replay) and are not stored twice.
    spans.shutdown().await;
    drop(spans);
    let spans = Storage::open_table(config(dir.path()), TableSpec::SPANS)
        .await
        .expect("reopen");
    assert_eq!(span_names(&spans).await.len(), 7);
    assert!(dir.path().join("tables/spans").is_dir());
    assert!(dir.path().join("wal-spans").is_dir());
    assert!(!dir.path().join("tables/spans_hourly").exists());
    spans.flush().await.expect("flush");
    assert!(spans.snapshot().rollups.is_empty(), "spans have no roll-up");
    spans.shutdown().await;
    drop(spans);
    let spans = Storage::open_table(config(dir.path()), TableSpec::SPANS)
        .await
        .expect("reopen after flush");
    let again = spans.append_spans(batch).await.expect("re-send");
    assert_eq!((again.accepted, again.duplicates), (0, 7));
    let names = span_names(&spans).await;
    assert_eq!(names.len(), 7, "{names:?}");
    // The requests table is untouched, and a reader sees the spans without owning the WAL.
    assert!(visible_ids(&requests).await.is_empty());
    let snap = Storage::read_only_snapshot_of(&config(dir.path()), TableSpec::SPANS)
        .await
        .expect("read-only");
    assert!(snap.table.is_some());
    spans.shutdown().await;
    requests.shutdown().await;
}

/// Rows, files and `sum(n)` over the hourly rows of a roll-up table in step with the snapshot.
async fn rollup_stats(s: &Storage, table: &str) -> (usize, usize, i64) {
    let snap = s.snapshot();
    let t = snap
        .rollups
        .get(table)
        .unwrap_or_else(|| panic!("{table} in step"));
    let files = t.get_file_uris().expect("files").count();
    let b = sql(
        t,
        "SELECT count(*) AS rows, sum(CASE WHEN grain = 1 THEN n END) AS n FROM t",
    )
    .await;
    let rows = b[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let n = b[0]
        .column(1)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    (rows as usize, files, n)
}

#[tokio::test]
async fn compaction_merges_rollup_rows_into_whole_groups() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Storage::open(config(dir.path())).await.expect("open");
    // Ten flushes of the same hours, users and models: each appends its own partial groups.
    for _ in 0..10 {
        let recs: Vec<_> = (0..40)
            .map(|i| {
                let mut r = record(i);
                r.user_id = Some(format!("u{}", i % 3));
                r.latency_ms = 120;
                r
            })
            .collect();
        s.append(recs).await.expect("append");
        s.flush().await.expect("flush");
    }
    let tables = loupe_storage::rollup::ROLLUPS.iter().map(|r| r.table);
    let mut before = Vec::new();
    for t in tables.clone() {
        before.push(rollup_stats(&s, t).await);
    }
    s.compact().await.expect("compact");
    for (t, (rows, files, n)) in tables.zip(before) {
        let (rows2, files2, n2) = rollup_stats(&s, t).await;
        assert_eq!(n2, 400, "{t}: every request counted once");
        assert_eq!(n, n2, "{t}");
        assert!(rows2 * 5 <= rows, "{t}: {rows} rows -> {rows2}");
        assert!(
            files2 < files && files2 <= 2,
            "{t}: {files} files -> {files2}"
        );
    }
    // Still in step: a flush appends again, and a second compaction keeps the sums.
    s.append((0..5).map(record).collect())
        .await
        .expect("append");
    s.flush().await.expect("flush");
    s.compact().await.expect("compact");
    assert_eq!(rollup_stats(&s, "requests_hourly").await.2, 405);
    s.shutdown().await;
}

#[tokio::test]
async fn a_rollup_of_another_layout_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tmp");
    let recs: Vec<_> = (0..30).map(record).collect();
    let s = Storage::open(config(dir.path())).await.expect("open");
    s.append(recs).await.expect("append");
    s.flush().await.expect("flush");
    assert_eq!(
        s.snapshot().rollups.len(),
        loupe_storage::rollup::ROLLUPS.len()
    );
    let rows_before = rollup_stats(&s, "requests_hourly").await;
    s.shutdown().await;
    {
        // requests_hourly as an older Loupe wrote it (no cost_saved_usd), same WAL sequence.
        let url =
            url::Url::from_directory_path(dir.path().join("tables/requests_hourly")).expect("url");
        let t = deltalake::open_table(url).await.expect("open roll-up");
        let batches = read(&t)
            .await
            .drop_columns(&["cost_saved_usd"])
            .expect("drop")
            .collect()
            .await
            .expect("collect");
        t.write(batches)
            .with_save_mode(deltalake::protocol::SaveMode::Overwrite)
            .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
            .with_partition_columns(["day"])
            .await
            .expect("old layout");
    }
    let snap = Storage::read_only_snapshot(&config(dir.path()))
        .await
        .expect("read-only");
    assert!(snap.table.is_some());
    assert!(
        snap.rollups.get("requests_hourly").is_none(),
        "an older layout is not used"
    );
    assert!(snap.rollups.get("requests_latency_hourly").is_some());
    let s = Storage::open(config(dir.path())).await.expect("reopen");
    let mut waited = 0;
    while s.snapshot().rollups.get("requests_hourly").is_none() {
        assert!(waited < 500, "not rebuilt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
    let snap = s.snapshot();
    let schema = snap
        .rollups
        .get("requests_hourly")
        .expect("rebuilt")
        .snapshot()
        .expect("state")
        .schema();
    assert!(schema.field("cost_saved_usd").is_some());
    let rows_after = rollup_stats(&s, "requests_hourly").await;
    assert_eq!((rows_after.0, rows_after.2), (rows_before.0, rows_before.2));
    s.shutdown().await;
}
