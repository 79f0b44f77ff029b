//! Black-box tests of the OTLP/HTTP receiver (`/v1/traces`, `/v1/logs`) of the `loupe` binary,
//! fed the real exporter captures in `testdata/otlp/`; results are read back through HQL.

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{Loupe, client};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/otlp")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

async fn post(
    l: &Loupe,
    path: &str,
    ct: &str,
    gz: bool,
    body: Vec<u8>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = client()
        .post(l.url(path))
        .header("content-type", ct)
        .bearer_auth("unused-without-keys");
    let body = if gz {
        req = req.header("content-encoding", "gzip");
        gzip(&body)
    } else {
        body
    };
    let resp = req.body(body).send().await.expect("send");
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

async fn hql(l: &Loupe, q: &str) -> Value {
    let r = client()
        .post(l.url("/v1/hql"))
        .json(&json!({ "query": q }))
        .send()
        .await
        .expect("hql");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

#[tokio::test]
async fn traces_in_protobuf_and_json_are_stored_once_and_queryable() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(dir.path(), &[], &[]);

    let (s, h, body) = post(
        &l,
        "/v1/traces",
        PB,
        false,
        fixture("openllmetry_chat_traces.pb"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], PB);
    let resp = ExportTraceServiceResponse::decode(body.as_slice()).expect("protobuf answer");
    assert_eq!(resp.partial_success, None);

    // The exporter retries the same spans, as JSON and gzip this time: no second record.
    let (s, h, body) = post(
        &l,
        "/v1/traces",
        JSON,
        true,
        fixture("openllmetry_chat_traces.json"),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(h["content-type"], JSON);
    assert_eq!(body, b"{}");
    // Legacy OpenLLMetry and the OTel openai-v2 instrumentation.
    for f in [
        "openllmetry_legacy_0.47_chat_traces.pb",
        "otel_openai_v2_chat_stream_traces.pb",
    ] {
        let (s, _, _) = post(&l, "/v1/traces", PB, true, fixture(f)).await;
        assert_eq!(s, 200, "{f}");
    }

    let v = hql(
        &l,
        "requests | where trace_id == \"cad7573a32225ded0fe64c26013705f0\" \
         | project model, response_model, provider, prompt_tokens, cache_read_tokens, completion_tokens, cost_usd, span_id",
    )
    .await;
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1), "{v}");
    let row = &v["rows"][0];
    assert_eq!(row[0], "gpt-4o-mini");
    assert_eq!(row[1], "gpt-4o-mini-2024-07-18");
    assert_eq!(row[2], "openai");
    assert_eq!(
        (row[3].clone(), row[4].clone(), row[5].clone()),
        (json!(1250), json!(1024), json!(42))
    );
    assert!(
        row[6]
            .as_f64()
            .or_else(|| row[6].as_str().and_then(|s| s.parse().ok()))
            .is_some_and(|c: f64| c > 0.0),
        "{row}"
    );
    assert_eq!(row[7], "c347d585cdbed6ea");
    let v = hql(&l, "requests | summarize n = count()").await;
    assert_eq!(v["rows"][0][0], 3, "{v}");
    l.sigterm_and_wait();
}

