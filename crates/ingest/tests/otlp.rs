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
        // Every span is a `spans` row; the LLM span's links to its record and does not repeat
        // the prompts and completions the record holds.
        assert_eq!(pb.spans.len(), pb.records.len() + pb.other_spans, "{name}");
        let row = pb
            .spans
            .iter()
            .find(|s| s.request_id.is_some())
            .expect("the LLM span's row");
        assert_eq!(row.request_id, Some(r.request_id));
        assert_eq!(Some(&row.trace_id), r.trace_id.as_ref());
        assert!(!row.attributes.contains("gen_ai.input.messages"), "{name}");
        assert!(!row.attributes.contains("gen_ai.prompt.0"), "{name}");
        assert_json_snapshot!(format!("spans__{name}"), spans_json(&pb.spans));
    }
}

fn spans_json(spans: &[loupe_model::SpanRecord]) -> Value {
    let rows: Vec<Value> = spans
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).expect("json");
            for col in ["attributes", "resource", "events", "links"] {
                if let Some(t) = v[col].as_str() {
                    v[col] = serde_json::from_str(t).expect("JSON columns");
                }
            }
            v
        })
        .collect();
    Value::Array(rows)
}

#[test]
fn a_workflow_tree_keeps_parents_sessions_events_and_links() {
    let t = "0af7651916cd43dd8448eb211c80319c";
    let assoc = |k: &str, v: &str| json!({"key": format!("traceloop.association.properties.{k}"), "value": {"stringValue": v}});
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "support-bot"}}]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.langchain", "version": "0.1"}, "spans": [
        {"traceId": t, "spanId": "00f067aa0ba902b7", "name": "answer.workflow", "kind": 1,
         "startTimeUnixNano": "1795341591000000000", "endTimeUnixNano": "1795341592250000000",
         "attributes": [assoc("Helicone-Session-Id", "sess-9"), assoc("Helicone-User-Id", "u1"),
                        assoc("Helicone-Property-Tier", "gold"),
                        {"key": "traceloop.entity.input", "value": {"stringValue": "{\"q\": \"hi\"}"}}],
         "events": [{"timeUnixNano": "1795341591500000000", "name": "retry",
                     "attributes": [{"key": "attempt", "value": {"intValue": "2"}}]}],
         "links": [{"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "53995c3f42cd8ad8"}],
         "status": {"code": 1}},
        {"traceId": t, "spanId": "00f067aa0ba902b8", "parentSpanId": "00f067aa0ba902b7",
         "name": "search.tool", "kind": 3,
         "startTimeUnixNano": "1795341591100000000", "endTimeUnixNano": "1795341591300000000",
         "attributes": [assoc("Helicone-Session-Id", "sess-9")],
         "status": {"code": 2, "message": "index unavailable"}}
    ]}]}]});
    let req = decode_traces(body.to_string().as_bytes(), OtlpFormat::Json).expect("decodes");
    let out = map_traces(&req, &ctx()).expect("maps");
    assert_eq!(
        (out.records.len(), out.other_spans, out.rejected),
        (0, 2, 0)
    );
    let (wf, tool) = (&out.spans[0], &out.spans[1]);
    assert_eq!(wf.kind, "internal");
    assert_eq!(tool.kind, "client");
    assert_eq!(wf.status, "ok");
    assert_eq!(
        (tool.status.as_str(), tool.status_message.as_deref()),
        ("error", Some("index unavailable"))
    );
    assert_eq!(wf.duration_ms, 1250);
    assert_eq!(wf.session_id.as_deref(), Some("sess-9"));
    assert_eq!(wf.user_id.as_deref(), Some("u1"));
    assert_eq!(wf.properties.get("tier").map(String::as_str), Some("gold"));
    assert_eq!(tool.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(wf.service_name.as_deref(), Some("support-bot"));
    assert_eq!(
        wf.scope_name.as_deref(),
        Some("opentelemetry.instrumentation.langchain")
    );
    let events: Value = serde_json::from_str(wf.events.as_deref().expect("events")).expect("json");
    assert_eq!(
        events,
        json!([{"name": "retry", "time": "2026-11-22T09:59:51.500000000Z", "attributes": {"attempt": 2}}])
    );
    let links: Value = serde_json::from_str(wf.links.as_deref().expect("links")).expect("json");
    assert_eq!(links[0]["span_id"], "53995c3f42cd8ad8");
    // Workflow attributes are kept whole (only an LLM span leaves its bodies to the record).
    assert!(wf.attributes.contains("traceloop.entity.input"));
    assert_eq!(tool.events, None);
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
    // Every stored span is a `spans` row; the LLM call's row links to its record.
    assert_eq!(out.spans.len(), 2, "the rejected span is not stored either");
    let (wf, llm) = (&out.spans[0], &out.spans[1]);
    assert_eq!(wf.name, "qa.workflow");
    assert_eq!(wf.request_id, None);
    assert_eq!(wf.parent_span_id, None);
    assert_eq!(wf.status, "unset");
    assert_eq!(wf.org_id, "org_test");
    let attrs: Value = serde_json::from_str(&wf.attributes).expect("json");
    assert_eq!(attrs, json!({"traceloop.span.kind": "workflow"}));
    assert_eq!(llm.parent_span_id.as_deref(), Some("0102030405060709"));
    assert_eq!(llm.request_id, Some(out.records[0].request_id));
    assert_eq!(llm.span_uid, out.records[0].request_id);
    assert_ne!(wf.span_uid, llm.span_uid);
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
