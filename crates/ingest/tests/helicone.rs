//! Helicone async-log bodies: validation like Helicone's worker, meta mapping, provider fixtures.

mod common;

use common::{ctx, err_json, expected_cost, fixture, fixture_json, record_json_random_id};
use insta::assert_json_snapshot;
use loupe_ingest::{HeliconeRoute, IngestContext, IngestError, parse_helicone_log};
use loupe_model::{ErrorKind, RequestRecord, Source};
use serde_json::{Value, json};
use uuid::Uuid;

/// The full example body of helicone.md §2.3.
fn example() -> Value {
    json!({
      "providerRequest": {
        "url": "custom-model-nopath",
        "json": { "model": "acme-llm-7b", "messages": [{ "role": "user", "content": "Summarize RFC 9110" }], "stream": false },
        "meta": { "Helicone-User-Id": "u_42", "Helicone-Session-Id": "0b7f3c1e-5d2a-4c1b-9f7e-2a6d1c9e8b10",
                  "Helicone-Session-Path": "/summarize", "Helicone-Property-Env": "prod" }
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

/// A body around a provider request/response pair.
fn body(url: &str, request: Value, status: u16, response: Value, meta: Value) -> Value {
    json!({
        "providerRequest": {"url": url, "json": request, "meta": meta},
        "providerResponse": {"status": status, "headers": {"content-type": "application/json"}, "json": response},
        "timing": {"startTime": {"seconds": 1735689600, "milliseconds": 0},
                   "endTime": {"seconds": 1735689601, "milliseconds": 250}}
    })
}

/// Sets (or adds) the member at `pointer`; its parent must be an object.
fn set(mut v: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(key.to_owned(), new);
        }
        _ => panic!("no object at {parent}"),
    }
    v
}

fn remove(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
        m.remove(key);
    }
    v
}

fn log(v: &Value, route: HeliconeRoute) -> RequestRecord {
    parse_helicone_log(v.to_string().as_bytes(), route, &ctx())
        .unwrap_or_else(|e| panic!("expected a record: {e}"))
}

fn log_err(v: &[u8], ctx: &IngestContext) -> IngestError {
    match parse_helicone_log(v, HeliconeRoute::Custom, ctx) {
        Ok(r) => panic!("expected an error, got {r:?}"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            e
        }
    }
}

fn meta_log(meta: Value) -> RequestRecord {
    log(
        &set(example(), "/providerRequest/meta", meta),
        HeliconeRoute::Custom,
    )
}

// ---------------------------------------------------------------- the documented example

/// Token counts need `Usage::from_response_json` (crates/model/src/usage.rs).
#[test]
fn full_example_body() {
    let r = log(&example(), HeliconeRoute::Custom);
    assert_eq!(r.source, Source::Async);
    assert_eq!(r.org_id, "org_test");
    assert_json_snapshot!("example_record", record_json_random_id(&r));
}

// ---------------------------------------------------------------- validation (snapshots)

#[test]
fn missing_timing_shows_expected_shape() {
    let e = log_err(remove(example(), "/timing").to_string().as_bytes(), &ctx());
    assert_json_snapshot!("missing_timing", err_json(&e));
}

#[test]
fn start_after_end() {
    let v = set(example(), "/timing/startTime/seconds", json!(1735689700));
    let e = log_err(v.to_string().as_bytes(), &ctx());
    assert_json_snapshot!("start_after_end", err_json(&e));
}

#[test]
fn every_worker_check_is_reported_at_once() {
    let v = json!({
        "providerRequest": {"url": 5, "meta": "x"},
        "providerResponse": {"status": "200", "textBody": 1},
        "timing": {"startTime": {"seconds": "1735689600", "milliseconds": 0}, "endTime": {"seconds": 1735689601}},
        "provider": 7
    });
    let e = log_err(v.to_string().as_bytes(), &ctx());
    assert_json_snapshot!("worker_checks", err_json(&e));
}

#[test]
fn missing_top_level_objects() {
    assert_json_snapshot!("missing_everything", err_json(&log_err(b"{}", &ctx())));
    assert_json_snapshot!("not_an_object", err_json(&log_err(b"[1,2]", &ctx())));
    assert_json_snapshot!(
        "malformed",
        err_json(&log_err(b"{\"providerRequest\": {\n\"url\": }", &ctx()))
    );
    assert_json_snapshot!(
        "not_utf8",
        err_json(&log_err(b"{\"a\": \"\xc3\x28\"}", &ctx()))
    );
}

#[test]
fn times_before_2000_or_in_the_future() {
    let v = set(
        example(),
        "/timing/startTime",
        json!({"seconds": 0, "milliseconds": 0}),
    );
    let e = log_err(v.to_string().as_bytes(), &ctx());
    assert_eq!(e.problems()[0].path, "timing.startTime");
    // Milliseconds mistaken for seconds land far in the future.
    let v = set(
        example(),
        "/timing/endTime",
        json!({"seconds": 1735689601480_i64, "milliseconds": 0}),
    );
    let e = log_err(v.to_string().as_bytes(), &ctx());
    assert_eq!(e.problems()[0].path, "timing.endTime");
    assert!(e.problems()[0].reason.contains("future"), "{e}");
}

#[test]
fn meta_values_must_be_strings_and_are_not_echoed() {
    let v = set(
        example(),
        "/providerRequest/meta",
        json!({"Helicone-User-Id": 42, "Helicone-Property-": "x", "Helicone-Property-Secret": {"k": "sk-SECRET"}}),
    );
    let e = log_err(v.to_string().as_bytes(), &ctx());
    assert!(!err_json(&e).to_string().contains("sk-SECRET"));
    assert_json_snapshot!("meta_problems", err_json(&e));
}

#[test]
fn conflicting_meta_keys() {
    let v = set(
        example(),
        "/providerRequest/meta",
        json!({"Helicone-User-Id": "a", "Loupe-User-Id": "b", "helicone-property-env": "x", "Helicone-Property-ENV": "y",
               "Loupe-Session-Id": "same", "helicone-session-id": "same"}),
    );
    let e = log_err(v.to_string().as_bytes(), &ctx());
    assert_eq!(e.total_problems(), 2, "{e}");
    assert_json_snapshot!("meta_conflicts", err_json(&e));
}

#[test]
fn body_size_limit() {
    let mut c = ctx();
    c.limits.max_body_field_len = 64;
    let e = log_err(example().to_string().as_bytes(), &c);
    assert_json_snapshot!("body_too_large", err_json(&e));
    // Omitted bodies are not stored, so not limited.
    let v = set(
        example(),
        "/providerRequest/meta",
        json!({"Helicone-Omit-Request": "true", "Helicone-Omit-Response": "true"}),
    );
    assert!(parse_helicone_log(v.to_string().as_bytes(), HeliconeRoute::Custom, &c).is_ok());
}

// ---------------------------------------------------------------- meta mapping

#[test]
fn meta_properties_user_and_session() {
    let r = meta_log(json!({
        "Helicone-Property-Env": "prod",
        "loupe-property-Team": "search",
        "HELICONE-USER-ID": "u_7",
        "Loupe-Session-Id": "s_1",
        "Helicone-Session-Path": "/a/b",
        "helicone-session-name": "Course Plan",
        "Helicone-Auth": "Bearer sk-helicone-SECRET",
        "Authorization": "Bearer sk-SECRET",
        "Helicone-Cache-Enabled": "true"
    }));
    assert_eq!(
        r.properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("env", "prod"), ("team", "search")]
    );
    assert_eq!(r.user_id.as_deref(), Some("u_7"));
    assert_eq!(r.session_id.as_deref(), Some("s_1"));
    assert_eq!(r.session_path.as_deref(), Some("/a/b"));
    assert_eq!(r.session_name.as_deref(), Some("Course Plan"));
    let stored = serde_json::to_string(&r).expect("json");
    assert!(
        !stored.contains("SECRET"),
        "credentials must never be stored: {stored}"
    );
    assert!(
        !stored.contains("content-type"),
        "response headers must never be stored"
    );
}

