//! HQL over HTTP and the `loupe query` CLI, against the real binary.

mod common;

use common::{Loupe, client, native_records, ndjson, run_loupe};
use serde_json::{Value, json};

async fn hql(
    l: &Loupe,
    key: Option<&str>,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = client().post(l.url("/v1/hql")).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

#[tokio::test]
async fn hql_answers_in_json_csv_and_arrow_and_explains() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(dir.path(), &[], &[]);
    let (_, recs) = native_records(50, "gpt-4o-mini");
    let r = client()
        .post(l.url("/v1/ingest"))
        .body(ndjson(&recs))
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), 200);

    let q = "requests | summarize n = count(), tokens = sum(prompt_tokens) by model";
    let (s, _, body) = hql(&l, None, json!({ "query": q })).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["columns"][0], json!({"name": "model", "type": "string"}));
    assert_eq!(v["columns"][1]["name"], "n");
    assert_eq!(v["rows"][0][0], "gpt-4o-mini");
    assert_eq!(
        v["rows"][0][1], 50,
        "all 50 acknowledged records are visible at once"
    );
    assert_eq!(v["stats"]["rows"], 1);
    assert!(v["stats"]["elapsed_ms"].as_f64().is_some());

    let (s, h, body) = hql(&l, None, json!({ "query": q, "format": "csv" })).await;
    assert_eq!(s, 200);
    assert!(
        h["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/csv")
    );
    let text = String::from_utf8(body).expect("utf8");
    assert!(
        text.starts_with("model,n,tokens\ngpt-4o-mini,50,"),
        "{text}"
    );

    let (s, h, body) = hql(&l, None, json!({ "query": q, "format": "arrow" })).await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], "application/vnd.apache.arrow.stream");
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).expect("ipc");
    let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
    assert_eq!(rows, 1);

    let r = client()
        .post(l.url("/v1/hql/explain"))
        .json(&json!({ "query": q }))
        .send()
        .await
        .expect("explain");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    let logical = v["logical"].as_str().expect("logical");
    assert!(
        logical.contains("org_id = Utf8(\"default\")") || logical.contains("org_id ="),
        "{logical}"
    );
    assert!(v["physical"].as_str().is_some_and(|p| !p.is_empty()));
    l.sigterm_and_wait();
}

#[tokio::test]
async fn hql_errors_are_precise_and_limits_answer_422() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(dir.path(), &[], &[("LOUPE__QUERY__MAX_ROWS", "10")]);
    let (_, recs) = native_records(30, "gpt-4o-mini");
    client()
        .post(l.url("/v1/ingest"))
        .body(ndjson(&recs))
        .send()
        .await
        .expect("ingest");

    let (s, _, body) = hql(
        &l,
        None,
        json!({ "query": "requests\n| where modle == \"x\"" }),
    )
    .await;
    assert_eq!(s, 400);
    let v: Value = serde_json::from_slice(&body).expect("json");
    let e = &v["error"];
    assert_eq!(e["code"], "hql.unknown_column");
    assert_eq!(
        (e["line"].as_u64(), e["column"].as_u64()),
        (Some(2), Some(9))
    );
    assert_eq!(e["span"], json!([17, 22]));
    assert!(
        e["hint"].as_str().is_some_and(|h| h.contains("model")),
        "{e}"
    );

    let (s, _, body) = hql(
        &l,
        None,
        json!({ "query": "requests | take 5", "format": "xml" }),
    )
    .await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));

    let (s, _, body) = hql(&l, None, json!({ "query": "requests" })).await;
    assert_eq!(s, 422);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], "hql.too_many_rows");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("query.max_rows"))
    );
    let (s, _, _) = hql(&l, None, json!({ "query": "requests | take 10" })).await;
    assert_eq!(s, 200, "exactly max_rows is fine");

    // The CLI prints the error with a caret.
    let url = l.url("");
    let (status, _out, err) = run_loupe(
        &[
            "query",
            "--server",
            url.trim_end_matches('/'),
            "requests | where modle == 1",
        ],
        &[],
    );
    assert!(!status.success());
    assert!(
        err.contains("^^^^^") && err.contains("did you mean"),
        "{err}"
    );
    l.sigterm_and_wait();
}

