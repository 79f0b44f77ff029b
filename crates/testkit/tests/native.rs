//! Native ingest JSON / NDJSON output, provider-shaped bodies and the `loupe-gen` binary.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use loupe_model::{PriceTable, RequestRecord, Source, Usage, UsageShape};
use loupe_testkit::{GenOptions, Generator, record_to_native_json, write_ndjson};
use serde_json::{Value, json};

fn records(count: u64, with_bodies: bool) -> Vec<RequestRecord> {
    let prices = Arc::new(PriceTable::bundled().expect("bundled table"));
    let opts = GenOptions {
        seed: 11,
        start: DateTime::parse_from_rfc3339("2025-06-02T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc),
        span: Duration::days(2),
        count,
        orgs: vec!["acme".into(), "globex".into()],
        users: 200,
        with_bodies,
    };
    Generator::new(opts, prices).collect()
}

/// Every `RequestRecord` field name, from its serde form.
fn record_fields() -> BTreeSet<String> {
    let r = &records(1, false)[0];
    serde_json::to_value(r)
        .expect("serialize")
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn native_json_uses_record_field_names() {
    let fields = record_fields();
    let mut seen = BTreeSet::new();
    for r in records(3000, true) {
        let v = record_to_native_json(&r);
        let obj = v.as_object().expect("object");
        for k in obj.keys() {
            assert!(fields.contains(k), "unknown field {k}");
            assert!(
                !matches!(k.as_str(), "org_id" | "source" | "price_known"),
                "{k} must be left out (the server sets it)"
            );
            assert!(!obj[k].is_null(), "{k} is null; None fields are left out");
            seen.insert(k.clone());
        }
        for k in [
            "request_id",
            "created_at",
            "completed_at",
            "model",
            "provider",
            "status",
        ] {
            assert!(obj.contains_key(k), "{k} missing");
        }
        let created = obj["created_at"].as_str().expect("string");
        // RFC 3339, UTC, exactly six fractional digits.
        assert_eq!(
            created.len(),
            "2025-06-02T00:00:00.000000Z".len(),
            "{created}"
        );
        assert!(created.ends_with('Z'));
        assert_eq!(
            DateTime::parse_from_rfc3339(created).expect("rfc3339"),
            r.created_at
        );
        match (&r.cost_usd, obj.get("cost_usd")) {
            (Some(c), Some(Value::String(s))) => assert_eq!(s, &c.to_string()),
            (None, None) => {}
            other => panic!("cost_usd {other:?}"),
        }
    }
    // Over 3000 records every optional field shows up somewhere.
    let expected: BTreeSet<String> = fields
        .iter()
        .filter(|f| !matches!(f.as_str(), "org_id" | "source" | "price_known"))
        .cloned()
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn native_json_round_trips_to_the_record() {
    for r in records(2000, true) {
        let mut v = record_to_native_json(&r);
        // What the server adds back.
        v["org_id"] = json!(r.org_id);
        v["source"] = json!("async");
        v["price_known"] = json!(r.cost_usd.is_some());
        if v.get("properties").is_none() {
            v["properties"] = json!({});
        }
        let back: RequestRecord = serde_json::from_value(v).expect("deserialize");
        let mut expected = r.clone();
        expected.source = Source::Async;
        assert_eq!(back, expected);
    }
}

#[test]
fn ndjson_lines() {
    let recs = records(500, false);
    let mut buf = Vec::new();
    assert_eq!(write_ndjson(&recs, &mut buf).expect("write"), 500);
    let text = String::from_utf8(buf).expect("utf-8");
    assert!(text.ends_with('\n'));
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 500);
    for (line, r) in lines.iter().zip(&recs) {
        let v: Value = serde_json::from_str(line).expect("json line");
        assert_eq!(v, record_to_native_json(r));
    }
    // Owned records straight from a generator work too.
    let prices = Arc::new(PriceTable::bundled().expect("bundled table"));
    let g = Generator::new(
        GenOptions {
            count: 7,
            ..GenOptions::default()
        },
        prices,
    );
    let mut buf = Vec::new();
    assert_eq!(write_ndjson(g, &mut buf).expect("write"), 7);
}

#[test]
fn bodies_are_provider_shaped_and_carry_the_usage() {
    let mut shapes = BTreeSet::new();
    for r in records(3000, true) {
        let req: Value = serde_json::from_str(r.request_body.as_deref().expect("request body"))
            .expect("request body is JSON");
        assert!(req.is_object());
        let resp = r.response_body.as_deref().expect("response body");
        if r.status != 200 {
            let v: Value = serde_json::from_str(resp).expect("error body is JSON");
            let msg = v["error"]["message"]
                .as_str()
                .or_else(|| v["message"].as_str())
                .expect("error message");
            assert_eq!(Some(msg), r.error_message.as_deref());
            continue;
        }
        let found = if r.stream {
            assert!(resp.starts_with("data: ") || resp.starts_with("event: "));
            Usage::from_sse(resp)
        } else {
            Usage::from_response_json(&serde_json::from_str(resp).expect("JSON body"))
        };
        let (u, shape) = found.unwrap_or_else(|| panic!("no usage in {resp}"));
        shapes.insert(format!("{shape:?}"));
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.reasoning_tokens,
                u.total_tokens
            ),
            (
                r.prompt_tokens,
                r.completion_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.reasoning_tokens,
                r.total_tokens
            ),
            "{} {} stream={}",
            r.provider,
            r.model,
            r.stream
        );
        let expected_shape = match r.provider.as_str() {
            "anthropic" => UsageShape::Anthropic,
            "gemini" => UsageShape::Gemini,
            _ => UsageShape::OpenAi,
        };
        assert_eq!(shape, expected_shape);
    }
    assert_eq!(shapes.len(), 3, "{shapes:?}");
}