#[test]
fn user_falls_back_to_request_json_user() {
    let v = set(example(), "/providerRequest/json/user", json!("body-user"));
    let v = set(v, "/providerRequest/meta", json!({}));
    assert_eq!(
        log(&v, HeliconeRoute::Custom).user_id.as_deref(),
        Some("body-user")
    );
    let v = set(example(), "/providerRequest/json/user", json!("body-user"));
    assert_eq!(
        log(&v, HeliconeRoute::Custom).user_id.as_deref(),
        Some("u_42"),
        "meta wins"
    );
}

#[test]
fn request_id_valid_and_invalid() {
    let id = "0B7F3C1E-5D2A-4C1B-9F7E-2A6D1C9E8B10";
    let r = meta_log(json!({"Helicone-Request-Id": id}));
    assert_eq!(r.request_id, Uuid::parse_str(id).expect("uuid"));
    let r = meta_log(json!({"Loupe-Request-Id": id}));
    assert_eq!(r.request_id, Uuid::parse_str(id).expect("uuid"));
    for bad in [
        "not-a-uuid",
        "0b7f3c1e-5d2a-7c1b-9f7e-2a6d1c9e8b10",
        "0b7f3c1e5d2a4c1b9f7e2a6d1c9e8b10",
        "",
    ] {
        let r = meta_log(json!({"Helicone-Request-Id": bad}));
        assert_eq!(
            r.request_id.get_version_num(),
            4,
            "{bad}: a fresh v4 is generated"
        );
        assert_ne!(r.request_id.to_string(), bad);
    }
    let a = meta_log(json!({"Helicone-Request-Id": "nope"}));
    let b = meta_log(json!({"Helicone-Request-Id": "nope"}));
    assert_ne!(a.request_id, b.request_id);
}

