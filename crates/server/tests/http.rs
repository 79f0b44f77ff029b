//! Black-box tests of the `loupe` binary over HTTP: each test starts its own server on
//! 127.0.0.1:0 with its own data directory, talks to it with reqwest, stops it and, where it
//! matters, opens the data directory to check what was stored.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{
    Loupe, client, metric, native_records, ndjson, parquet_files, run_loupe, stored_id_counts,
    stored_rows, trim_decimal,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NDJSON: &str = "application/x-ndjson";

async fn post(
    c: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let resp = c
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("response body");
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status} answer is not JSON ({e}): {text:?}"));
    (status, headers, v)
}

async fn metrics(c: &reqwest::Client, srv: &Loupe) -> String {
    let resp = c.get(srv.url("/metrics")).send().await.expect("metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text().await.expect("metrics body")
}

/// Asserts a JSON error answer and returns its message.
fn error_message(status: StatusCode, body: &Value, want: StatusCode, code: &str) -> String {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
        .to_string()
}

fn today_partition() -> String {
    format!("day={}", chrono::Utc::now().format("%Y-%m-%d"))
}

#[tokio::test]
async fn health_and_unknown_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Loupe::start(dir.path(), &[], &[]);
    let c = client();

    let resp = c.get(srv.url("/health")).send().await.expect("health");
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v, json!({"status": "ok"}));

    let resp = c.get(srv.url("/no/such/path")).send().await.expect("404");
    let status = resp.status();
    let v: Value = resp.json().await.expect("404 body is JSON");
    let msg = error_message(status, &v, StatusCode::NOT_FOUND, "not_found");
    assert!(!msg.is_empty());
    srv.sigterm_and_wait();
}

#[tokio::test]
async fn native_batches_are_stored_once_and_flushed_on_shutdown() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Loupe::start(
        dir.path(),
        &[],
        &[("LOUPE__STORAGE__FLUSH_INTERVAL_MS", "3600000")],
    );
    let c = client();

    let (ids, recs) = native_records(1000, "gpt-4o-mini");
    let body = ndjson(&recs);
    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, body.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 1000, "duplicates": 0}));

    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 0, "duplicates": 1000}));

    // A JSON array works too.
    let (ids2, recs2) = native_records(3, "gpt-4o-mini");
    let arr = serde_json::to_string(&recs2).expect("array");
    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), "application/json", arr.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 3, "duplicates": 0}));
    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), "application/json", arr).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 0, "duplicates": 3}));

    let m = metrics(&c, &srv).await;
    assert_eq!(
        metric(&m, "loupe_ingested_records_total"),
        Some(1003),
        "{m}"
    );
    assert_eq!(
        metric(&m, "loupe_duplicate_records_total"),
        Some(1003),
        "{m}"
    );
    assert_eq!(metric(&m, "loupe_flushes_total"), Some(0), "{m}");

    // The flush interval is an hour: only the graceful shutdown can have written Parquet.
    srv.sigterm_and_wait();
    let day_dir = dir.path().join("tables/requests").join(today_partition());
    let files = parquet_files(&day_dir);
    assert!(
        !files.is_empty(),
        "no Parquet files under {}",
        day_dir.display()
    );

    let counts = stored_id_counts(dir.path()).await;
    let want: HashSet<String> = ids.iter().chain(&ids2).map(|u| u.to_string()).collect();
    let got: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(got, want, "stored ids differ from sent ids");
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dups.is_empty(), "ids stored more than once: {dups:?}");
}