fn loupe_gen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loupe-gen"))
        .args(args)
        .output()
        .expect("run loupe-gen")
}

const FIXED: [&str; 8] = [
    "--count",
    "300",
    "--seed",
    "5",
    "--days",
    "1.5",
    "--start",
    "2025-01-01T00:00:00Z",
];

#[test]
fn cli_writes_reproducible_ndjson() {
    let a = loupe_gen(&[&FIXED[..], &["--orgs", "a,b"]].concat());
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = loupe_gen(&[&FIXED[..], &["--orgs", "a,b"]].concat());
    assert_eq!(a.stdout, b.stdout);
    let text = String::from_utf8(a.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 300);
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("json");
        let created = v["created_at"].as_str().expect("created_at");
        assert!(("2025-01-01T00:00:00Z".."2025-01-02T12:00:00Z").contains(&created));
    }
    let with_bodies = loupe_gen(&[&FIXED[..], &["--bodies"]].concat());
    assert!(with_bodies.status.success());
    assert!(String::from_utf8_lossy(&with_bodies.stdout).contains("\"response_body\""));
}

#[test]
fn cli_refuses_bad_arguments() {
    for args in [
        &["--count", "100000001"][..],
        &["--days", "0"],
        &["--days", "abc"],
        &["--start", "yesterday"],
        &["--orgs", ","],
        &["--batch-size", "10"], // needs --out FILE
        &["--batch-size", "0", "--out", "x.ndjson"],
    ] {
        let out = loupe_gen(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(out.stdout.is_empty(), "{args:?} wrote output");
    }
}

#[test]
fn cli_splits_into_batches() {
    let dir = std::env::temp_dir().join(format!("loupe-gen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let out = dir.join("logs.ndjson");
    let out_s = out.to_str().expect("utf-8 path");
    let run = loupe_gen(&[&FIXED[..], &["--batch-size", "120", "--out", out_s]].concat());
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut all = String::new();
    for (n, expected) in [(1, 120), (2, 120), (3, 60)] {
        let text = std::fs::read_to_string(dir.join(format!("logs-{n:05}.ndjson"))).expect("batch");
        assert_eq!(text.lines().count(), expected);
        all.push_str(&text);
    }
    assert!(!dir.join("logs-00004.ndjson").exists());
    // Same records as one file.
    let single = loupe_gen(&FIXED);
    assert_eq!(all.as_bytes(), &single.stdout[..]);
    let _ = std::fs::remove_dir_all(&dir);
}