#[tokio::test]
async fn event_logs_join_their_span_and_other_signals_are_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(dir.path(), &[], &[]);
    for f in [
        "openllmetry_events_user_message_logs.pb",
        "openllmetry_events_choice_logs.json",
    ] {
        let ct = if f.ends_with(".pb") { PB } else { JSON };
        let (s, _, body) = post(&l, "/v1/logs", ct, false, fixture(f)).await;
        assert_eq!(s, 200, "{f}: {}", String::from_utf8_lossy(&body));
    }
    post_span_and_check_joined_messages(&l).await;

    // Logs for a span already stored cannot be joined: partial success, not silence.
    let (s, _, body) = post(
        &l,
        "/v1/logs",
        JSON,
        false,
        fixture("openllmetry_events_choice_logs.json"),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "1", "{v}");

    // A workflow span is not an LLM call: a `spans` row, not a request.
    let wf = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060709", "name": "qa.workflow",
        "attributes": [{"key": "traceloop.span.kind", "value": {"stringValue": "workflow"}},
                       {"key": "traceloop.association.properties.Helicone-Session-Id", "value": {"stringValue": "s-7"}}]}]}]}]});
    let (s, _, body) = post(&l, "/v1/traces", JSON, false, wf.to_string().into_bytes()).await;
    assert_eq!(s, 200);
    assert_eq!(body, b"{}", "{}", String::from_utf8_lossy(&body));
    let v = hql(
        &l,
        "spans | sort by created_at asc | project name, is_llm, session_id, request_id",
    )
    .await;
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{v}");
    let llm = rows.iter().find(|r| r[1] == true).expect("the LLM span");
    let wf = rows
        .iter()
        .find(|r| r[0] == "qa.workflow")
        .expect("the workflow span");
    assert_eq!(wf[2], "s-7");
    assert_eq!(wf[3], Value::Null);
    // The LLM span's row points at its request record.
    let id = llm[3].as_str().expect("request_id");
    let v = hql(
        &l,
        &format!("requests | where request_id == \"{id}\" | count"),
    )
    .await;
    assert_eq!(v["rows"][0][0], 1, "{v}");
    l.sigterm_and_wait();
}

#[tokio::test]
async fn event_logs_acknowledged_before_their_span_survive_a_crash() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(dir.path(), &[], &[]);
    for f in [
        "openllmetry_events_user_message_logs.pb",
        "openllmetry_events_choice_logs.json",
    ] {
        let ct = if f.ends_with(".pb") { PB } else { JSON };
        let (s, _, body) = post(&l, "/v1/logs", ct, false, fixture(f)).await;
        assert_eq!(s, 200, "{f}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("partialSuccess"));
    }
    let m = client()
        .get(l.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        common::metric(&m, "loupe_otlp_join_waiting_spans"),
        Some(1),
        "{m}"
    );
    // SIGKILL: nothing gets a chance to flush. The span arrives after the restart.
    l.sigkill();
    let l = Loupe::start(dir.path(), &[], &[]);
    post_span_and_check_joined_messages(&l).await;
    // Joined: after another crash the events do not wait again, and late copies are refused.
    l.sigkill();
    let l = Loupe::start(dir.path(), &[], &[]);
    let (s, _, body) = post(
        &l,
        "/v1/logs",
        JSON,
        false,
        fixture("openllmetry_events_choice_logs.json"),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "1", "{v}");
    l.sigterm_and_wait();
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(
        dir.path(),
        &[],
        &[("LOUPE__SERVER__MAX_BODY_BYTES", "100000")],
    );
    let pb = fixture("openllmetry_chat_traces.pb");

    // Truncated protobuf: 400 with a google.rpc.Status in protobuf.
    let (s, h, body) = post(&l, "/v1/traces", PB, false, pb[..pb.len() - 7].to_vec()).await;
    assert_eq!(s, 400);
    assert_eq!(h["content-type"], PB);
    assert!(String::from_utf8_lossy(&body).contains("not a valid protobuf"));

    // Wrong content type.
    let (s, _, body) = post(&l, "/v1/traces", "text/plain", false, pb.clone()).await;
    assert_eq!(s, 400);
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("application/x-protobuf")),
        "{v}"
    );

    // Bad hex ids.
    let bad = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-hex", "spanId": "0102030405060708"}]}]}]});
    let (s, _, body) = post(&l, "/v1/traces", JSON, false, bad.to_string().into_bytes()).await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));

    // Oversize, and a gzip bomb (tiny compressed, huge inflated).
    let (s, _, _) = post(&l, "/v1/traces", PB, false, vec![0u8; 200_000]).await;
    assert_eq!(s, 413);
    let (s, _, body) = post(&l, "/v1/traces", JSON, true, vec![b' '; 50_000_000]).await;
    assert_eq!(s, 413, "{}", String::from_utf8_lossy(&body));
    // Bad gzip.
    let (s, _, _) = client()
        .post(l.url("/v1/logs"))
        .header("content-type", PB)
        .header("content-encoding", "gzip")
        .body(pb.clone())
        .send()
        .await
        .map(|r| (r.status(), (), ()))
        .expect("send");
    assert_eq!(s, 400);

    let v = hql(&l, "requests | summarize n = count()").await;
    assert_eq!(
        v["rows"][0][0], 0,
        "nothing stored from rejected bodies: {v}"
    );
    l.sigterm_and_wait();
}