#[tokio::test]
async fn bad_inputs_get_documented_errors_and_store_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Loupe::start(dir.path(), &[], &[]);
    let c = client();
    let ingest = srv.url("/v1/ingest");
    let now = chrono::Utc::now().to_rfc3339();
    let good = |extra: Value| {
        let mut r = json!({
            "request_id": uuid::Uuid::new_v4().to_string(),
            "created_at": now,
            "model": "gpt-4o-mini",
        });
        if let (Some(o), Value::Object(e)) = (r.as_object_mut(), extra) {
            o.extend(e);
        }
        r
    };
    let line = |v: &Value| format!("{v}\n");

    // Malformed JSON: the second NDJSON line is cut off.
    let body = format!(
        "{}{{\"created_at\": \"{now}\", \"model\": \n",
        line(&good(json!({})))
    );
    let (st, _, v) = post(&c, &ingest, NDJSON, body).await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        msg.contains("line 2") && msg.contains("malformed JSON"),
        "{msg}"
    );
    assert_eq!(v["error"]["problems"][0]["index"], 2, "{v}");

    // Wrong type.
    let (st, _, v) = post(
        &c,
        &ingest,
        NDJSON,
        line(&good(json!({"prompt_tokens": "many"}))),
    )
    .await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(msg.contains("prompt_tokens"), "{msg}");
    assert_eq!(v["error"]["problems"][0]["index"], 1, "{v}");
    assert_eq!(
        v["error"]["problems"][0]["path"], "line 1, prompt_tokens",
        "{v}"
    );

    // Unknown field with a hint.
    let (st, _, v) = post(&c, &ingest, NDJSON, line(&good(json!({"prompt_token": 3})))).await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(msg.contains("prompt_token"), "{msg}");
    assert!(msg.contains(r#"did you mean "prompt_tokens""#), "{msg}");

    // Missing created_at.
    let mut r = good(json!({}));
    r.as_object_mut().expect("object").remove("created_at");
    let (st, _, v) = post(&c, &ingest, "application/json", r.to_string()).await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(msg.contains("created_at: missing"), "{msg}");
    assert_eq!(v["error"]["problems"][0]["index"], Value::Null, "{v}");

    // Invalid UTF-8.
    let mut bytes = line(&good(json!({"user_id": "XX"}))).into_bytes();
    let at = bytes.windows(2).position(|w| w == b"XX").expect("marker");
    bytes[at] = 0xff;
    bytes[at + 1] = 0xfe;
    let (st, _, v) = post(&c, &ingest, NDJSON, bytes).await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        msg.contains("line 1") && msg.contains("not valid UTF-8"),
        "{msg}"
    );

    // Helicone: start after end.
    let mut h = helicone_body(uuid::Uuid::new_v4());
    h["timing"]["startTime"]["seconds"] = json!(1735689700);
    let (st, _, v) = post(
        &c,
        &srv.url("/oai/v1/log"),
        "application/json",
        h.to_string(),
    )
    .await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        msg.contains("timing.endTime") && msg.contains("before the start"),
        "{msg}"
    );

    // Helicone: no timing at all.
    let mut h = helicone_body(uuid::Uuid::new_v4());
    h.as_object_mut().expect("object").remove("timing");
    let (st, _, v) = post(
        &c,
        &srv.url("/oai/v1/log"),
        "application/json",
        h.to_string(),
    )
    .await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        msg.contains("timing: missing") && msg.contains("startTime"),
        "{msg}"
    );

    // Too many properties (201 > default 200).
    let props: serde_json::Map<String, Value> =
        (0..201).map(|i| (format!("p{i}"), json!("v"))).collect();
    let body = good(json!({ "properties": props })).to_string();
    let (st, _, v) = post(&c, &ingest, "application/json", body).await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(msg.contains("ingest.max_properties"), "{msg}");

    // One bad record among good ones: nothing of the batch is stored.
    let batch = [
        good(json!({})),
        good(json!({})),
        good(json!({"status": "ok"})),
        good(json!({})),
    ];
    let (st, _, v) = post(&c, &ingest, NDJSON, ndjson(&batch)).await;
    let msg = error_message(st, &v, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(msg.contains("status"), "{msg}");
    assert_eq!(v["error"]["problems"][0]["index"], 3, "{v}");

    let m = metrics(&c, &srv).await;
    assert_eq!(metric(&m, "loupe_ingested_records_total"), Some(0), "{m}");
    assert_eq!(metric(&m, "loupe_duplicate_records_total"), Some(0), "{m}");
    srv.sigterm_and_wait();
    assert!(stored_id_counts(dir.path()).await.is_empty());
}