/// The override's cost needs the real price table (crates/model/src/price.rs).
#[test]
fn model_override_sets_model_and_cost() {
    let v = body(
        "https://api.openai.com/v1/chat/completions",
        fixture_json("openai_chat_request.json"),
        200,
        fixture_json("openai_chat_response.json"),
        json!({"Helicone-Model-Override": "my-finetune"}),
    );
    let r = log(&v, HeliconeRoute::OpenAi);
    assert_eq!(r.model, "my-finetune");
    assert_eq!(r.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(r.cost_usd, None, "no price for my-finetune: None, never 0");
    assert!(!r.price_known);

    let v = set(
        v,
        "/providerRequest/json/model",
        json!("some-unpriced-model"),
    );
    let v = set(
        v,
        "/providerRequest/meta",
        json!({"helicone-model-override": "gpt-4o-mini-2024-07-18"}),
    );
    let r = log(&v, HeliconeRoute::OpenAi);
    assert_eq!(r.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(r.cost_usd, Some(expected_cost("openai_chat_response.json")));
    assert!(r.price_known);
}

#[test]
fn omit_request_and_response() {
    let r = meta_log(json!({"Helicone-Omit-Request": "true"}));
    assert_eq!(r.request_body, None);
    assert!(r.response_body.is_some());
    let r = meta_log(json!({"Helicone-Omit-Response": "TRUE", "Helicone-Omit-Request": "false"}));
    assert!(r.request_body.is_some());
    assert_eq!(r.response_body, None);
    let r = meta_log(json!({"Loupe-Omit-Request": "true", "Loupe-Omit-Response": "true"}));
    assert_eq!((r.request_body, r.response_body), (None, None));
    // The model and usage are still read from omitted bodies.
    assert_eq!(r.model, "acme-llm-7b");
}

#[test]
fn meta_may_be_empty_or_null_and_extra_fields_are_accepted() {
    let r = meta_log(json!({}));
    assert_eq!(r.user_id, None);
    assert!(r.properties.is_empty());
    let v = set(example(), "/providerRequest/meta", Value::Null);
    let v = set(v, "/extra", json!({"anything": [1, 2]}));
    let v = set(v, "/providerResponse/headers", Value::Null);
    assert!(log(&v, HeliconeRoute::Custom).properties.is_empty());
}

// ---------------------------------------------------------------- provider, model, path

#[test]
fn custom_route_provider_inference() {
    let custom = |url: &str, model: &str, provider: Option<&str>| {
        let mut v = set(example(), "/providerRequest/url", json!(url));
        v = set(v, "/providerRequest/json/model", json!(model));
        if let Some(p) = provider {
            v = set(v, "/provider", json!(p));
        }
        let r = log(&v, HeliconeRoute::Custom);
        (r.provider, r.path)
    };
    assert_eq!(
        custom("custom-model-nopath", "acme", None),
        ("custom".into(), "custom-model-nopath".into())
    );
    assert_eq!(
        custom("custom-model-nopath", "mistral/large", None).0,
        "mistral"
    );
    assert_eq!(
        custom("https://api.openai.com/v1/chat/completions", "x", None),
        ("openai".into(), "/v1/chat/completions".into())
    );
    assert_eq!(
        custom("https://api.anthropic.com/v1/messages", "x", None).0,
        "anthropic"
    );
    assert_eq!(
        custom(
            "https://generativelanguage.googleapis.com/v1beta/models/x:generateContent",
            "x",
            None
        )
        .0,
        "gemini"
    );
    assert_eq!(
        custom(
            "https://res.openai.azure.com/openai/deployments/d/chat/completions?api-version=1",
            "x",
            None
        ),
        (
            "azure".into(),
            "/openai/deployments/d/chat/completions".into()
        )
    );
    assert_eq!(
        custom("https://api.openai.com/v1/x", "x", Some("ANTHROPIC")).0,
        "anthropic"
    );
    assert_eq!(
        custom("custom-model-nopath", "x", Some("GOOGLE")).0,
        "gemini"
    );
    assert_eq!(
        custom("custom-model-nopath", "x", Some("OPENAI")).0,
        "openai"
    );
    assert_eq!(
        custom("custom-model-nopath", "x", Some("Bedrock")).0,
        "bedrock"
    );
}

#[test]
fn routes_fix_the_provider() {
    let v = example();
    assert_eq!(log(&v, HeliconeRoute::OpenAi).provider, "openai");
    assert_eq!(log(&v, HeliconeRoute::Anthropic).provider, "anthropic");
    assert_eq!(log(&v, HeliconeRoute::Google).provider, "gemini");
    assert_eq!(
        HeliconeRoute::from_path("/googleapis/v1/log"),
        Some(HeliconeRoute::Google)
    );
    assert_eq!(HeliconeRoute::from_path("/v1/log"), None);
}

#[test]
fn model_fallbacks() {
    let v = remove(example(), "/providerRequest/json/model");
    assert_eq!(log(&v, HeliconeRoute::Custom).model, "unknown");
    let v = set(v, "/providerResponse/json/model", json!("from-response"));
    assert_eq!(log(&v, HeliconeRoute::Custom).model, "from-response");
}

#[test]
fn timing_and_ttft() {
    let r = log(&example(), HeliconeRoute::Custom);
    assert_eq!(r.created_at.to_rfc3339(), "2025-01-01T00:00:00.120+00:00");
    assert_eq!(r.completed_at.to_rfc3339(), "2025-01-01T00:00:01.480+00:00");
    assert_eq!(r.latency_ms, 1360);
    assert_eq!(r.ttft_ms, Some(210));
    // Fractional values are rounded.
    let r = log(
        &set(example(), "/timing/timeToFirstToken", json!(209.6)),
        HeliconeRoute::Custom,
    );
    assert_eq!(r.ttft_ms, Some(210));
    // An absolute first-token time (epoch ms) is turned into a duration.
    let r = log(
        &set(
            example(),
            "/timing/timeToFirstToken",
            json!(1735689600330_i64),
        ),
        HeliconeRoute::Custom,
    );
    assert_eq!(r.ttft_ms, Some(210));
    let e = log_err(
        set(example(), "/timing/timeToFirstToken", json!(-1))
            .to_string()
            .as_bytes(),
        &ctx(),
    );
    assert_eq!(e.problems()[0].path, "timing.timeToFirstToken");
    let e = log_err(
        set(example(), "/timing/timeToFirstToken", json!(5000))
            .to_string()
            .as_bytes(),
        &ctx(),
    );
    assert!(
        e.problems()[0].reason.contains("longer than the request"),
        "{e}"
    );
}

#[test]
fn status_range() {
    let e = log_err(
        set(example(), "/providerResponse/status", json!(1000))
            .to_string()
            .as_bytes(),
        &ctx(),
    );
    assert_eq!(e.problems()[0].path, "providerResponse.status");
    let r = log(
        &set(example(), "/providerResponse/status", json!(0)),
        HeliconeRoute::Custom,
    );
    assert_eq!(r.status, 0);
}

// ---------------------------------------------------------------- provider fixtures

/// Usage and cost need crates/model (usage.rs, price.rs).
#[test]
fn openai_fixture() {
    let v = body(
        "https://api.openai.com/v1/chat/completions",
        fixture_json("openai_chat_request.json"),
        200,
        fixture_json("openai_chat_response.json"),
        json!({}),
    );
    let r = log(&v, HeliconeRoute::OpenAi);
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("openai", "gpt-4o-mini")
    );
    assert_eq!(r.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.user_id.as_deref(), Some("user-1234"));
    assert!(!r.stream);
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (1250, 42, 1292)
    );
    assert_eq!(r.cache_read_tokens, 1024);
    assert_eq!(r.cost_usd, Some(expected_cost("openai_chat_response.json")));
    assert!(r.price_known);
    // Same body on the custom route: the provider comes from the URL host.
    assert_eq!(log(&v, HeliconeRoute::Custom).provider, "openai");
}