#[tokio::test]
async fn grpc_export_stores_the_same_records() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(
        dir.path(),
        &[],
        &[("LOUPE__OTLP__GRPC_LISTEN", "127.0.0.1:0")],
    );
    const PREFIX: &str = "loupe OTLP/gRPC listening on ";
    // Printed before the HTTP address line, which Loupe::start waited for.
    let text = l.proc.stderr_text();
    let line = text
        .lines()
        .find(|s| s.starts_with(PREFIX))
        .unwrap_or_else(|| panic!("no gRPC address line in:\n{text}"));
    let addr = line[PREFIX.len()..].trim().to_string();
    let mut c = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let req =
        ExportTraceServiceRequest::decode(fixture("otel_openai_v2_chat_traces.pb").as_slice())
            .expect("fixture");
    for _ in 0..2 {
        let mut r = tonic::Request::new(req.clone());
        r.metadata_mut()
            .insert("authorization", "Bearer unused".parse().expect("metadata"));
        let resp = c.export(r).await.expect("export").into_inner();
        assert_eq!(resp.partial_success, None);
    }
    // A workflow span (no GenAI attributes, its own id): stored in `spans` only.
    let mut wf = req.clone();
    for rs in &mut wf.resource_spans {
        for ss in &mut rs.scope_spans {
            for sp in &mut ss.spans {
                sp.attributes.clear();
                sp.span_id = vec![9; 8];
            }
        }
    }
    let resp = c.export(wf).await.expect("export").into_inner();
    assert_eq!(resp.partial_success, None);
    let v = hql(&l, "spans | summarize n = count(), llm = countif(is_llm)").await;
    assert_eq!(v["rows"], json!([[2, 1]]), "{v}");
    // Bad ids: INVALID_ARGUMENT.
    let mut bad = req.clone();
    bad.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
    let err = c.export(bad).await.expect_err("bad ids");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("traceId"), "{}", err.message());

    let v = hql(
        &l,
        "requests | project model, prompt_tokens, completion_tokens",
    )
    .await;
    assert_eq!(v["rows"], json!([["gpt-4o-mini", 1250, 42]]), "{v}");
    l.sigterm_and_wait();
}

#[tokio::test]
async fn api_keys_are_required_once_they_exist() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_str().expect("utf8 path");
    let (st, key, _) =
        common::run_loupe(&["keys", "create", "--org", "acme", "--data-dir", d], &[]);
    assert!(st.success());
    let key = key.trim().to_string();
    let l = Loupe::start(
        dir.path(),
        &[],
        &[("LOUPE__OTLP__GRPC_LISTEN", "127.0.0.1:0")],
    );
    let pb = fixture("openllmetry_chat_traces.pb");

    let (s, h, body) = post(&l, "/v1/traces", PB, false, pb.clone()).await;
    assert_eq!(s, 401, "a wrong key");
    assert_eq!(
        h["content-type"], PB,
        "errors answer in the request's encoding"
    );
    assert!(String::from_utf8_lossy(&body).contains("invalid API key"));
    let r = client()
        .post(l.url("/v1/traces"))
        .header("content-type", PB)
        .header("authorization", format!("Bearer {key}"))
        .body(pb.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);

    let text = l.proc.stderr_text();
    const PREFIX: &str = "loupe OTLP/gRPC listening on ";
    let addr = text
        .lines()
        .find_map(|s| s.strip_prefix(PREFIX))
        .expect("gRPC address")
        .trim()
        .to_string();
    let mut c = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let req = ExportTraceServiceRequest::decode(pb.as_slice()).expect("fixture");
    let err = c.export(req.clone()).await.expect_err("no key");
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut r = tonic::Request::new(req);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("metadata"),
    );
    c.export(r).await.expect("with the key");
    drop(c);

    let v: Value = client()
        .post(l.url("/v1/hql"))
        .bearer_auth(&key)
        .json(&json!({"query": "requests | summarize n = count()"}))
        .send()
        .await
        .expect("hql")
        .json()
        .await
        .expect("json");
    assert_eq!(v["rows"][0][0], 1, "stored once, under the key's org: {v}");
    l.sigterm_and_wait();
}