#[tokio::test]
async fn oversize_body_gets_413() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Loupe::start(
        dir.path(),
        &[],
        &[("LOUPE__SERVER__MAX_BODY_BYTES", "1000")],
    );
    let c = client();
    let (_, recs) = native_records(1, "gpt-4o-mini");
    let small = ndjson(&recs);
    assert!(small.len() < 1000);
    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, small).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    let (_, recs) = native_records(40, "gpt-4o-mini");
    let mut big = ndjson(&recs).into_bytes();
    assert!(big.len() >= 5000, "{}", big.len());
    big.truncate(5000);
    for (path, ct) in [("/v1/ingest", NDJSON), ("/oai/v1/log", "application/json")] {
        let (st, _, v) = post(&c, &srv.url(path), ct, big.clone()).await;
        let msg = error_message(st, &v, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        assert!(msg.contains("server.max_body_bytes"), "{path}: {msg}");
    }
    let m = metrics(&c, &srv).await;
    assert_eq!(metric(&m, "loupe_ingested_records_total"), Some(1), "{m}");
    srv.sigterm_and_wait();
}

#[tokio::test]
async fn unknown_model_has_null_cost() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Loupe::start(dir.path(), &[], &[]);
    let c = client();
    let (ids, recs) = native_records(1, "acme/no-such-model-xyz");
    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, ndjson(&recs)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 1, "duplicates": 0}));
    srv.sigterm_and_wait();

    let rows = stored_rows(dir.path()).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[&ids[0].to_string()];
    assert_eq!(row["provider"], "acme", "{row}");
    assert_eq!(row["model"], "acme/no-such-model-xyz", "{row}");
    assert_eq!(row["prompt_tokens"], 10, "{row}");
    assert_eq!(row["cost_usd"], Value::Null, "{row}");
    assert_eq!(row["price_known"], false, "{row}");
}

