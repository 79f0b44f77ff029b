//! OTLP decoding and mapping, on the real exporter captures in `testdata/otlp/` (copied from the
//! shared fixtures): every capture decodes to the same records from protobuf and from JSON.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use insta::assert_json_snapshot;
use loupe_ingest::IngestContext;
use loupe_ingest::otlp::{
    self, EventJoin, OtlpFormat, apply_events, decode_logs, decode_traces, map_logs, map_traces,
};
use loupe_model::PriceTable;
use serde_json::{Value, json};

fn ctx() -> IngestContext {
    let mut c = IngestContext::new(
        "org_test",
        Arc::new(PriceTable::bundled().expect("bundled prices")),
    );
    // The captures were made on 2026-11-21.
    c.now = Utc
        .with_ymd_and_hms(2026, 11, 23, 0, 0, 0)
        .single()
        .expect("date");
    c
}

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/otlp")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const TRACES: &[&str] = &[
    "openllmetry_chat_traces",
    "openllmetry_chat_stream_traces",
    "openllmetry_events_mode_traces",
    "openllmetry_legacy_0.47_chat_traces",
    "openllmetry_legacy_0.47_chat_stream_traces",
    "otel_openai_v2_chat_traces",
    "otel_openai_v2_chat_stream_traces",
];

const LOGS: &[&str] = &[
    "openllmetry_events_user_message_logs",
    "openllmetry_events_choice_logs",
];

fn traces(name: &str, format: OtlpFormat) -> otlp::TracesOutcome {
    let ext = match format {
        OtlpFormat::Protobuf => "pb",
        OtlpFormat::Json => "json",
    };
    let body = fixture(&format!("{name}.{ext}"));
    let req = decode_traces(&body, format).expect("decodes");
    map_traces(&req, &ctx()).expect("maps")
}

fn record_json(r: &loupe_model::RequestRecord) -> Value {
    let mut v = serde_json::to_value(r).expect("json");
    for body in ["request_body", "response_body"] {
        if let Some(s) = v[body].as_str() {
            v[body] = serde_json::from_str(s).expect("bodies are JSON");
        }
    }
    v
}

#[test]
fn every_trace_capture_decodes_to_the_same_records_in_protobuf_and_json() {
    for name in TRACES {
        let pb = traces(name, OtlpFormat::Protobuf);
        let js = traces(name, OtlpFormat::Json);
        assert_eq!(pb, js, "{name}: protobuf and JSON differ");
        assert_eq!(pb.records.len(), 1, "{name}: one LLM span");
        assert_eq!(pb.rejected, 0, "{name}: {:?}", pb.reasons);
        let r = &pb.records[0];
        assert_eq!(r.org_id, "org_test");
        assert_eq!(
            r.request_id,
            otlp::request_id_for(
                r.trace_id.as_deref().unwrap_or(""),
                r.span_id.as_deref().unwrap_or("")
            )
        );
        assert_json_snapshot!(format!("traces__{name}"), record_json(r));
    }
}

#[test]
fn legacy_and_current_openllmetry_agree() {
    let cur = &traces("openllmetry_chat_traces", OtlpFormat::Protobuf).records[0];
    let old = &traces("openllmetry_legacy_0.47_chat_traces", OtlpFormat::Protobuf).records[0];
    let (a, b) = (cur, old);
    assert_eq!(a.provider, b.provider);
    assert_eq!(a.model, b.model);
    assert_eq!(a.response_model, b.response_model);
    assert_eq!(
        (a.prompt_tokens, a.completion_tokens, a.cache_read_tokens),
        (b.prompt_tokens, b.completion_tokens, b.cache_read_tokens)
    );
    assert_eq!(a.total_tokens, b.total_tokens);
    assert_eq!(a.cost_usd, b.cost_usd);
    let msgs = |s: &Option<String>| {
        serde_json::from_str::<Value>(s.as_deref().unwrap_or("{}")).expect("json")["messages"]
            .clone()
    };
    assert_eq!(msgs(&a.request_body), msgs(&b.request_body));
    assert_eq!(msgs(&a.response_body), msgs(&b.response_body));
    assert!(cur.price_known, "gpt-4o-mini has a price");
    assert_eq!(cur.prompt_tokens, 1250);
    assert_eq!(cur.cache_read_tokens, 1024);
}