/// Usage and cost need crates/model (usage.rs, price.rs).
#[test]
fn anthropic_fixture() {
    let v = body(
        "https://api.anthropic.com/v1/messages",
        fixture_json("anthropic_messages_request.json"),
        200,
        fixture_json("anthropic_messages_response.json"),
        json!({}),
    );
    let r = log(&v, HeliconeRoute::Anthropic);
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("anthropic", "claude-sonnet-4-5-20250929")
    );
    assert_eq!(
        r.response_model.as_deref(),
        Some("claude-sonnet-4-5-20250929")
    );
    // OpenAI semantics: prompt = input + cache read + cache creation.
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.cache_read_tokens),
        (1821, 35, 1800)
    );
    assert_eq!(
        r.cost_usd,
        Some(expected_cost("anthropic_messages_response.json"))
    );
}

/// Usage and cost need crates/model (usage.rs, price.rs).
#[test]
fn gemini_fixture() {
    let v = body(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent?key=AIzaSECRET",
        fixture_json("gemini_request.json"),
        200,
        fixture_json("gemini_response.json"),
        json!({"x-goog-api-key": "AIzaSECRET"}),
    );
    let r = log(&v, HeliconeRoute::Google);
    assert_eq!(
        (r.provider.as_str(), r.model.as_str()),
        ("gemini", "gemini-2.5-flash")
    );
    assert_eq!(r.response_model.as_deref(), Some("gemini-2.5-flash"));
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert!(
        !serde_json::to_string(&r).expect("json").contains("SECRET"),
        "the key in the URL is not stored"
    );
    assert_eq!(
        (r.prompt_tokens, r.completion_tokens, r.total_tokens),
        (2100, 180, 2280)
    );
    assert_eq!((r.cache_read_tokens, r.reasoning_tokens), (1024, 120));
    assert_eq!(r.cost_usd, Some(expected_cost("gemini_response.json")));
}