/// The full example body of Helicone's async-log API (docs: reference/helicone.md §2.3), sent
/// to the OpenAI route, with a request id in meta.
fn helicone_body(request_id: uuid::Uuid) -> Value {
    json!({
      "providerRequest": {
        "url": "https://api.openai.com/v1/chat/completions",
        "json": { "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "Summarize RFC 9110" }], "stream": false },
        "meta": { "Helicone-User-Id": "u_42", "Helicone-Session-Id": "0b7f3c1e-5d2a-4c1b-9f7e-2a6d1c9e8b10",
                  "Helicone-Session-Path": "/summarize", "Helicone-Property-Env": "prod",
                  "Helicone-Request-Id": request_id.to_string() }
      },
      "providerResponse": {
        "status": 200,
        "headers": { "content-type": "application/json" },
        "json": { "id": "r1", "choices": [{ "message": { "role": "assistant", "content": "HTTP semantics..." } }],
                  "usage": { "prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52 } }
      },
      "timing": { "startTime": { "seconds": 1735689600, "milliseconds": 120 },
                  "endTime":   { "seconds": 1735689601, "milliseconds": 480 }, "timeToFirstToken": 210 }
    })
}

#[tokio::test]
async fn helicone_async_log_is_stored_with_exact_cost() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Loupe::start(dir.path(), &[], &[]);
    let c = client();
    let id = uuid::Uuid::new_v4();
    let body = helicone_body(id).to_string();
    let (st, _, v) = post(&c, &srv.url("/oai/v1/log"), "application/json", body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"accepted": 1, "duplicates": 0, "request_id": id.to_string()})
    );
    // Helicone clients retry: the same log again is a duplicate. (With a recent start time: ids
    // are deduplicated only within storage.dedup_window_hours of their created_at.)
    let recent_id = uuid::Uuid::new_v4();
    let mut recent = helicone_body(recent_id);
    let now = chrono::Utc::now().timestamp();
    recent["timing"]["startTime"]["seconds"] = json!(now - 2);
    recent["timing"]["endTime"]["seconds"] = json!(now - 1);
    let recent = recent.to_string();
    for (accepted, duplicates) in [(1, 0), (0, 1)] {
        let (st, _, v) = post(
            &c,
            &srv.url("/oai/v1/log"),
            "application/json",
            recent.clone(),
        )
        .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(
            v,
            json!({"accepted": accepted, "duplicates": duplicates, "request_id": recent_id.to_string()})
        );
    }
    srv.sigterm_and_wait();

    let rows = stored_rows(dir.path()).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = &rows[&id.to_string()];
    assert_eq!(row["org_id"], "default", "{row}");
    assert_eq!(row["provider"], "openai", "{row}");
    assert_eq!(row["model"], "gpt-4o-mini", "{row}");
    assert_eq!(row["path"], "/v1/chat/completions", "{row}");
    assert_eq!(row["status"], 200, "{row}");
    assert_eq!(row["user_id"], "u_42", "{row}");
    assert_eq!(
        row["session_id"], "0b7f3c1e-5d2a-4c1b-9f7e-2a6d1c9e8b10",
        "{row}"
    );
    assert_eq!(row["session_path"], "/summarize", "{row}");
    assert_eq!(row["properties"], json!({"env": "prod"}), "{row}");
    assert_eq!(row["prompt_tokens"], 12, "{row}");
    assert_eq!(row["completion_tokens"], 40, "{row}");
    assert_eq!(row["total_tokens"], 52, "{row}");
    assert_eq!(row["latency_ms"], 1360, "{row}");
    assert_eq!(row["ttft_ms"], 210, "{row}");
    assert_eq!(row["stream"], false, "{row}");
    assert_eq!(row["source"], "async", "{row}");
    assert_eq!(row["price_known"], true, "{row}");
    // 12 × 0.00000015 + 40 × 0.0000006 = 0.0000018 + 0.000024, exactly.
    let cost = row["cost_usd"].as_str().expect("cost is set");
    assert_eq!(trim_decimal(cost), "0.0000258", "{row}");
    let created = row["created_at"].as_str().expect("created_at");
    assert!(created.starts_with("2025-01-01T00:00:00.120"), "{created}");
}

fn keys_create(data_dir: &std::path::Path, org: &str) -> String {
    let d = data_dir.to_str().expect("utf-8 path");
    let (st, out, err) = run_loupe(&["keys", "create", "--org", org, "--data-dir", d], &[]);
    assert!(st.success(), "keys create failed ({st}): {err}");
    let key = out.trim().to_string();
    assert!(key.starts_with("sk-loupe-"), "{out:?} / {err}");
    key
}