#[test]
fn streaming_spans_have_ttft_from_the_first_chunk_event() {
    let r = &traces("openllmetry_chat_stream_traces", OtlpFormat::Json).records[0];
    assert!(r.stream);
    let ttft = r.ttft_ms.expect("ttft");
    assert!(ttft <= r.latency_ms, "{ttft} <= {}", r.latency_ms);
}

#[test]
fn event_logs_join_their_span_in_protobuf_and_json() {
    for format in [OtlpFormat::Protobuf, OtlpFormat::Json] {
        let ext = if format == OtlpFormat::Json {
            "json"
        } else {
            "pb"
        };
        let c = ctx();
        let mut join = EventJoin::new(100, std::time::Duration::from_secs(60));
        for name in LOGS {
            let body = fixture(&format!("{name}.{ext}"));
            let out = map_logs(&decode_logs(&body, format).expect("decodes"), &c).expect("maps");
            assert_eq!(out.event_count(), 1, "{name}");
            assert_eq!(out.other_logs + out.rejected, 0);
            for (key, ev) in out.events {
                assert!(join.offer("org_test", key, ev, c.now));
            }
        }
        let mut t = traces("openllmetry_events_mode_traces", format);
        let r = &mut t.records[0];
        assert!(
            r.request_body.is_none(),
            "events mode: no content on the span"
        );
        let (tid, sid) = (
            r.trace_id.clone().unwrap_or_default(),
            r.span_id.clone().unwrap_or_default(),
        );
        let ev = join
            .get("org_test", &tid, &sid, c.now)
            .expect("events wait for the span");
        apply_events(r, &ev, &c);
        join.stored("org_test", &tid, &sid, c.now);
        assert_json_snapshot!(format!("events_joined_{ext}"), record_json(r));
        let req: Value =
            serde_json::from_str(r.request_body.as_deref().unwrap_or("")).expect("json");
        assert_eq!(
            req["messages"],
            json!([{"role": "user", "parts": [{"type": "text", "content": "Name the largest planet in the solar system."}]}])
        );
        let resp: Value =
            serde_json::from_str(r.response_body.as_deref().unwrap_or("")).expect("json");
        assert_eq!(resp["messages"][0]["finish_reason"], "stop");
        assert_eq!(resp["id"], "chatcmpl-FIXTURE0001", "span attributes stay");
    }
}

#[test]
fn association_properties_map_like_gateway_headers() {
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
        "name": "openai.chat", "kind": 3,
        "startTimeUnixNano": "1795341591482832214", "endTimeUnixNano": "1795341591496955505",
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.system", "value": {"stringValue": "OpenAI"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 5}},
            {"key": "traceloop.association.properties.Helicone-User-Id", "value": {"stringValue": "u_42"}},
            {"key": "traceloop.association.properties.Helicone-Session-Id", "value": {"stringValue": "s1"}},
            {"key": "traceloop.association.properties.helicone-session-path", "value": {"stringValue": "/a/b"}},
            {"key": "traceloop.association.properties.Loupe-Session-Name", "value": {"stringValue": "Chat"}},
            {"key": "traceloop.association.properties.Helicone-Property-Env", "value": {"stringValue": "prod"}},
            {"key": "traceloop.association.properties.Helicone-Auth", "value": {"stringValue": "Bearer sk-secret"}},
            {"key": "traceloop.association.properties.chat_id", "value": {"stringValue": "c9"}},
            {"key": "traceloop.workflow.name", "value": {"stringValue": "qa"}},
            {"key": "traceloop.entity.path", "value": {"stringValue": "qa.answer"}},
            {"key": "gen_ai.request.reasoning_effort", "value": {"arrayValue": {}}},
            {"key": "custom.flag", "value": {"boolValue": true}}
        ],
        "status": {"code": 2, "message": "boom"}
    }]}]}]});
    let req = decode_traces(body.to_string().as_bytes(), OtlpFormat::Json).expect("decodes");
    let out = map_traces(&req, &ctx()).expect("maps");
    let r = &out.records[0];
    assert_eq!(r.user_id.as_deref(), Some("u_42"));
    assert_eq!(r.session_id.as_deref(), Some("s1"));
    assert_eq!(r.session_path.as_deref(), Some("/a/b"));
    assert_eq!(r.session_name.as_deref(), Some("Chat"));
    assert_eq!(r.provider, "openai");
    assert_eq!(r.status, 500);
    assert_eq!(r.error_message.as_deref(), Some("boom"));
    assert_eq!(r.completion_tokens, 5);
    let props: Vec<(&str, &str)> = r
        .properties
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        props,
        vec![
            ("chat_id", "c9"),
            ("custom.flag", "true"),
            ("env", "prod"),
            ("gen_ai.request.reasoning_effort", "[]"),
            ("traceloop.entity.path", "qa.answer"),
            ("traceloop.workflow.name", "qa"),
        ]
    );
    assert!(
        !format!("{r:?}").contains("sk-secret"),
        "Helicone-Auth is never stored"
    );
}

