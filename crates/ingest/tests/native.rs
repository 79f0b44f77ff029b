//! The native `/v1/ingest` format: accepted shapes, defaults, derivations and error lists.

mod common;

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use common::{ctx, err_json, expected_cost};
use insta::assert_json_snapshot;
use loupe_ingest::{IngestContext, IngestError, parse_native};
use loupe_model::{ErrorKind, RequestRecord, Source};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

const NDJSON: Option<&str> = Some("application/x-ndjson");
const JSON: Option<&str> = Some("application/json");

fn ok(body: &str, ct: Option<&str>) -> Vec<RequestRecord> {
    parse_native(body.as_bytes(), ct, &ctx())
        .unwrap_or_else(|e| panic!("expected records, got: {e}"))
}

fn one(record: Value) -> RequestRecord {
    let mut v = ok(&record.to_string(), JSON);
    assert_eq!(v.len(), 1);
    v.remove(0)
}

fn err(body: &str, ct: Option<&str>) -> IngestError {
    err_with(body.as_bytes(), ct, &ctx())
}

fn err_with(body: &[u8], ct: Option<&str>, ctx: &IngestContext) -> IngestError {
    match parse_native(body, ct, ctx) {
        Ok(r) => panic!("expected an error, got {} records", r.len()),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            e
        }
    }
}