#[tokio::test]
async fn api_keys_authenticate_and_choose_the_org() {
    let dir = tempfile::tempdir().expect("tmp");
    let key = keys_create(dir.path(), "acme");
    let keys_json = std::fs::read_to_string(dir.path().join("keys.json")).expect("keys.json");
    assert!(!keys_json.contains(&key), "raw key in keys.json");
    assert!(keys_json.contains("acme"));

    let srv = Loupe::start(dir.path(), &[], &[]);
    let c = client();
    let ingest = srv.url("/v1/ingest");
    let (ids, recs) = native_records(2, "gpt-4o-mini");
    let body = ndjson(&recs);

    let send = |auth: Option<(&'static str, String)>, url: String, body: String| {
        let c = c.clone();
        async move {
            let mut rb = c.post(&url).header("content-type", NDJSON).body(body);
            if let Some((h, v)) = auth {
                rb = rb.header(h, v);
            }
            let resp = rb.send().await.expect("send");
            let st = resp.status();
            let v: Value = resp.json().await.expect("json");
            (st, v)
        }
    };

    let (st, v) = send(None, ingest.clone(), body.clone()).await;
    let msg = error_message(st, &v, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(msg.contains("API key"), "{msg}");
    let (st, v) = send(
        Some(("authorization", "Bearer sk-loupe-wrong".into())),
        ingest.clone(),
        body.clone(),
    )
    .await;
    error_message(st, &v, StatusCode::UNAUTHORIZED, "unauthenticated");

    let (st, v) = send(
        Some(("authorization", format!("Bearer {key}"))),
        ingest.clone(),
        body.clone(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 2, "duplicates": 0}));

    // Helicone-Auth on the Helicone custom route.
    let hid = uuid::Uuid::new_v4();
    let mut h = helicone_body(hid);
    h["providerRequest"]["url"] = json!("custom-model-nopath");
    let (st, v) = send(
        Some(("helicone-auth", format!("Bearer {key}"))),
        srv.url("/custom/v1/log"),
        h.to_string(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["request_id"], hid.to_string(), "{v}");
    let (st, v) = send(None, srv.url("/custom/v1/log"), h.to_string()).await;
    error_message(st, &v, StatusCode::UNAUTHORIZED, "unauthenticated");

    // A key created while the server runs works at once.
    let key2 = keys_create(dir.path(), "globex");
    let (ids2, recs2) = native_records(1, "gpt-4o-mini");
    let (st, v) = send(
        Some(("authorization", format!("Bearer {key2}"))),
        ingest.clone(),
        ndjson(&recs2),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // …and the first one still does.
    let (st, v) = send(
        Some(("authorization", format!("Bearer {key}"))),
        ingest.clone(),
        body,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 0, "duplicates": 2}));
    srv.sigterm_and_wait();

    let keys_json = std::fs::read_to_string(dir.path().join("keys.json")).expect("keys.json");
    assert!(!keys_json.contains(&key) && !keys_json.contains(&key2));

    let rows = stored_rows(dir.path()).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    for id in &ids {
        assert_eq!(rows[&id.to_string()]["org_id"], "acme");
    }
    assert_eq!(rows[&hid.to_string()]["org_id"], "acme");
    assert_eq!(rows[&ids2[0].to_string()]["org_id"], "globex");
}

#[test]
fn non_loopback_listen_without_keys_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("utf-8 path");
    let mut p = common::Proc::spawn(&["serve", "--listen", "0.0.0.0:0", "--data-dir", d], &[]);
    let st = p.wait_exit(Duration::from_secs(30));
    // If it started anyway, `p` is killed on drop.
    let Some(st) = st else {
        panic!(
            "loupe kept running on 0.0.0.0 without keys; stderr:\n{}",
            p.stderr_text()
        );
    };
    p.wait_stderr_closed(Duration::from_secs(5));
    let err = p.stderr_text();
    assert!(!st.success(), "{err}");
    assert!(err.contains("API keys"), "{err}");
    assert!(!err.contains("loupe listening on"), "{err}");
}

#[tokio::test]
async fn config_file_and_env_overrides() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("utf-8 path");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[storage]\nflush_intervall_ms = 5\n").expect("write config");
    let cfg_s = cfg.to_str().expect("utf-8 path");
    let (st, _, err) = run_loupe(
        &[
            "serve",
            "--config",
            cfg_s,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!st.success(), "{err}");
    assert!(err.contains("flush_intervall_ms"), "{err}");
    assert!(!err.contains("loupe listening on"), "{err}");

    // The environment is read: a bad value is refused…
    let (st, _, err) = run_loupe(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", d],
        &[("LOUPE__STORAGE__WAL__SYNC", "sometimes")],
    );
    assert!(!st.success(), "{err}");
    assert!(err.contains("sometimes"), "{err}");

    // …and a good one works.
    let srv = Loupe::start(
        dir.path(),
        &[],
        &[("LOUPE__STORAGE__WAL__SYNC", "buffered")],
    );
    let c = client();
    let (ids, recs) = native_records(5, "gpt-4o-mini");
    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, ndjson(&recs)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 5, "duplicates": 0}));
    srv.sigterm_and_wait();
    let counts = stored_id_counts(dir.path()).await;
    assert_eq!(counts.len(), 5);
    assert!(ids.iter().all(|id| counts.get(&id.to_string()) == Some(&1)));
}