#[tokio::test]
async fn a_session_shows_its_otel_spans_as_trees() {
    let dir = tempfile::tempdir().expect("tmp");
    let l = Loupe::start(dir.path(), &[], &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        - 60_000_000_000;
    let t = |ms: u64| (now + ms * 1_000_000).to_string();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sess = json!({"key": "traceloop.association.properties.Helicone-Session-Id", "value": {"stringValue": "sess-otel"}});
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bot"}}]},
        "scopeSpans": [{"spans": [
        {"traceId": trace, "spanId": "00f067aa0ba902b7", "name": "answer.workflow", "kind": 1,
         "startTimeUnixNano": t(0), "endTimeUnixNano": t(900), "attributes": [sess]},
        {"traceId": trace, "spanId": "00f067aa0ba902b8", "parentSpanId": "00f067aa0ba902b7",
         "name": "search.tool", "startTimeUnixNano": t(10), "endTimeUnixNano": t(100),
         "status": {"code": 2, "message": "index down"}},
        {"traceId": trace, "spanId": "00f067aa0ba902b9", "parentSpanId": "00f067aa0ba902b7",
         "name": "openai.chat", "kind": 3, "startTimeUnixNano": t(120), "endTimeUnixNano": t(800),
         "attributes": [sess,
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "100"}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "20"}}]}
    ]}]}]});
    let (s, _, b) = post(&l, "/v1/traces", JSON, false, body.to_string().into_bytes()).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
    let r = client()
        .get(l.url("/v1/analytics/sessions/sess-otel?range=24h"))
        .send()
        .await
        .expect("session");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    // The request tree has the one LLM call; the traces hold all three spans as one tree.
    assert_eq!(v["tree"]["request_count"], 1, "{v}");
    let traces = v["traces"].as_array().expect("traces");
    assert_eq!(traces.len(), 1, "{v}");
    let root = &traces[0];
    assert_eq!(root["name"], "answer.workflow");
    assert_eq!(root["kind"], "span");
    let kids: Vec<&str> = root["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(kids, ["search.tool", "openai.chat"], "in start order: {v}");
    let tool = &root["children"][0];
    assert_eq!(
        (tool["status"].as_str(), tool["status_message"].as_str()),
        (Some("error"), Some("index down"))
    );
    let llm = &root["children"][1];
    assert_eq!(llm["model"], "gpt-4o-mini");
    assert_eq!(llm["span_kind"], "client");
    assert!(llm["request_id"].is_string());
    assert!(
        llm["cost_usd"].is_string() || llm["cost_usd"].is_number(),
        "{llm}"
    );
    // A session known only from spans (no LLM call) is found too; an unknown one is a 404.
    let r = client()
        .get(l.url("/v1/analytics/sessions/nope?range=24h"))
        .send()
        .await
        .expect("session");
    assert_eq!(r.status(), 404);
    l.sigterm_and_wait();
}

/// Posts the traces of the events-mode capture and checks that its LLM span's record carries the
/// messages of the event logs posted before (the join).
async fn post_span_and_check_joined_messages(l: &Loupe) {
    let (s, _, _) = post(
        l,
        "/v1/traces",
        PB,
        false,
        fixture("openllmetry_events_mode_traces.pb"),
    )
    .await;
    assert_eq!(s, 200);
    let v = hql(
        l,
        "requests | where span_id == \"66267a40c0fb55c3\" | project request_body, response_body",
    )
    .await;
    let req: Value =
        serde_json::from_str(v["rows"][0][0].as_str().expect("request_body")).expect("json");
    assert_eq!(req["messages"][0]["role"], "user", "{v}");
    let resp: Value =
        serde_json::from_str(v["rows"][0][1].as_str().expect("response_body")).expect("json");
    assert_eq!(
        resp["messages"][0]["parts"][0]["content"], "Jupiter.",
        "{v}"
    );
}