fn ndjson(lines: &[Value]) -> String {
    lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn minimal() -> Value {
    json!({"created_at": "2025-01-01T00:00:00Z", "model": "gpt-4o-mini"})
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

// ---------------------------------------------------------------- accepted shapes and defaults

#[test]
fn minimal_record_gets_defaults() {
    let r = one(minimal());
    assert_eq!(r.request_id.get_version_num(), 4);
    assert_eq!(r.org_id, "org_test");
    assert_eq!(r.source, Source::Async);
    assert_eq!(
        r.created_at,
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .expect("date")
    );
    assert_eq!(r.completed_at, r.created_at);
    assert_eq!(r.latency_ms, 0);
    assert_eq!(r.ttft_ms, None);
    assert_eq!(r.provider, "unknown");
    assert_eq!(r.model, "gpt-4o-mini");
    assert_eq!(r.path, "");
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (0, 0, 0)
    );
    // No usage given for a successful call: the cost is unknown, never a silent zero.
    assert_eq!(r.cost_usd, None);
    assert!(!r.price_known);
    assert!(r.properties.is_empty());
    assert!(!r.cache_hit && !r.stream);
    assert_eq!(r.request_body, None);
}

#[test]
fn full_record_round_trips() {
    let id = "0b7f3c1e-5d2a-4c1b-9f7e-2a6d1c9e8b10";
    let r = one(json!({
        "request_id": id,
        "created_at": "2025-01-01T12:00:00.123456789+02:00",
        "completed_at": "2025-01-01T12:00:01.623456Z",
        "ttft_ms": 200,
        "provider": "OpenAI",
        "model": "gpt-4o-mini",
        "response_model": "gpt-4o-mini-2024-07-18",
        "path": "/v1/chat/completions",
        "status": 429,
        "error_type": "rate_limit_exceeded",
        "error_message": "slow down",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cache_read_tokens": 4,
        "cache_write_tokens": 1,
        "reasoning_tokens": 2,
        "total_tokens": 16,
        "cost_usd": "0.00042",
        "user_id": "u_1",
        "session_id": "s_1",
        "session_path": "/a/b",
        "session_name": "Plan",
        "properties": {"env": "prod", "my key": ""},
        "cache_hit": true,
        "stream": true,
        "trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736",
        "span_id": "00f067aa0ba902b7",
        "upstream_headers": {"x-ratelimit-remaining-requests": "99", "retry-after": "2"},
        "attempts": [{"attempt": 1, "fallback_index": 0, "provider": "openai", "model": "gpt-4o", "status": 503, "error_type": "http_503", "error": "down", "latency_ms": 12, "backoff_ms": 1000}],
        "attempt": 2,
        "fallback_index": 1,
        "cost_saved_usd": "0.001",
        "request_body": {"model": "gpt-4o-mini", "messages": []},
        "response_body": "data: {}\n\n"
    }));
    assert_eq!(r.request_id, Uuid::parse_str(id).expect("uuid"));
    // +02:00 → UTC, nanoseconds truncated to microseconds.
    assert_eq!(
        r.created_at.to_rfc3339(),
        "2025-01-01T10:00:00.123456+00:00"
    );
    assert_eq!(
        r.completed_at.to_rfc3339(),
        "2025-01-01T12:00:01.623456+00:00"
    );
    assert_eq!(r.latency_ms, 7_201_500);
    assert_eq!(r.ttft_ms, Some(200));
    assert_eq!(r.provider, "openai");
    assert_eq!(r.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.status, 429);
    assert_eq!(r.error_type.as_deref(), Some("rate_limit_exceeded"));
    assert_eq!(r.error_message.as_deref(), Some("slow down"));
    assert_eq!(
        (
            r.prompt_tokens,
            r.completion_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.reasoning_tokens
        ),
        (10, 5, 4, 1, 2)
    );
    assert_eq!(r.total_tokens, 16);
    assert_eq!(
        r.cost_usd,
        Some("0.00042".parse::<Decimal>().expect("decimal"))
    );
    assert!(r.price_known);
    assert_eq!(r.user_id.as_deref(), Some("u_1"));
    assert_eq!(r.session_id.as_deref(), Some("s_1"));
    assert_eq!(r.session_path.as_deref(), Some("/a/b"));
    assert_eq!(r.session_name.as_deref(), Some("Plan"));
    assert_eq!(
        r.properties,
        BTreeMap::from([
            ("env".to_owned(), "prod".to_owned()),
            ("my key".to_owned(), String::new())
        ])
    );
    assert_eq!(
        r.upstream_headers,
        BTreeMap::from([
            ("retry-after".to_owned(), "2".to_owned()),
            ("x-ratelimit-remaining-requests".to_owned(), "99".to_owned())
        ])
    );
    assert_eq!(r.attempts.len(), 1);
    assert_eq!(
        (
            r.attempts[0].status,
            r.attempts[0].backoff_ms,
            r.attempts[0].model.as_str()
        ),
        (503, 1000, "gpt-4o")
    );
    assert_eq!((r.attempt, r.fallback_index), (Some(2), Some(1)));
    assert_eq!(r.cost_saved_usd, Some(Decimal::new(1, 3)));
    assert!(r.cache_hit && r.stream);
    assert_eq!(
        r.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(r.span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(
        r.request_body.as_deref(),
        Some(r#"{"messages":[],"model":"gpt-4o-mini"}"#)
    );
    assert_eq!(r.response_body.as_deref(), Some("data: {}\n\n"));
}

#[test]
fn nulls_are_absent_fields() {
    let r = one(with(
        minimal(),
        json!({"user_id": null, "cost_usd": null, "properties": null, "status": null}),
    ));
    assert_eq!(r.user_id, None);
    assert_eq!(r.status, 200);
}

#[test]
fn provider_defaults_to_model_prefix() {
    assert_eq!(
        one(with(
            minimal(),
            json!({"model": "anthropic/claude-3-haiku"})
        ))
        .provider,
        "anthropic"
    );
    assert_eq!(
        one(with(minimal(), json!({"model": "/x"}))).provider,
        "unknown"
    );
    assert_eq!(
        one(with(minimal(), json!({"model": "acme-llm-7b"}))).provider,
        "unknown"
    );
}

#[test]
fn integer_microsecond_times() {
    let r = one(with(
        minimal(),
        json!({"created_at": 1_735_689_600_120_000_i64, "completed_at": 1_735_689_601_480_000_i64}),
    ));
    assert_eq!(r.created_at.timestamp_micros(), 1_735_689_600_120_000);
    assert_eq!(r.latency_ms, 1360);
}

#[test]
fn completed_at_or_latency_derived_from_the_other() {
    let r = one(with(minimal(), json!({"latency_ms": 1500})));
    assert_eq!(r.completed_at.to_rfc3339(), "2025-01-01T00:00:01.500+00:00");
    let r = one(with(
        minimal(),
        json!({"completed_at": "2025-01-01T00:00:00.0015Z"}),
    ));
    assert_eq!(r.latency_ms, 2, "1.5 ms rounds to 2");
    // Within 1 ms agreement is accepted and latency_ms is kept as given.
    let r = one(with(
        minimal(),
        json!({"completed_at": "2025-01-01T00:00:01.0009Z", "latency_ms": 1000}),
    ));
    assert_eq!(r.latency_ms, 1000);
}

#[test]
fn cost_given_is_used_as_is() {
    let r = one(with(
        minimal(),
        json!({"cost_usd": 0.1, "model": "no-such-model"}),
    ));
    assert_eq!(r.cost_usd, Some("0.1".parse::<Decimal>().expect("decimal")));
    assert!(r.price_known);
    let r = one(with(minimal(), json!({"cost_usd": "1.5e-7"})));
    assert_eq!(
        r.cost_usd,
        Some("0.00000015".parse::<Decimal>().expect("decimal"))
    );
    let r = one(with(minimal(), json!({"cost_usd": 0})));
    assert_eq!(r.cost_usd, Some(Decimal::ZERO));
    assert!(r.price_known);
}

#[test]
fn unknown_model_has_no_cost_never_zero() {
    let r = one(with(
        minimal(),
        json!({"model": "acme-llm-7b", "prompt_tokens": 12, "completion_tokens": 40}),
    ));
    assert_eq!(r.total_tokens, 52);
    assert_eq!(r.cost_usd, None);
    assert!(!r.price_known);
}

/// Needs the real price table (crates/model/src/price.rs).
#[test]
fn known_model_cost_is_computed_from_the_price_table() {
    let r = one(with(
        minimal(),
        json!({"provider": "openai", "model": "gpt-4o-mini-2024-07-18", "prompt_tokens": 1250,
               "cache_read_tokens": 1024, "completion_tokens": 42}),
    ));
    assert_eq!(r.cost_usd, Some(expected_cost("openai_chat_response.json")));
    assert!(r.price_known);
}

#[test]
fn ndjson_with_blank_lines_crlf_bom_and_charset() {
    let body = format!(
        "\u{feff}{}\r\n\r\n   \n{}\r\n",
        minimal(),
        with(minimal(), json!({"model": "m2"}))
    );
    let v = ok(&body, Some("application/x-ndjson; charset=utf-8"));
    assert_eq!(
        v.iter().map(|r| r.model.as_str()).collect::<Vec<_>>(),
        ["gpt-4o-mini", "m2"]
    );
    let v = ok(&body, Some("application/jsonl"));
    assert_eq!(v.len(), 2);
}

#[test]
fn format_is_detected_without_content_type() {
    let two = ndjson(&[minimal(), minimal()]);
    assert_eq!(ok(&two, None).len(), 2);
    assert_eq!(ok(&two, Some("text/plain")).len(), 2);
    // application/json with NDJSON content is read as NDJSON too.
    assert_eq!(ok(&two, JSON).len(), 2);
    let array = json!([minimal(), minimal(), minimal()]).to_string();
    assert_eq!(ok(&array, None).len(), 3);
    let pretty = serde_json::to_string_pretty(&minimal()).expect("json");
    assert_eq!(ok(&pretty, None).len(), 1);
    assert_eq!(ok(&minimal().to_string(), None).len(), 1);
    assert!(ok("[]", JSON).is_empty());
}

#[test]
fn records_keep_their_order_and_ids() {
    let ids: Vec<String> = (0..5).map(|_| Uuid::new_v4().to_string()).collect();
    let lines: Vec<Value> = ids
        .iter()
        .map(|id| with(minimal(), json!({"request_id": id})))
        .collect();
    let got: Vec<String> = ok(&ndjson(&lines), NDJSON)
        .iter()
        .map(|r| r.request_id.to_string())
        .collect();
    assert_eq!(got, ids);
}

// ---------------------------------------------------------------- errors (snapshots)

#[test]
fn malformed_json_array() {
    let e = err("[\n  {\"model\": \"x\",}\n]", JSON);
    assert_json_snapshot!("malformed_json_array", err_json(&e));
}

#[test]
fn malformed_ndjson_reports_each_line() {
    let body = format!(
        "{}\n{{\"model\": \n\n{}\n{{oops}}\n[1]\n",
        minimal(),
        minimal()
    );
    let e = err(&body, NDJSON);
    assert_eq!(
        e.problems().iter().map(|p| p.index).collect::<Vec<_>>(),
        [Some(2), Some(5), Some(6)]
    );
    assert_json_snapshot!("malformed_ndjson_lines", err_json(&e));
}

#[test]
fn wrong_types_name_field_expected_and_found() {
    let e = err(
        &json!({
            "created_at": true,
            "model": 42,
            "status": "200",
            "prompt_tokens": -1,
            "completion_tokens": 1.5,
            "total_tokens": 18446744073709551615_u64,
            "stream": "yes",
            "user_id": ["u"],
            "properties": {"env": 5, "ok": "yes", "flag": true},
            "cost_usd": "cheap",
            "request_id": "not-a-uuid",
            "trace_id": "xyz",
            "span_id": "0000000000000000"
        })
        .to_string(),
        JSON,
    );
    assert_json_snapshot!("wrong_types", err_json(&e));
}

#[test]
fn unknown_fields_get_did_you_mean_hints() {
    let e = err(
        &with(
            minimal(),
            json!({"modle": "x", "createdAt": 1, "promptTokens": 3, "request-id": "x", "foo": 1}),
        )
        .to_string(),
        JSON,
    );
    assert_json_snapshot!("unknown_fields", err_json(&e));
}

#[test]
fn org_id_source_and_price_known_are_rejected() {
    let e = err(
        &with(
            minimal(),
            json!({"org_id": "other", "source": "gateway", "price_known": true}),
        )
        .to_string(),
        JSON,
    );
    assert_json_snapshot!("server_owned_fields", err_json(&e));
    assert!(
        e.problems()[0]
            .reason
            .contains("org_id comes from the API key")
    );
}

#[test]
fn invalid_utf8() {
    let mut array = b"[{\"model\": \"caf".to_vec();
    array.extend_from_slice(b"\xe9\"}]");
    let e = err_with(&array, JSON, &ctx());
    assert_json_snapshot!("invalid_utf8_array", err_json(&e));

    let mut lines = minimal().to_string().into_bytes();
    lines.extend_from_slice(b"\n{\"model\": \"\xff\xfe\"}\n");
    let e = err_with(&lines, NDJSON, &ctx());
    assert_eq!(e.problems()[0].index, Some(2));
    assert_json_snapshot!("invalid_utf8_ndjson", err_json(&e));
}

#[test]
fn array_index_paths_and_all_or_nothing() {
    let body = json!([
        minimal(),
        with(minimal(), json!({"status": 1000})),
        minimal(),
        {"model": "x"},
        "not an object",
        minimal()
    ])
    .to_string();
    let e = err(&body, JSON);
    // Nothing is accepted; only the bad records are listed, by index.
    assert_eq!(
        e.problems().iter().map(|p| p.index).collect::<Vec<_>>(),
        [Some(1), Some(3), Some(4)]
    );
    assert!(e.to_string().contains("No records were stored"));
    assert!(e.to_string().contains("resending is safe"));
    assert_json_snapshot!("array_index_paths", err_json(&e));
}

#[test]
fn ndjson_line_numbers_skip_blank_lines() {
    let body = format!(
        "{}\n\n{}\n\n\n{}\n",
        minimal(),
        json!({"created_at": "2025-01-01T00:00:00Z"}),
        minimal()
    );
    let e = err(&body, NDJSON);
    assert_eq!(e.problems().len(), 1);
    assert_eq!(e.problems()[0].index, Some(3));
    assert_eq!(e.problems()[0].path, "line 3, model");
}

#[test]
fn time_problems() {
    let e = err(
        &json!([
            with(minimal(), json!({"completed_at": "2024-12-31T23:59:59Z"})),
            with(minimal(), json!({"completed_at": "2025-01-01T00:00:01Z", "latency_ms": 5000})),
            with(minimal(), json!({"created_at": "1999-12-31T23:59:59Z"})),
            with(minimal(), json!({"created_at": "2025-06-03T00:00:00Z"})),
            with(minimal(), json!({"created_at": 1_735_689_600})),
            with(minimal(), json!({"created_at": 1_735_689_600_000_i64})),
            with(minimal(), json!({"created_at": 946_684_799_000_000_i64})),
            with(minimal(), json!({"created_at": "yesterday"})),
            with(minimal(), json!({"latency_ms": 10, "ttft_ms": 11})),
            with(minimal(), json!({"latency_ms": 9_000_000_000_000_i64})),
            {"model": "m"}
        ])
        .to_string(),
        JSON,
    );
    assert_json_snapshot!("time_problems", err_json(&e));
}

#[test]
fn token_subsets_are_checked() {
    let e = err(
        &json!([
            with(
                minimal(),
                json!({"prompt_tokens": 21, "cache_read_tokens": 1800})
            ),
            with(
                minimal(),
                json!({"completion_tokens": 60, "reasoning_tokens": 120})
            ),
        ])
        .to_string(),
        JSON,
    );
    assert_json_snapshot!("token_subsets", err_json(&e));
}

#[test]
fn limits_name_their_config_keys() {
    let mut c = ctx();
    c.limits.max_records = 2;
    let e = err_with(
        ndjson(&[minimal(), minimal(), minimal()]).as_bytes(),
        NDJSON,
        &c,
    );
    assert!(e.problems()[0].reason.contains("ingest.max_records"), "{e}");
    let e = err_with(
        json!([minimal(), minimal(), minimal()])
            .to_string()
            .as_bytes(),
        JSON,
        &c,
    );
    assert!(e.problems()[0].reason.contains("ingest.max_records"), "{e}");

    let huge: serde_json::Map<String, Value> =
        (0..201).map(|i| (format!("k{i}"), json!("v"))).collect();
    let c = ctx();
    let e = err_with(
        with(minimal(), json!({"properties": huge}))
            .to_string()
            .as_bytes(),
        JSON,
        &c,
    );
    assert_eq!(
        e.total_problems(),
        1,
        "one problem for the whole map, not one per key"
    );
    assert_json_snapshot!("too_many_properties", err_json(&e));

    let mut c = ctx();
    c.limits.max_property_key_len = 4;
    c.limits.max_property_value_len = 8;
    c.limits.max_body_field_len = 10;
    let e = err_with(
        with(
            minimal(),
            json!({"properties": {"short": "x", "ok": "123456789", "": "x"}, "request_body": {"a": "bcdefgh"}, "response_body": "01234567890"}),
        )
        .to_string()
        .as_bytes(),
        JSON,
        &c,
    );
    assert_json_snapshot!("size_limits", err_json(&e));
}

#[test]
fn problem_list_is_capped_at_20() {
    let bad: Vec<Value> = (0..30).map(|_| json!({"model": "m"})).collect();
    let e = err(&json!(bad).to_string(), JSON);
    assert_eq!(e.problems().len(), 20);
    assert_eq!(e.total_problems(), 30);
    assert_json_snapshot!("capped", err_json(&e));
}

#[test]
fn body_level_problems() {
    assert_json_snapshot!("empty_body", err_json(&err(" \n\t", JSON)));
    assert_json_snapshot!("scalar_body", err_json(&err("42", None)));
    assert_json_snapshot!(
        "ndjson_as_json_array_hint",
        err_json(&err(&json!([minimal()]).to_string(), NDJSON))
    );
    // A pretty-printed object with an error is reported with its body line and column.
    let e = err("{\n  \"model\": \"m\",\n  \"created_at\": \n}", None);
    assert_eq!(e.problems()[0].path, "body");
    assert!(
        e.problems()[0]
            .reason
            .starts_with("malformed JSON at line 4, column 1"),
        "{e}"
    );
}

#[test]
fn single_object_paths_have_no_prefix() {
    let e = err(
        &json!({"created_at": "2025-01-01T00:00:00Z", "model": ""}).to_string(),
        JSON,
    );
    assert_eq!(e.problems()[0].index, None);
    assert_eq!(e.problems()[0].path, "model");
    let msg = e.to_string();
    assert!(msg.starts_with("model: must not be empty"), "{msg}");
}

#[test]
fn request_id_problems() {
    let e = err(
        &with(
            minimal(),
            json!({"request_id": "00000000-0000-0000-0000-000000000000"}),
        )
        .to_string(),
        JSON,
    );
    assert!(e.problems()[0].reason.contains("nil UUID"));
    // Any UUID form the uuid crate reads is accepted (simple form here).
    let r = one(with(
        minimal(),
        json!({"request_id": "0b7f3c1e5d2a4c1b9f7e2a6d1c9e8b10"}),
    ));
    assert_eq!(
        r.request_id.to_string(),
        "0b7f3c1e-5d2a-4c1b-9f7e-2a6d1c9e8b10"
    );
}

#[test]
fn negative_cost_is_rejected() {
    let e = err(
        &with(minimal(), json!({"cost_usd": -0.5})).to_string(),
        JSON,
    );
    assert_eq!(e.problems()[0].path, "cost_usd");
}

#[test]
fn gateway_attempt_fields_are_checked() {
    for (extra, path, needle) in [
        (
            json!({"attempts": "x"}),
            "attempts",
            "expected an array of attempt objects",
        ),
        (
            json!({"attempts": [{"attempt": 1}]}),
            "attempts[0]",
            "missing field",
        ),
        (json!({"attempt": 0}), "attempt", "an integer ≥ 1"),
        (
            json!({"fallback_index": -1}),
            "fallback_index",
            "an integer ≥ 0",
        ),
        (
            json!({"cost_saved_usd": "-1"}),
            "cost_saved_usd",
            "must be ≥ 0",
        ),
    ] {
        let e = err(&with(minimal(), extra.clone()).to_string(), JSON);
        let p = &e.problems()[0];
        assert!(p.path.ends_with(path), "{extra}: {}", p.path);
        assert!(p.reason.contains(needle), "{extra}: {}", p.reason);
    }
    let many: Vec<Value> = (0..65)
        .map(|i| json!({"attempt": i + 1, "fallback_index": 0, "provider": "p", "model": "m", "status": 503, "latency_ms": 1}))
        .collect();
    let e = err(
        &with(minimal(), json!({"attempts": many})).to_string(),
        JSON,
    );
    assert!(e.problems()[0].reason.contains("at most 64"), "{e}");
}