#[tokio::test]
async fn over_disk_budget_answers_503_and_keeps_what_was_acked() {
    let dir = tempfile::tempdir().expect("tmp");
    let envs = [
        ("LOUPE__STORAGE__WAL__DISK_BUDGET_BYTES", "20000"),
        ("LOUPE__STORAGE__FLUSH_INTERVAL_MS", "3600000"),
    ];
    let srv = Loupe::start(dir.path(), &[], &envs);
    let c = client();
    let mut acked: Vec<String> = Vec::new();
    let mut acked_body = None;
    let mut rejected = None;
    for _ in 0..200 {
        let (ids, recs) = native_records(10, "gpt-4o-mini");
        let body = ndjson(&recs);
        let (st, headers, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, body.clone()).await;
        if st == StatusCode::OK {
            assert_eq!(v, json!({"accepted": 10, "duplicates": 0}));
            acked.extend(ids.iter().map(|u| u.to_string()));
            acked_body = Some(body);
            continue;
        }
        let msg = error_message(st, &v, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        let retry = headers
            .get(reqwest::header::RETRY_AFTER)
            .unwrap_or_else(|| panic!("503 without Retry-After: {msg}"));
        let secs: u64 = retry
            .to_str()
            .expect("ascii")
            .parse()
            .expect("Retry-After in seconds");
        assert!(secs >= 1, "{secs}");
        rejected = Some((ids, body));
        break;
    }
    let Some((rejected_ids, rejected_body)) = rejected else {
        panic!("no 503 after 200 batches ({} records acked)", acked.len());
    };
    assert!(!acked.is_empty(), "the first batch must fit the budget");
    // Still over budget: the same answer again, and nothing of it is kept.
    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, rejected_body.clone()).await;
    error_message(st, &v, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let m = metrics(&c, &srv).await;
    assert_eq!(
        metric(&m, "loupe_ingested_records_total"),
        Some(acked.len() as u64),
        "{m}"
    );

    // Crash, then restart with a normal budget: everything acked is there and the rejected batch
    // can now be sent again.
    srv.sigkill();
    let srv = Loupe::start(dir.path(), &[], &[]);
    let (st, _, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, rejected_body).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 10, "duplicates": 0}));
    let (st, _, v) = post(
        &c,
        &srv.url("/v1/ingest"),
        NDJSON,
        acked_body.expect("an acked batch"),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"accepted": 0, "duplicates": 10}));
    srv.sigterm_and_wait();

    let counts = stored_id_counts(dir.path()).await;
    let want: HashSet<String> = acked
        .iter()
        .cloned()
        .chain(rejected_ids.iter().map(|u| u.to_string()))
        .collect();
    let got: HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(got, want);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

/// docs/ingest.md: "If a request times out … send the same body again. Records that carry a
/// `request_id` are deduplicated, so nothing is stored twice." Storage deduplicates only ids whose
/// `created_at` is within `storage.dedup_window_hours` (48 h) of now, so a retried backfill of
/// older records is stored twice. Ignored until the docs or the storage change.
#[tokio::test]
async fn retried_backfill_of_old_records_is_stored_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let srv = Loupe::start(dir.path(), &[], &[]);
    let c = client();
    let id = uuid::Uuid::new_v4();
    let rec = json!({"request_id": id.to_string(), "created_at": "2025-01-01T12:00:00Z",
                     "model": "gpt-4o-mini", "prompt_tokens": 1});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (st, _, v) = post(&c, &srv.url("/v1/ingest"), NDJSON, format!("{rec}\n")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        answers.push(v);
    }
    srv.sigterm_and_wait();
    let counts = stored_id_counts(dir.path()).await;
    assert_eq!(
        counts.get(&id.to_string()),
        Some(&1),
        "answers: {answers:?}"
    );
}