#[test]
fn non_llm_spans_and_missing_timestamps() {
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060709",
         "name": "qa.workflow", "attributes": [{"key": "traceloop.span.kind", "value": {"stringValue": "workflow"}}]},
        {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "010203040506070a",
         "parentSpanId": "0102030405060709", "name": "openai.chat",
         "attributes": [
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}}],
         "status": {}},
        {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "010203040506070b",
         "name": "openai.chat", "startTimeUnixNano": "946684799000000000",
         "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}}]}
    ]}]}]});
    let c = ctx();
    let req = decode_traces(body.to_string().as_bytes(), OtlpFormat::Json).expect("decodes");
    let out = map_traces(&req, &c).expect("maps");
    assert_eq!(out.other_spans, 1);
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.rejected, 1, "a span from 1999 is outside the window");
    assert!(
        out.message().contains("010203040506070b"),
        "{}",
        out.message()
    );
    let r = &out.records[0];
    assert_eq!(r.created_at, c.now, "no timestamps: now");
    assert_eq!(r.latency_ms, 0);
    assert_eq!(r.cost_usd, None, "no usage: unknown cost, not zero");
    assert!(!r.price_known);
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let c = ctx();
    // Truncated protobuf.
    let pb = fixture("openllmetry_chat_traces.pb");
    let e = decode_traces(&pb[..pb.len() / 2], OtlpFormat::Protobuf).expect_err("truncated");
    assert!(e.to_string().contains("not a valid protobuf"), "{e}");
    // Bad hex ids in JSON.
    let bad = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "0102030405060708"}]}]}]});
    let e = decode_traces(bad.to_string().as_bytes(), OtlpFormat::Json).expect_err("bad hex");
    assert!(e.to_string().contains("OTLP/JSON"), "{e}");
    // Ids of the wrong length (valid hex).
    let bad = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "0102", "spanId": "0000000000000000"}]}]}]});
    let req = decode_traces(bad.to_string().as_bytes(), OtlpFormat::Json).expect("decodes");
    let e = map_traces(&req, &c).expect_err("bad ids");
    assert_json_snapshot!("bad_ids", common::err_json(&e));
    // Protobuf body sent as JSON.
    assert!(decode_traces(&pb, OtlpFormat::Json).is_err());
    // Enum names instead of integers (not OTLP/JSON).
    let bad =
        json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SPAN_KIND_CLIENT"}]}]}]});
    assert!(decode_traces(bad.to_string().as_bytes(), OtlpFormat::Json).is_err());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn decode_and_map(bytes: &[u8]) {
        let c = ctx();
        for format in [OtlpFormat::Protobuf, OtlpFormat::Json] {
            if let Ok(req) = decode_traces(bytes, format) {
                let _ = map_traces(&req, &c);
            }
            if let Ok(req) = decode_logs(bytes, format) {
                let _ = map_logs(&req, &c);
            }
        }
        let _ = otlp::decode_content_encoding(bytes, Some("gzip"), 1 << 16);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            decode_and_map(&bytes);
        }

        #[test]
        fn mutated_captures_never_panic(
            which in 0usize..9,
            json in any::<bool>(),
            cut in any::<prop::sample::Index>(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let names: Vec<&str> = TRACES.iter().chain(LOGS.iter()).copied().collect();
            let mut bytes = fixture(&format!("{}.{}", names[which], if json { "json" } else { "pb" }));
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let n = cut.index(bytes.len() + 1);
            bytes.truncate(n);
            decode_and_map(&bytes);
        }
    }
}