/// Usage from the SSE text needs crates/model (usage.rs).
#[test]
fn openai_stream_as_text_body() {
    let v = json!({
        "providerRequest": {"url": "https://api.openai.com/v1/chat/completions",
                            "json": fixture_json("openai_chat_stream_request.json"), "meta": {}},
        "providerResponse": {"status": 200, "headers": {}, "textBody": fixture("openai_chat_stream.sse")},
        "timing": {"startTime": {"seconds": 1735689600, "milliseconds": 0},
                   "endTime": {"seconds": 1735689601, "milliseconds": 0}, "timeToFirstToken": 300}
    });
    let r = log(&v, HeliconeRoute::OpenAi);
    assert!(r.stream);
    assert_eq!(
        r.response_body.as_deref(),
        Some(fixture("openai_chat_stream.sse").as_str())
    );
    assert_eq!((r.prompt_tokens, r.completion_tokens), (17, 3));
    assert_eq!(r.cost_usd, Some(expected_cost("openai_chat_stream.sse")));
}

#[test]
fn provider_errors() {
    let v = body(
        "https://api.openai.com/v1/chat/completions",
        fixture_json("openai_chat_request.json"),
        429,
        fixture_json("openai_error_429.json"),
        json!({}),
    );
    let r = log(&v, HeliconeRoute::OpenAi);
    assert_eq!(r.status, 429);
    assert_eq!(r.error_type.as_deref(), Some("tokens"));
    assert!(
        r.error_message
            .as_deref()
            .is_some_and(|m| m.starts_with("Rate limit reached"))
    );

    let v = body(
        "https://api.anthropic.com/v1/messages",
        fixture_json("anthropic_messages_request.json"),
        429,
        fixture_json("anthropic_error_429.json"),
        json!({}),
    );
    let r = log(&v, HeliconeRoute::Anthropic);
    assert_eq!(r.error_type.as_deref(), Some("rate_limit_error"));
    assert!(
        r.error_message
            .as_deref()
            .is_some_and(|m| m.contains("exceed the rate limit"))
    );

    let gemini_err = json!({"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}});
    let v = body(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
        fixture_json("gemini_request.json"),
        429,
        gemini_err,
        json!({}),
    );
    let r = log(&v, HeliconeRoute::Google);
    assert_eq!(r.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
    assert_eq!(
        r.error_message.as_deref(),
        Some("Resource has been exhausted")
    );

    // Plain-text error body.
    let v = remove(
        body(
            "custom-model-nopath",
            json!({"model": "m"}),
            502,
            json!(null),
            json!({}),
        ),
        "/providerResponse/json",
    );
    let v = set(v, "/providerResponse/textBody", json!("Bad gateway\n"));
    let r = log(&v, HeliconeRoute::Custom);
    assert_eq!(
        (r.status, r.error_type, r.error_message.as_deref()),
        (502, None, Some("Bad gateway"))
    );
    assert_eq!(r.response_body.as_deref(), Some("Bad gateway\n"));
    // A successful call is not an error even if the body mentions one.
    assert_eq!(log(&example(), HeliconeRoute::Custom).error_type, None);
}

#[test]
fn unknown_model_cost_is_none_never_zero() {
    let r = log(&example(), HeliconeRoute::Custom);
    assert_eq!(r.model, "acme-llm-7b");
    assert_eq!(r.cost_usd, None);
    assert!(!r.price_known);
}

#[test]
fn bodies_are_compact_json_or_verbatim_text() {
    let r = log(&example(), HeliconeRoute::Custom);
    let req: Value =
        serde_json::from_str(r.request_body.as_deref().expect("request body")).expect("json");
    assert_eq!(req, example()["providerRequest"]["json"]);
    assert!(
        !r.request_body.as_deref().unwrap_or_default().contains(": "),
        "compact"
    );
    let v = set(example(), "/providerRequest/json", json!("raw prompt text"));
    assert_eq!(
        log(&v, HeliconeRoute::Custom).request_body.as_deref(),
        Some("raw prompt text")
    );
}

#[test]
fn rate_limit_headers_and_request_id_are_kept_other_response_headers_are_not() {
    let v = set(
        example(),
        "/providerResponse/headers",
        json!({"content-type": "application/json", "X-RateLimit-Remaining-Tokens": "149000",
               "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:01Z", "Retry-After": "3",
               "x-request-id": "req_1", "set-cookie": "secret=1", "authorization": "Bearer sk-x",
               "x-ratelimit-limit-requests": 5}),
    );
    let r = log(&v, HeliconeRoute::Custom);
    let got: Vec<(&str, &str)> = r
        .upstream_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:01Z"),
            ("retry-after", "3"),
            ("x-ratelimit-remaining-tokens", "149000"),
            ("x-request-id", "req_1"),
        ]
    );
}