#[tokio::test]
async fn each_key_sees_only_its_org() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("path");
    let (_, a, _) = run_loupe(&["keys", "create", "--org", "acme", "--data-dir", d], &[]);
    let (_, b, _) = run_loupe(&["keys", "create", "--org", "globex", "--data-dir", d], &[]);
    let (ka, kb) = (a.trim().to_string(), b.trim().to_string());
    let l = Loupe::start(dir.path(), &[], &[]);
    for (k, n) in [(&ka, 7usize), (&kb, 3)] {
        let (_, recs) = native_records(n, "gpt-4o-mini");
        let r = client()
            .post(l.url("/v1/ingest"))
            .bearer_auth(k)
            .body(ndjson(&recs))
            .send()
            .await
            .expect("ingest");
        assert_eq!(r.status(), 200);
    }
    for (k, n) in [(&ka, 7), (&kb, 3)] {
        let q = json!({ "query": "requests | where org_id != \"nobody\" or true | count" });
        let (s, _, body) = hql(&l, Some(k), q).await;
        assert_eq!(s, 200);
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["rows"][0][0], n);
    }
    let (s, _, _) = hql(&l, None, json!({ "query": "requests | count" })).await;
    assert_eq!(s, 401);
    l.sigterm_and_wait();
}

/// `loupe query --data-dir` reads a data directory directly: while a server owns it (records
/// still in the WAL included) and after the server stopped (records flushed), with the same
/// answer, per org, and with caret errors.
#[tokio::test]
async fn query_reads_a_data_directory_directly() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("path");
    let (_, a, _) = run_loupe(&["keys", "create", "--org", "acme", "--data-dir", d], &[]);
    let key = a.trim().to_string();
    // A long flush interval: the records stay in the WAL while the server runs.
    let l = Loupe::start(
        dir.path(),
        &[],
        &[("LOUPE__STORAGE__FLUSH_INTERVAL_MS", "3600000")],
    );
    let (_, recs) = native_records(9, "gpt-4o-mini");
    let r = client()
        .post(l.url("/v1/ingest"))
        .bearer_auth(&key)
        .body(ndjson(&recs))
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status(), 200);
    let count = |org: &str| {
        let (status, out, err) = run_loupe(
            &[
                "query",
                "--data-dir",
                d,
                "--org",
                org,
                "--format",
                "csv",
                "requests | summarize n = count(), t = sum(prompt_tokens)",
            ],
            &[],
        );
        assert!(status.success(), "{err}");
        out
    };
    let want_tokens: i64 = recs
        .iter()
        .map(|r| r["prompt_tokens"].as_i64().unwrap_or(0))
        .sum();
    let want = format!("n,t\n9,{want_tokens}\n");
    assert_eq!(count("acme"), want, "from the WAL of a running server");
    assert_eq!(count("default"), "n,t\n0,\n");
    l.sigterm_and_wait();
    assert!(
        std::fs::read_dir(dir.path().join("tables/requests"))
            .map(|mut e| e
                .any(|f| f.is_ok_and(|f| f.file_name().to_string_lossy().starts_with("day="))))
            .unwrap_or(false),
        "the server flushed on shutdown"
    );
    assert_eq!(count("acme"), want, "from Parquet");

    let (status, _, err) = run_loupe(&["query", "--data-dir", d, "requests | take modle"], &[]);
    assert!(!status.success());
    assert!(err.contains('^'), "{err}");
    let missing = dir.path().join("nope");
    let (status, _, err) = run_loupe(
        &[
            "query",
            "--data-dir",
            missing.to_str().expect("path"),
            "requests | count",
        ],
        &[],
    );
    assert!(!status.success());
    assert!(err.contains("no Loupe data directory"), "{err}");
}
