//! The gateway against a mock provider on 127.0.0.1: client disconnects mid-stream cancel the
//! upstream call and record the partial call; a failing sink never fails a call (fail-open,
//! counted); unreachable providers answer 502 in OpenAI's shape and are recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use futures::future::BoxFuture;
use loupe_gateway::{
    Gateway, GatewayConfig, KeyResolver, ProviderConfig, ProviderKind, ProvidersConfig, Secret,
};
use loupe_model::{AppendAck, EventSink, PriceTable, RequestRecord, SinkError};
use loupe_testkit::{CollectSink as Collect, serve_loopback as serve};

struct NoKeys;
impl KeyResolver for NoKeys {
    fn enabled(&self) -> bool {
        false
    }
    fn org_of(&self, _: &str) -> Option<String> {
        None
    }
}

/// Set when the mock's response stream is dropped (the gateway hung up on it).
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A provider streaming one chunk every 50 ms, 200 chunks (10 s) unless hung up on.
async fn slow_provider(hung_up: Arc<AtomicBool>, sent: Arc<AtomicUsize>) -> String {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let hung_up = hung_up.clone();
            let sent = sent.clone();
            async move {
                let flag = DropFlag(hung_up);
                let s = futures::stream::unfold((0u32, flag), move |(i, flag)| {
                    let sent = sent.clone();
                    async move {
                        if i >= 200 {
                            return None;
                        }
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                        let ev = format!(
                            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}}}}],\"usage\":null}}\n\n"
                        );
                        Some((Ok::<_, std::io::Error>(ev), (i + 1, flag)))
                    }
                });
                axum::response::Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::from_stream(s))
                    .expect("response")
            }
        }),
    );
    serve(app).await
}

fn providers(base: &str) -> ProvidersConfig {
    let mut p = ProvidersConfig::default();
    p.0.insert(
        "openai".into(),
        ProviderConfig {
            kind: ProviderKind::Openai,
            base_url: format!("{base}/v1"),
            api_key: Secret("sk-test-openai-0001".into()),
            ..ProviderConfig::default()
        },
    );
    p
}

async fn gateway(base: &str, sink: Arc<Collect>) -> (Arc<Gateway>, String) {
    let prices = Arc::new(PriceTable::bundled().expect("prices"));
    let gw = Gateway::new(
        GatewayConfig::default(),
        providers(base),
        prices,
        sink,
        Arc::new(NoKeys),
    )
    .expect("gateway");
    let url = serve(gw.router()).await;
    (gw, url)
}

const CHAT: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

#[tokio::test]
async fn a_client_hanging_up_mid_stream_cancels_upstream_and_records_the_partial_call() {
    let hung_up = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let base = slow_provider(hung_up.clone(), sent.clone()).await;
    let sink = Arc::new(Collect::default());
    let (gw, url) = gateway(&base, sink.clone()).await;

    let client = reqwest::Client::new();
    let mut resp = client
        .post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("Helicone-Property-Step", "draft")
        .body(CHAT)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    // Read two chunks, then hang up.
    for _ in 0..2 {
        let c = resp.chunk().await.expect("chunk").expect("some");
        assert!(String::from_utf8_lossy(&c).starts_with("data: "));
    }
    drop(resp);
    // The provider sees the gateway hang up well before its 200 chunks are out.
    for _ in 0..100 {
        if hung_up.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        hung_up.load(Ordering::SeqCst),
        "upstream call not cancelled"
    );
    assert!(
        sent.load(Ordering::SeqCst) < 100,
        "{} chunks sent",
        sent.load(Ordering::SeqCst)
    );
    gw.shutdown().await;
    let recs = sink.records.lock().expect("lock").clone();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.error_type.as_deref(), Some("client_disconnected"));
    assert!(r.stream && r.ttft_ms.is_some());
    assert_eq!(r.properties.get("step").map(String::as_str), Some("draft"));
    assert_eq!(r.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert!(
        gw.render_prometheus()
            .contains("loupe_gateway_client_disconnects_total 1")
    );
}

#[tokio::test]
async fn a_failing_sink_never_fails_a_call() {
    let app = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            (
                [("content-type", "application/json")],
                r#"{"id":"x","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#,
            )
        }),
    );
    let base = serve(app).await;
    let sink = Arc::new(Collect {
        fail: true,
        ..Collect::default()
    });
    let (gw, url) = gateway(&base, sink).await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let r = client
            .post(format!("{url}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(r#"{"model":"gpt-4o-mini","messages":[]}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        assert!(r.text().await.expect("body").contains("\"ok\""));
    }
    gw.shutdown().await;
    let m = gw.render_prometheus();
    assert!(m.contains("loupe_gateway_records_dropped_total 5"), "{m}");
    assert!(m.contains("loupe_gateway_records_sent_total 0"), "{m}");
}

#[tokio::test]
async fn bad_input_and_unreachable_providers_answer_in_openai_shape() {
    // A port nothing listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", l.local_addr().expect("addr"));
    drop(l);
    let sink = Arc::new(Collect::default());
    let (gw, url) = gateway(&dead, sink.clone()).await;
    let client = reqwest::Client::new();
    let post = |body: &'static str| {
        client
            .post(format!("{url}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = post(r#"{"model":"gpt-4o-mini","messages":[]}"#)
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach provider 'openai'")),
        "{v}"
    );
    let r = post(r#"{"messages":[]}"#).await.expect("send");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'model' is required")),
        "{v}"
    );
    let r = post("not json").await.expect("send");
    assert_eq!(r.status(), 400);
    // A Claude model over chat/completions is translated; with no Anthropic key configured and
    // none sent, it stops here with a 401 that says how to fix it (nothing leaves the machine).
    let r = post(r#"{"model":"claude-haiku-4-5","messages":[]}"#)
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("providers.anthropic.api_key")),
        "{v}"
    );
    let r = client
        .post(format!("{url}/v1/embeddings"))
        .body(r#"{"model":"claude-haiku-4-5","input":"x"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "Anthropic has no embeddings endpoint");
    // Anthropic's error shape on /v1/messages.
    let r = client
        .post(format!("{url}/v1/messages"))
        .body("{")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["type"], "error");
    gw.shutdown().await;
    let recs = sink.records.lock().expect("lock").clone();
    assert_eq!(recs.len(), 1, "only the forwarded call is recorded");
    assert_eq!(recs[0].status, 502);
    assert_eq!(recs[0].error_type.as_deref(), Some("upstream_unreachable"));
}

mod with_fixtures {
    //! Against testkit's mock provider (recorded fixtures).
    use super::*;

    use loupe_model::Source;
    use loupe_testkit::mock_upstream::{MockUpstream, provider_fixture};
    use serde_json::{Value, json};

    const OPENAI_KEY: &str = "sk-test-openai-upstream-0001";
    const ANTHROPIC_KEY: &str = "sk-ant-test-upstream-0001";
    const GEMINI_KEY: &str = "gm-test-upstream-key-0001";
    const AZURE_KEY: &str = "az-test-upstream-key-0001";
    const LOUPE_KEY: &str = "loupe_test_acme_key_0001";
    const CALLER_KEY: &str = "sk-caller-own-key-0001";

    struct Env {
        mock: MockUpstream,
        gw: Arc<Gateway>,
        url: String,
        sink: Arc<Collect>,
    }

    impl Env {
        /// Stops the recorder and hands back every record, in order.
        async fn records(&self) -> Vec<RequestRecord> {
            self.gw.shutdown().await;
            self.sink.records.lock().expect("lock").clone()
        }

        /// What the mock received through the gateway (not the test's direct calls).
        fn upstream(&self) -> Vec<loupe_testkit::mock_upstream::Received> {
            self.mock
                .requests()
                .into_iter()
                .filter(|q| q.header("x-test-direct").is_none())
                .collect()
        }

        async fn post(
            &self,
            path: &str,
            headers: &[(&str, &str)],
            body: &str,
        ) -> reqwest::Response {
            let mut r = reqwest::Client::new()
                .post(format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(body.to_owned());
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send().await.expect("send")
        }

        /// The same request sent straight to the mock: what the client would get without Loupe.
        async fn direct(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Bytes {
            let mut r = reqwest::Client::new()
                .post(format!("{}{path}", self.mock.url))
                .header("content-type", "application/json")
                .header("x-test-direct", "1")
                .body(body.to_owned());
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send().await.expect("send").bytes().await.expect("body")
        }
    }

    use bytes::Bytes;

    /// Every provider kind pointed at the mock, each with its own key.
    fn all_providers(mock: &str) -> ProvidersConfig {
        let mut p = ProvidersConfig::default();
        let mut set = |name: &str, kind: ProviderKind, base: String, key: &str| {
            let e = p.0.entry(name.to_owned()).or_default();
            e.kind = kind;
            e.base_url = base;
            e.api_key = Secret(key.to_owned());
            e.api_key_env = String::new();
        };
        set(
            "openai",
            ProviderKind::Openai,
            format!("{mock}/v1"),
            OPENAI_KEY,
        );
        set(
            "anthropic",
            ProviderKind::Anthropic,
            format!("{mock}/v1"),
            ANTHROPIC_KEY,
        );
        set(
            "gemini",
            ProviderKind::Openai,
            format!("{mock}/v1beta/openai"),
            GEMINI_KEY,
        );
        set("azure", ProviderKind::Azure, mock.to_owned(), AZURE_KEY);
        set(
            "local",
            ProviderKind::Openai,
            format!("{mock}/local/v1"),
            "",
        );
        if let Some(a) = p.0.get_mut("azure") {
            a.deployments
                .insert("gpt-4o-mini".into(), "prod-mini".into());
        }
        p
    }

    async fn start(cfg: GatewayConfig, keys: Arc<dyn KeyResolver>, sink: Arc<Collect>) -> Env {
        let mock = MockUpstream::start().await;
        let prices = Arc::new(PriceTable::bundled().expect("prices"));
        let gw = Gateway::new(cfg, all_providers(&mock.url), prices, sink.clone(), keys)
            .expect("gateway");
        let url = serve(gw.router()).await;
        Env {
            mock,
            gw,
            url,
            sink,
        }
    }

    async fn setup(timeout_secs: u64) -> Env {
        start(
            GatewayConfig {
                upstream_timeout_secs: timeout_secs,
                ..GatewayConfig::default()
            },
            Arc::new(NoKeys),
            Arc::new(Collect::default()),
        )
        .await
    }

    fn cost(r: &RequestRecord) -> Option<String> {
        r.cost_usd.map(|d| d.normalize().to_string())
    }

    /// The USD cost of a fixture from `expected_costs.json`.
    fn expected_cost(fixture: &str) -> String {
        let v: Value =
            serde_json::from_str(&provider_fixture("expected_costs.json")).expect("json");
        v[fixture]["cost_usd"].as_str().expect("vector").to_owned()
    }

    fn assert_no_secret(recs: &[RequestRecord], secrets: &[&str]) {
        for r in recs {
            let dump = format!("{r:?}");
            for s in secrets {
                assert!(!dump.contains(s), "{s} stored in {dump}");
            }
        }
    }

    /// The `data:` payloads of an SSE body (any line ending), `[DONE]` excluded.
    fn chunks(body: &str) -> Vec<Value> {
        body.split(['\n', '\r'])
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).expect("chunk json"))
            .collect()
    }

    async fn chat(url: &str, body: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{url}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("send")
    }

    #[tokio::test]
    async fn openai_json_is_passed_through_and_fully_recorded() {
        let env = setup(30).await;
        let body = provider_fixture("openai_chat_request.json");
        let r = env
            .post(
                "/v1/chat/completions",
                &[("openai-organization", "org-x")],
                &body,
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-request-id"], "req_json");
        assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "4999");
        let id = r.headers()["helicone-id"].to_str().expect("id").to_owned();
        assert_eq!(r.headers()["loupe-id"].to_str().expect("id"), id);
        let got = r.bytes().await.expect("body");
        assert_eq!(
            &got[..],
            provider_fixture("openai_chat_response.json").as_bytes()
        );

        let up = env.upstream();
        assert_eq!(up.len(), 1);
        let q = &up[0];
        assert_eq!(q.path, "/v1/chat/completions");
        assert_eq!(q.body, serde_json::from_str::<Value>(&body).expect("json"));
        assert_eq!(
            q.header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
        assert_eq!(q.header("openai-organization"), Some("org-x"));
        assert_eq!(
            q.headers
                .iter()
                .filter(|(k, _)| k == "content-type")
                .count(),
            1,
            "one content-type"
        );

        let recs = env.records().await;
        assert_eq!(recs.len(), 1);
        let rec = &recs[0];
        assert_eq!(rec.request_id.to_string(), id);
        assert_eq!(rec.org_id, "default");
        assert_eq!(rec.source, Source::Gateway);
        assert_eq!(
            (rec.provider.as_str(), rec.model.as_str()),
            ("openai", "gpt-4o-mini")
        );
        assert_eq!(
            rec.response_model.as_deref(),
            Some("gpt-4o-mini-2024-07-18")
        );
        assert_eq!(rec.path, "/v1/chat/completions");
        assert_eq!(rec.status, 200);
        assert!(!rec.stream && !rec.cache_hit && rec.ttft_ms.is_none());
        assert_eq!(
            (
                rec.prompt_tokens,
                rec.completion_tokens,
                rec.cache_read_tokens,
                rec.total_tokens
            ),
            (1250, 42, 1024, 1292)
        );
        assert!(rec.price_known);
        assert_eq!(cost(rec), Some(expected_cost("openai_chat_response.json")));
        assert!(rec.completed_at >= rec.created_at && rec.latency_ms >= 0);
        assert_eq!(rec.request_body.as_deref(), Some(body.as_str()));
        assert_eq!(
            rec.response_body.as_deref(),
            Some(provider_fixture("openai_chat_response.json").as_str())
        );
        let h: Vec<&str> = rec.upstream_headers.keys().map(String::as_str).collect();
        assert_eq!(
            h,
            [
                "openai-processing-ms",
                "x-ratelimit-remaining-requests",
                "x-request-id"
            ]
        );
        assert_no_secret(&recs, &[OPENAI_KEY]);
    }

    #[tokio::test]
    async fn streams_reach_the_client_byte_for_byte_in_every_line_ending_and_chunking() {
        let env = setup(30).await;
        let no_usage =
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let with_usage = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
        let mut calls = 0;
        for ending in ["lf", "crlf", "cr"] {
            for chunk_bytes in ["0", "7", "1"] {
                for body in [no_usage, with_usage] {
                    let h = [
                        ("x-mock-fixture", "recorded"),
                        ("x-mock-line-ending", ending),
                        ("x-mock-chunk-bytes", chunk_bytes),
                    ];
                    let want = env.direct("/v1/chat/completions", &h, body).await;
                    let r = env.post("/v1/chat/completions", &h, body).await;
                    assert_eq!(r.status(), 200);
                    assert!(
                        r.headers()["content-type"]
                            .to_str()
                            .is_ok_and(|c| c.starts_with("text/event-stream"))
                    );
                    let got = r.bytes().await.expect("stream");
                    calls += 1;
                    assert_eq!(
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(&want),
                        "{ending} / {chunk_bytes} / {body}"
                    );
                }
            }
        }
        // Loupe asked for usage every time; the provider got the client's body otherwise.
        let up = env.upstream();
        assert_eq!(up.len(), calls);
        for q in &up {
            assert_eq!(q.body["stream_options"], json!({"include_usage": true}));
            assert_eq!(q.body["messages"][0]["content"], "hi");
        }
        let recs = env.records().await;
        assert_eq!(recs.len(), calls);
        let want = expected_cost("openai_chat_stream.sse");
        for r in &recs {
            assert!(
                r.stream && r.status == 200 && r.error_type.is_none(),
                "{r:?}"
            );
            assert_eq!((r.prompt_tokens, r.completion_tokens), (17, 3));
            assert_eq!(cost(r).as_deref(), Some(want.as_str()));
            assert!(r.ttft_ms.is_some_and(|t| t <= r.latency_ms));
            assert_eq!(r.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
        }
    }

    #[tokio::test]
    async fn ttft_is_the_first_content_event_not_the_first_byte() {
        let env = setup(30).await;
        // mock-slow: the role-only chunk at once, the first text 50 ms later.
        let r = env
            .post(
                "/v1/chat/completions",
                &[],
                r#"{"model":"mock-slow","messages":[],"stream":true}"#,
            )
            .await;
        let text = r.text().await.expect("stream");
        assert!(text.ends_with("data: [DONE]\n\n"));
        let recs = env.records().await;
        let t = recs[0].ttft_ms.expect("ttft");
        assert!(t >= 45, "ttft {t} ms is before the first content");
        assert!(recs[0].latency_ms >= t);
    }

    #[tokio::test]
    async fn streamed_and_unstreamed_calls_cost_the_same() {
        let env = setup(30).await;
        let url = &env.url;
        let plain = chat(url, r#"{"model":"gpt-4o-mini","messages":[]}"#).await;
        assert_eq!(plain.status(), 200);
        let _ = plain.text().await;
        let s = chat(
            url,
            r#"{"model":"gpt-4o-mini","messages":[],"stream":true}"#,
        )
        .await;
        let text = s.text().await.expect("stream");
        assert!(!text.contains("\"choices\":[]"), "usage chunk leaked");
        assert!(
            !text.contains("usage"),
            "the client did not ask for usage: {text}"
        );
        assert!(text.ends_with("data: [DONE]\n\n"));
        let recs = env.records().await;
        assert_eq!(recs.len(), 2);
        assert!(recs[0].cost_usd.is_some() && recs[0].price_known);
        assert_eq!(recs[0].cost_usd, recs[1].cost_usd);
        assert_eq!(
            (recs[0].prompt_tokens, recs[0].completion_tokens),
            (recs[1].prompt_tokens, recs[1].completion_tokens)
        );
        assert!(recs[1].stream && recs[1].ttft_ms.is_some());
    }

    #[tokio::test]
    async fn completions_embeddings_responses_and_models() {
        let env = setup(30).await;
        // Legacy completions: JSON, and a stream whose usage Loupe asks for and hides.
        let r = env
            .post(
                "/v1/completions",
                &[],
                r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Largest planet?"}"#,
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.expect("body"),
            provider_fixture("openai_completions_response.json")
        );
        let body = r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Largest planet?","stream":true}"#;
        let want = env.direct("/v1/completions", &[], body).await;
        let got = env
            .post("/v1/completions", &[], body)
            .await
            .bytes()
            .await
            .expect("stream");
        assert_eq!(got, want);
        // Embeddings.
        let r = env
            .post(
                "/v1/embeddings",
                &[],
                r#"{"model":"text-embedding-3-small","input":["a","b"]}"#,
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2));
        // Responses: JSON and stream.
        let r = env
            .post(
                "/v1/responses",
                &[],
                r#"{"model":"gpt-4o-mini","input":"Largest planet?"}"#,
            )
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        let body = r#"{"model":"gpt-4o-mini","input":"Largest planet?","stream":true}"#;
        let got = env
            .post("/v1/responses", &[], body)
            .await
            .bytes()
            .await
            .expect("stream");
        assert_eq!(
            &got[..],
            provider_fixture("openai_responses_stream.sse").as_bytes()
        );
        // Models (not recorded).
        let r = reqwest::Client::new()
            .get(format!("{}/v1/models", env.url))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["object"], "list");

        let up = env.upstream();
        let paths: Vec<&str> = up.iter().map(|q| q.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/v1/completions",
                "/v1/completions",
                "/v1/embeddings",
                "/v1/responses",
                "/v1/responses",
                "/v1/models"
            ]
        );
        assert_eq!(up[1].body["stream_options"], json!({"include_usage": true}));
        assert!(
            up[4].body.get("stream_options").is_none(),
            "Responses streams carry usage"
        );
        assert_eq!(
            up[5].header("authorization"),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );

        let recs = env.records().await;
        assert_eq!(recs.len(), 5);
        let by_path = |p: &str, stream: bool| {
            recs.iter()
                .find(|r| r.path == p && r.stream == stream)
                .unwrap_or_else(|| panic!("{p} {stream}"))
        };
        for stream in [false, true] {
            let c = by_path("/v1/completions", stream);
            assert_eq!((c.prompt_tokens, c.completion_tokens), (9, 4), "{c:?}");
        }
        assert_eq!(
            by_path("/v1/completions", false).cost_usd,
            by_path("/v1/completions", true).cost_usd
        );
        let e = by_path("/v1/embeddings", false);
        assert_eq!(
            (e.prompt_tokens, e.completion_tokens, e.total_tokens),
            (8, 0, 8)
        );
        assert!(e.price_known && e.cost_usd.is_some());
        let (rj, rs) = (
            by_path("/v1/responses", false),
            by_path("/v1/responses", true),
        );
        assert_eq!((rj.prompt_tokens, rj.completion_tokens), (17, 3));
        assert_eq!((rs.prompt_tokens, rs.completion_tokens), (17, 3));
        assert_eq!(rj.cost_usd, rs.cost_usd);
        assert!(rj.cost_usd.is_some());
        assert!(rs.ttft_ms.is_some());
        assert_eq!(rs.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    }

    #[tokio::test]
    async fn anthropic_messages_native_json_and_stream() {
        let env = setup(30).await;
        let req = provider_fixture("anthropic_messages_request.json");
        let h = [
            ("x-api-key", "sk-ant-client-dummy-0001"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
        ];
        let r = env.post("/v1/messages", &h, &req).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["request-id"], "req_anthropic");
        assert_eq!(
            r.text().await.expect("body"),
            provider_fixture("anthropic_messages_response.json")
        );
        let stream_req = req.replace("\"stream\": false", "\"stream\": true");
        assert_ne!(stream_req, req);
        for ending in ["lf", "crlf"] {
            let mut hs = h.to_vec();
            hs.push(("x-mock-line-ending", ending));
            hs.push(("x-mock-chunk-bytes", "5"));
            let want = env.direct("/v1/messages", &hs, &stream_req).await;
            let got = env
                .post("/v1/messages", &hs, &stream_req)
                .await
                .bytes()
                .await
                .expect("stream");
            assert_eq!(got, want, "{ending}");
        }
        let up = env.upstream();
        assert_eq!(up.len(), 3);
        for q in &up {
            assert_eq!(q.path, "/v1/messages");
            assert_eq!(
                q.header("x-api-key"),
                Some(ANTHROPIC_KEY),
                "configured key wins"
            );
            assert_eq!(q.header("anthropic-version"), Some("2023-06-01"));
            assert_eq!(
                q.header("anthropic-beta"),
                Some("prompt-caching-2024-07-31")
            );
            assert!(q.header("authorization").is_none());
            assert!(q.body.get("stream_options").is_none());
        }
        let recs = env.records().await;
        assert_eq!(recs.len(), 3);
        let j = &recs[0];
        assert_eq!(
            (j.provider.as_str(), j.model.as_str()),
            ("anthropic", "claude-sonnet-4-5-20250929")
        );
        assert_eq!(j.path, "/v1/messages");
        assert_eq!(
            (j.prompt_tokens, j.completion_tokens, j.cache_read_tokens),
            (1821, 35, 1800)
        );
        assert_eq!(
            cost(j),
            Some(expected_cost("anthropic_messages_response.json"))
        );
        assert_eq!(
            j.upstream_headers.get("request-id").map(String::as_str),
            Some("req_anthropic")
        );
        assert_eq!(
            j.upstream_headers
                .get("anthropic-ratelimit-requests-remaining")
                .map(String::as_str),
            Some("49")
        );
        for s in &recs[1..] {
            assert!(s.stream && s.ttft_ms.is_some());
            // message_start usage overlaid with the last message_delta.
            assert_eq!(
                (s.prompt_tokens, s.completion_tokens, s.cache_write_tokens),
                (1821, 6, 1800)
            );
            assert_eq!(cost(s), Some(expected_cost("anthropic_stream.sse")));
            assert_eq!(
                s.response_model.as_deref(),
                Some("claude-sonnet-4-5-20250929")
            );
        }
        assert_no_secret(&recs, &[ANTHROPIC_KEY, "sk-ant-client-dummy-0001"]);
    }

    #[tokio::test]
    async fn chat_completions_to_claude_is_translated_both_ways() {
        let env = setup(30).await;
        let body = r#"{"model":"claude-sonnet-4-5-20250929","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Largest planet?"}],"max_tokens":64}"#;
        let r = env.post("/v1/chat/completions", &[], body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(v["choices"][0]["message"]["content"], "Jupiter.");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 1821);
        assert_eq!(v["usage"]["completion_tokens"], 35);
        assert_eq!(v["model"], "claude-sonnet-4-5-20250929");

        for include_usage in [false, true] {
            let body = if include_usage {
                r#"{"model":"anthropic/claude-sonnet-4-5-20250929","messages":[{"role":"user","content":"Largest planet?"}],"stream":true,"stream_options":{"include_usage":true}}"#
            } else {
                r#"{"model":"anthropic/claude-sonnet-4-5-20250929","messages":[{"role":"user","content":"Largest planet?"}],"stream":true}"#
            };
            let r = env
                .post(
                    "/v1/chat/completions",
                    &[("x-mock-line-ending", "crlf")],
                    body,
                )
                .await;
            assert_eq!(r.status(), 200);
            let text = r.text().await.expect("stream");
            assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
            let cs = chunks(&text);
            assert!(cs.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "msg_FIXTURE0002"));
            assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
            let content: String = cs
                .iter()
                .filter_map(|c| {
                    c.pointer("/choices/0/delta/content")
                        .and_then(Value::as_str)
                })
                .collect();
            assert_eq!(content, "Jupiter.");
            assert!(
                cs.iter()
                    .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("stop")))
            );
            let usage_chunks: Vec<&Value> =
                cs.iter().filter(|c| c["choices"] == json!([])).collect();
            if include_usage {
                assert_eq!(usage_chunks.len(), 1);
                assert_eq!(usage_chunks[0]["usage"]["prompt_tokens"], 1821);
                assert_eq!(usage_chunks[0]["usage"]["completion_tokens"], 6);
            } else {
                assert!(usage_chunks.is_empty(), "{text}");
            }
        }
        let up = env.upstream();
        assert_eq!(up.len(), 3);
        assert!(up.iter().all(|q| q.path == "/v1/messages"));
        assert_eq!(up[0].body["system"], "Be terse.");
        assert_eq!(up[0].body["max_tokens"], 64);
        assert_eq!(
            up[0].body["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Largest planet?"}]}])
        );
        assert_eq!(up[1].body["model"], "claude-sonnet-4-5-20250929");
        assert_eq!(up[1].body["stream"], true);
        assert!(up[1].body.get("stream_options").is_none());
        assert!(
            up.iter()
                .all(|q| q.header("x-api-key") == Some(ANTHROPIC_KEY)
                    && q.header("authorization").is_none()
                    && q.header("anthropic-version").is_some())
        );

        let recs = env.records().await;
        assert_eq!(recs.len(), 3);
        assert!(
            recs.iter()
                .all(|r| r.provider == "anthropic" && r.path == "/v1/chat/completions")
        );
        assert_eq!(
            cost(&recs[0]),
            Some(expected_cost("anthropic_messages_response.json"))
        );
        for s in &recs[1..] {
            assert_eq!(s.model, "claude-sonnet-4-5-20250929");
            assert_eq!(cost(s), Some(expected_cost("anthropic_stream.sse")));
            assert!(s.ttft_ms.is_some());
            let stored = s.response_body.as_deref().unwrap_or("");
            assert!(
                stored.contains("chat.completion.chunk"),
                "what the client got is stored"
            );
        }
    }

    #[tokio::test]
    async fn gemini_azure_and_custom_providers() {
        let env = setup(30).await;
        let ok = |r: reqwest::Response| async move {
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await;
        };
        ok(env
            .post(
                "/v1/chat/completions",
                &[],
                r#"{"model":"gemini-2.5-flash","messages":[]}"#,
            )
            .await)
        .await;
        ok(env
            .post(
                "/v1/chat/completions",
                &[],
                r#"{"model":"azure/gpt-4o-mini","messages":[]}"#,
            )
            .await)
        .await;
        ok(env
            .post(
                "/v1/embeddings",
                &[],
                r#"{"model":"azure/text-embedding-3-small","input":"x"}"#,
            )
            .await)
        .await;
        ok(env
            .post(
                "/v1/chat/completions",
                &[("authorization", &format!("Bearer {CALLER_KEY}"))],
                r#"{"model":"local/llama-3.1-8b","messages":[],"stream":true}"#,
            )
            .await)
        .await;
        let up = env.upstream();
        let g = &up[0];
        assert_eq!(g.path, "/v1beta/openai/chat/completions");
        assert_eq!(
            g.header("authorization"),
            Some(format!("Bearer {GEMINI_KEY}").as_str())
        );
        let a = &up[1];
        assert_eq!(a.path, "/openai/deployments/prod-mini/chat/completions");
        assert_eq!(a.query, "api-version=2024-10-21");
        assert_eq!(a.header("api-key"), Some(AZURE_KEY));
        assert!(a.header("authorization").is_none());
        assert_eq!(
            up[2].path,
            "/openai/deployments/text-embedding-3-small/embeddings"
        );
        let l = &up[3];
        assert_eq!(l.path, "/local/v1/chat/completions");
        assert_eq!(l.body["model"], "llama-3.1-8b");
        assert_eq!(l.body["stream_options"], json!({"include_usage": true}));
        // No key configured for it: the caller's key goes (no Loupe keys on this server).
        assert_eq!(
            l.header("authorization"),
            Some(format!("Bearer {CALLER_KEY}").as_str())
        );

        let recs = env.records().await;
        assert_eq!(recs.len(), 4);
        assert_eq!(
            (recs[0].provider.as_str(), recs[0].model.as_str()),
            ("gemini", "gemini-2.5-flash")
        );
        assert!(recs[0].price_known, "priced as gemini/gemini-2.5-flash");
        assert_eq!(
            (recs[1].provider.as_str(), recs[1].model.as_str()),
            ("azure", "gpt-4o-mini")
        );
        assert!(recs[1].price_known);
        assert_eq!(
            (recs[3].provider.as_str(), recs[3].model.as_str()),
            ("local", "llama-3.1-8b")
        );
        // An unpriced model is flagged, never $0.
        assert!(!recs[3].price_known && recs[3].cost_usd.is_none());
        assert!(recs[3].prompt_tokens > 0, "usage still recorded");
        assert_no_secret(&recs, &[GEMINI_KEY, AZURE_KEY, CALLER_KEY]);
    }

    #[tokio::test]
    async fn model_map_provider_prefix_and_fallback_rules() {
        let mut cfg = GatewayConfig::default();
        cfg.model_map
            .insert("fast".into(), "local/llama-3.1-8b".into());
        cfg.model_map.insert(
            "smart".into(),
            "anthropic/claude-sonnet-4-5-20250929".into(),
        );
        cfg.model_map
            .insert("gpt-4o-mini".into(), "gemini/gemini-2.5-flash".into());
        let env = start(cfg, Arc::new(NoKeys), Arc::new(Collect::default())).await;
        for model in [
            "fast",
            "smart",
            "gpt-4o-mini",
            "openai/gpt-4o-mini",
            "meta-llama/Llama-3-8B",
            "claude-haiku-4-5",
            "gemini-2.0-flash",
            "o3-mini",
        ] {
            let bearer = format!("Bearer {CALLER_KEY}");
            let r = env
                .post(
                    "/v1/chat/completions",
                    &[("authorization", &bearer)],
                    &json!({"model": model, "messages": []}).to_string(),
                )
                .await;
            assert_eq!(r.status(), 200, "{model}");
            let _ = r.bytes().await;
        }
        let up = env.upstream();
        let seen: Vec<(String, String)> = up
            .iter()
            .map(|q| {
                (
                    q.path.clone(),
                    q.body["model"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let want = [
            ("/local/v1/chat/completions", "llama-3.1-8b"),
            ("/v1/messages", "claude-sonnet-4-5-20250929"),
            ("/v1beta/openai/chat/completions", "gemini-2.5-flash"),
            ("/v1/chat/completions", "gpt-4o-mini"),
            ("/v1/chat/completions", "meta-llama/Llama-3-8B"),
            ("/v1/messages", "claude-haiku-4-5"),
            ("/v1beta/openai/chat/completions", "gemini-2.0-flash"),
            ("/v1/chat/completions", "o3-mini"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(seen, want);
        let recs = env.records().await;
        let providers: Vec<&str> = recs.iter().map(|r| r.provider.as_str()).collect();
        assert_eq!(
            providers,
            [
                "local",
                "anthropic",
                "gemini",
                "openai",
                "openai",
                "anthropic",
                "gemini",
                "openai"
            ]
        );

        // A map entry naming no configured provider is refused at start, with the fix.
        let mut bad = GatewayConfig::default();
        bad.model_map.insert("x".into(), "grok/llama".into());
        let err = Gateway::new(
            bad,
            ProvidersConfig::default(),
            Arc::new(PriceTable::bundled().expect("prices")),
            Arc::new(Collect::default()),
            Arc::new(NoKeys),
        )
        .expect_err("unknown provider");
        assert!(
            err.to_string()
                .contains("'grok' is not a configured provider"),
            "{err}"
        );
    }

    /// Loupe keys exist: `LOUPE_KEY` belongs to org `acme`.
    struct AcmeKeys;
    impl KeyResolver for AcmeKeys {
        fn enabled(&self) -> bool {
            true
        }
        fn org_of(&self, key: &str) -> Option<String> {
            (key == LOUPE_KEY).then(|| "acme".to_owned())
        }
    }

    #[tokio::test]
    async fn gateway_mode_and_passthrough_mode() {
        let env = start(
            GatewayConfig::default(),
            Arc::new(AcmeKeys),
            Arc::new(Collect::default()),
        )
        .await;
        let chat = r#"{"model":"gpt-4o-mini","messages":[]}"#;
        let loupe_bearer = format!("Bearer {LOUPE_KEY}");
        let caller_bearer = format!("Bearer {CALLER_KEY}");
        // (a) gateway mode: the Loupe key in Authorization, provider keys from config.
        let r = env
            .post(
                "/v1/chat/completions",
                &[("authorization", &loupe_bearer)],
                chat,
            )
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        // The anthropic SDK puts the Loupe key in x-api-key.
        let msg = provider_fixture("anthropic_messages_request.json");
        let r = env
            .post("/v1/messages", &[("x-api-key", LOUPE_KEY)], &msg)
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        // (b) passthrough: Helicone-Auth / Loupe-Auth carry the Loupe key, the caller's key goes up.
        for h in ["Helicone-Auth", "Loupe-Auth"] {
            let r = env
                .post(
                    "/v1/chat/completions",
                    &[(h, &loupe_bearer), ("authorization", &caller_bearer)],
                    chat,
                )
                .await;
            assert_eq!(r.status(), 200, "{h}");
            let _ = r.bytes().await;
        }
        let r = env
            .post(
                "/v1/messages",
                &[
                    ("helicone-auth", &loupe_bearer),
                    ("x-api-key", "sk-ant-caller-0001"),
                ],
                &msg,
            )
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        // Refused, nothing forwarded: a provider key where the Loupe key belongs, no key, a bad
        // Helicone-Auth.
        let before = env.upstream().len();
        for h in [
            vec![("authorization", caller_bearer.as_str())],
            vec![],
            vec![
                ("helicone-auth", "Bearer nope-nope-nope"),
                ("authorization", caller_bearer.as_str()),
            ],
        ] {
            let r = env.post("/v1/chat/completions", &h, chat).await;
            assert_eq!(r.status(), 401, "{h:?}");
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["error"]["type"], "authentication_error");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Loupe")),
                "{v}"
            );
        }
        let r = env
            .post("/v1/messages", &[("x-api-key", "sk-ant-wrong-0001")], &msg)
            .await;
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(env.upstream().len(), before);

        let up = env.upstream();
        let auth: Vec<Option<&str>> = up
            .iter()
            .map(|q| q.header("authorization").or(q.header("x-api-key")))
            .collect();
        let openai_bearer = format!("Bearer {OPENAI_KEY}");
        assert_eq!(
            auth,
            [
                Some(openai_bearer.as_str()),
                Some(ANTHROPIC_KEY),
                Some(caller_bearer.as_str()),
                Some(caller_bearer.as_str()),
                Some("sk-ant-caller-0001"),
            ]
        );
        let recs = env.records().await;
        assert_eq!(recs.len(), 5);
        assert!(recs.iter().all(|r| r.org_id == "acme"));
        assert_no_secret(
            &recs,
            &[
                LOUPE_KEY,
                CALLER_KEY,
                OPENAI_KEY,
                ANTHROPIC_KEY,
                "sk-ant-caller-0001",
            ],
        );
    }

    #[tokio::test]
    async fn helicone_and_loupe_headers() {
        let env = setup(30).await;
        let c = reqwest::Client::new();
        let send = |h: Vec<(&'static str, &'static str)>| {
            let mut r = c
                .post(format!("{}/v1/chat/completions", env.url))
                .header("content-type", "application/json")
                .header("authorization", "Bearer sk-caller-0000001")
                .body(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"my key is sk-caller-0000001"}],"user":"body_user"}"#);
            for (k, v) in h {
                r = r.header(k, v);
            }
            r.send()
        };
        let r = send(vec![
            ("Helicone-Request-Id", "not-a-uuid"),
            ("Loupe-Property-Team", "search"),
            ("Helicone-Property-Feature", "chat"),
            ("Helicone-Omit-Request", "true"),
            ("Helicone-Model-Override", "gpt-4o"),
            ("Helicone-Session-Id", "s-1"),
            ("Loupe-Session-Path", "/plan/search"),
            ("Helicone-Session-Name", "Trip"),
            ("Helicone-Cache-Enabled", "true"),
        ])
        .await
        .expect("send");
        let id = r.headers()["helicone-id"].to_str().expect("id").to_owned();
        assert_eq!(r.headers()["loupe-id"].to_str().expect("id"), id);
        assert!(uuid::Uuid::parse_str(&id).is_ok());
        let _ = r.text().await;
        let r = send(vec![
            ("Loupe-Request-Id", "4f0c1b0e-7a0e-4d6b-9c55-0b7f3c1e5d2a"),
            ("Helicone-User-Id", "header_user"),
            ("Loupe-Omit-Response", "TRUE"),
        ])
        .await
        .expect("send");
        assert_eq!(
            r.headers()["helicone-id"],
            "4f0c1b0e-7a0e-4d6b-9c55-0b7f3c1e5d2a"
        );
        let _ = r.text().await;
        // Version 0 / wrong variant / no dashes: not a Helicone request id.
        for bad in [
            "00000000-0000-0000-0000-000000000000",
            "4f0c1b0e-7a0e-4d6b-1c55-0b7f3c1e5d2a",
            "4f0c1b0e7a0e4d6b9c550b7f3c1e5d2a",
        ] {
            let r = c
                .post(format!("{}/v1/chat/completions", env.url))
                .header("helicone-request-id", bad)
                .body(r#"{"model":"gpt-4o-mini","messages":[]}"#)
                .send()
                .await
                .expect("send");
            assert_ne!(r.headers()["helicone-id"], bad);
            let _ = r.text().await;
        }
        // Nothing of Loupe's reaches the provider; the configured key does, not the caller's.
        for q in env.upstream() {
            assert!(
                q.headers
                    .iter()
                    .all(|(k, _)| !k.starts_with("helicone-") && !k.starts_with("loupe-")),
                "{:?}",
                q.headers
            );
            assert_eq!(
                q.header("authorization"),
                Some(format!("Bearer {OPENAI_KEY}").as_str())
            );
        }
        let recs = env.records().await;
        assert_eq!(recs.len(), 5);
        let (a, b) = (&recs[0], &recs[1]);
        assert_eq!(a.request_id.to_string(), id);
        assert_eq!(a.properties.get("team").map(String::as_str), Some("search"));
        assert_eq!(
            a.properties.get("feature").map(String::as_str),
            Some("chat")
        );
        assert_eq!(a.properties.len(), 2);
        assert_eq!(
            (
                a.session_id.as_deref(),
                a.session_path.as_deref(),
                a.session_name.as_deref()
            ),
            (Some("s-1"), Some("/plan/search"), Some("Trip"))
        );
        assert!(a.request_body.is_none() && a.response_body.is_some());
        assert_eq!(a.model, "gpt-4o", "model override prices the call");
        assert_eq!(a.user_id.as_deref(), Some("body_user"));
        assert_eq!(
            b.request_id.to_string(),
            "4f0c1b0e-7a0e-4d6b-9c55-0b7f3c1e5d2a"
        );
        assert_eq!(b.user_id.as_deref(), Some("header_user"));
        assert!(b.response_body.is_none());
        let stored = b.request_body.as_deref().expect("stored");
        assert!(stored.contains("my key is [REDACTED]"), "{stored}");
        assert_no_secret(&recs, &["sk-caller-0000001", OPENAI_KEY]);
    }

    #[tokio::test]
    async fn provider_errors_pass_through_unchanged_and_loupe_errors_are_clear() {
        let env = setup(1).await;
        let url = env.url.clone();
        let r = chat(&url, r#"{"model":"mock-429","messages":[]}"#).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["x-ratelimit-remaining-tokens"], "10");
        assert_eq!(
            r.text().await.expect("body"),
            provider_fixture("openai_error_429.json")
        );
        let r = chat(&url, r#"{"model":"mock-401","messages":[]}"#).await;
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.text().await.expect("body"),
            provider_fixture("openai_error_401.json")
        );
        // Anthropic's 429: unchanged on /v1/messages, in OpenAI's shape on chat/completions.
        let r = env
            .post(
                "/v1/messages",
                &[],
                r#"{"model":"claude-mock-429","max_tokens":5,"messages":[]}"#,
            )
            .await;
        assert_eq!(r.status(), 429);
        assert_eq!(
            r.headers()["anthropic-ratelimit-input-tokens-remaining"],
            "0"
        );
        assert_eq!(
            r.text().await.expect("body"),
            provider_fixture("anthropic_error_429.json")
        );
        let r = chat(&url, r#"{"model":"claude-mock-429","messages":[]}"#).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("rate limit"))
        );
        // The provider breaks off / never answers / is not configured.
        let r = chat(&url, r#"{"model":"mock-reset","messages":[]}"#).await;
        assert_eq!(r.status(), 502);
        let r = chat(&url, r#"{"model":"mock-hang","messages":[]}"#).await;
        assert_eq!(r.status(), 504);
        let v: Value = r.json().await.expect("json");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("upstream_timeout_secs"))
        );
        assert_eq!(v["error"]["code"], "loupe.timeout");
        let r = chat(&url, r#"{"model":"mistral/mistral-large","messages":[]}"#).await;
        assert_eq!(r.status(), 401, "no key for mistral");
        let v: Value = r.json().await.expect("json");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("providers.mistral.api_key")),
            "{v}"
        );
        let r = chat(&url, r#"{"model":"gpt-4o-mini","messages":"#).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"].get("param").is_some() && v["error"].get("code").is_some());

        let recs = env.records().await;
        let by = |m: &str| recs.iter().find(|r| r.model == m).cloned().expect(m);
        let limited = by("mock-429");
        assert_eq!(limited.status, 429);
        assert_eq!(
            limited.error_type.as_deref(),
            Some("tokens"),
            "the provider's error.type"
        );
        assert_eq!(
            limited
                .upstream_headers
                .get("retry-after")
                .map(String::as_str),
            Some("1")
        );
        assert_eq!(
            limited
                .upstream_headers
                .get("x-ratelimit-reset-tokens")
                .map(String::as_str),
            Some("387ms")
        );
        assert_eq!(
            limited
                .upstream_headers
                .get("x-request-id")
                .map(String::as_str),
            Some("req_fixture0000000000000000000001")
        );
        let unauthorized = by("mock-401");
        assert_eq!(unauthorized.status, 401);
        assert_eq!(
            unauthorized.error_type.as_deref(),
            Some("invalid_request_error")
        );
        let a429: Vec<&RequestRecord> = recs
            .iter()
            .filter(|r| r.model == "claude-mock-429")
            .collect();
        assert_eq!(a429.len(), 2);
        for r in a429 {
            assert_eq!(r.error_type.as_deref(), Some("rate_limit_error"));
            assert_eq!(
                r.upstream_headers
                    .get("anthropic-ratelimit-input-tokens-remaining")
                    .map(String::as_str),
                Some("0")
            );
            assert!(r.cost_usd.is_none() || r.cost_usd.is_some_and(|c| c.is_zero()));
        }
        assert_eq!(
            by("mock-reset").error_type.as_deref(),
            Some("upstream_broken")
        );
        assert_eq!(
            by("mock-hang").error_type.as_deref(),
            Some("upstream_timeout")
        );
        assert_eq!(by("mock-hang").status, 504);
        let m = env.gw.metrics_snapshot();
        assert_eq!(m.upstream_errors, 6, "{m:?}");
    }

    #[tokio::test]
    async fn provider_stream_failures_break_the_client_stream_and_are_recorded() {
        let env = start(
            GatewayConfig {
                stream_idle_timeout_secs: 1,
                ..GatewayConfig::default()
            },
            Arc::new(NoKeys),
            Arc::new(Collect::default()),
        )
        .await;
        for model in ["mock-stall", "mock-stream-reset"] {
            let r = env
                .post(
                    "/v1/chat/completions",
                    &[],
                    &json!({"model": model, "messages": [], "stream": true}).to_string(),
                )
                .await;
            assert_eq!(r.status(), 200, "{model}");
            assert!(
                r.bytes().await.is_err(),
                "{model}: the client sees the break"
            );
        }
        let recs = env.records().await;
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0].error_type.as_deref(),
            Some("upstream_stream_timeout")
        );
        assert_eq!(recs[1].error_type.as_deref(), Some("upstream_stream_error"));
        for r in &recs {
            assert_eq!(r.status, 200);
            assert!(
                r.ttft_ms.is_some()
                    && r.response_body
                        .as_deref()
                        .is_some_and(|b| b.starts_with("data: "))
            );
            assert!(
                !r.price_known && r.cost_usd.is_none(),
                "no usage arrived: cost unknown, not $0"
            );
        }
        assert!(recs[0].latency_ms >= 1000);
    }

    #[tokio::test]
    async fn a_provider_rejecting_stream_options_gets_the_call_as_sent() {
        let env = setup(30).await;
        let body = r#"{"model":"mock-no-stream-options","messages":[],"stream":true}"#;
        let r = env.post("/v1/chat/completions", &[], body).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.expect("stream");
        assert!(text.ends_with("data: [DONE]\n\n"));
        let up = env.upstream();
        assert_eq!(up.len(), 2);
        assert!(up[0].body.get("stream_options").is_some());
        assert_eq!(
            up[1].body,
            serde_json::from_str::<Value>(body).expect("json")
        );
        let recs = env.records().await;
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].status, 200);
        assert!(recs[0].error_type.is_none());
    }

    #[tokio::test]
    async fn target_url_sends_only_the_callers_key() {
        let env = setup(30).await;
        let target = env.mock.url.clone();
        let body = r#"{"model":"gpt-4o-mini","messages":[]}"#;
        let r = env
            .post(
                "/v1/chat/completions",
                &[("Helicone-Target-URL", &target)],
                body,
            )
            .await;
        assert_eq!(
            r.status(),
            401,
            "the configured key never goes to a caller-chosen URL"
        );
        let _ = r.bytes().await;
        let bearer = format!("Bearer {CALLER_KEY}");
        let r = env
            .post(
                "/v1/chat/completions",
                &[("Loupe-Target-URL", &target), ("authorization", &bearer)],
                body,
            )
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        let up = env.upstream();
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].path, "/v1/chat/completions");
        assert_eq!(up[0].header("authorization"), Some(bearer.as_str()));
        let r = env
            .post(
                "/v1/chat/completions",
                &[("Helicone-Target-URL", "ftp://x")],
                body,
            )
            .await;
        assert_eq!(r.status(), 400);
    }

    #[tokio::test]
    async fn a_client_leaving_before_the_answer_is_recorded() {
        let env = setup(30).await;
        let c = reqwest::Client::builder()
            .timeout(Duration::from_millis(300))
            .build()
            .expect("client");
        let r = c
            .post(format!("{}/v1/chat/completions", env.url))
            .body(r#"{"model":"mock-hang","messages":[]}"#)
            .send()
            .await;
        assert!(r.is_err());
        let mut recs = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if env.gw.metrics_snapshot().client_disconnects > 0 {
                recs = env.records().await;
                break;
            }
        }
        assert_eq!(recs.len(), 1, "the abandoned call is recorded");
        assert_eq!(recs[0].status, 499);
        assert_eq!(recs[0].error_type.as_deref(), Some("client_disconnected"));
    }

    #[tokio::test]
    async fn an_oversized_body_is_413_in_the_callers_shape() {
        let env = start(
            GatewayConfig {
                max_request_bytes: 1000,
                ..GatewayConfig::default()
            },
            Arc::new(NoKeys),
            Arc::new(Collect::default()),
        )
        .await;
        let big = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(2000)}]})
            .to_string();
        let r = env.post("/v1/chat/completions", &[], &big).await;
        assert_eq!(r.status(), 413);
        let v: Value = r.json().await.expect("json");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("gateway.max_request_bytes")),
            "{v}"
        );
        let r = env.post("/v1/messages", &[], &big).await;
        assert_eq!(r.status(), 413);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["type"], "error");
        assert!(env.upstream().is_empty());
    }

    /// p50 / p99 / mean in µs of `n` sequential calls.
    async fn timings(c: &reqwest::Client, url: &str, body: &str, n: usize) -> (u128, u128, u128) {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = std::time::Instant::now();
            let r = c
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
                .expect("send");
            let _ = r.bytes().await.expect("body");
            v.push(t.elapsed().as_micros());
        }
        v.sort_unstable();
        let mean = v.iter().sum::<u128>() / n as u128;
        (v[n / 2], v[n * 99 / 100], mean)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement: cargo test --release -p loupe-gateway --test gateway -- --ignored --nocapture"]
    async fn added_latency() {
        let env = setup(30).await;
        let c = reqwest::Client::new();
        let json_body = provider_fixture("openai_chat_request.json");
        let stream_body =
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let n = 4000;
        for (name, body) in [("json", json_body.as_str()), ("stream", stream_body)] {
            let direct = format!("{}/v1/chat/completions", env.mock.url);
            let via = format!("{}/v1/chat/completions", env.url);
            let _ = timings(&c, &direct, body, 200).await;
            let _ = timings(&c, &via, body, 200).await;
            let d = timings(&c, &direct, body, n).await;
            let g = timings(&c, &via, body, n).await;
            println!(
                "{name}: direct p50 {} p99 {} mean {} µs | via Loupe p50 {} p99 {} mean {} µs | added p50 {} µs, p99 {} µs",
                d.0,
                d.1,
                d.2,
                g.0,
                g.1,
                g.2,
                g.0.saturating_sub(d.0),
                g.1.saturating_sub(d.1)
            );
        }
        let recs = env.records().await;
        println!(
            "records: {} sent, {:?}",
            recs.len(),
            env.gw.metrics_snapshot()
        );
    }

    /// A sink that never answers: ingest is stuck.
    struct Stuck;
    impl EventSink for Stuck {
        fn append(&self, _: Vec<RequestRecord>) -> BoxFuture<'_, Result<AppendAck, SinkError>> {
            Box::pin(futures::future::pending())
        }
    }

    #[tokio::test]
    async fn a_stuck_sink_never_slows_or_fails_calls() {
        let mock = MockUpstream::start().await;
        let gw = Gateway::new(
            GatewayConfig {
                record_queue: 2,
                ..GatewayConfig::default()
            },
            all_providers(&mock.url),
            Arc::new(PriceTable::bundled().expect("prices")),
            Arc::new(Stuck),
            Arc::new(NoKeys),
        )
        .expect("gateway");
        let url = serve(gw.router()).await;
        for _ in 0..20 {
            let r = chat(
                &url,
                r#"{"model":"gpt-4o-mini","messages":[],"stream":true}"#,
            )
            .await;
            assert_eq!(r.status(), 200);
            assert!(r.text().await.expect("body").ends_with("data: [DONE]\n\n"));
        }
        let m = gw.metrics_snapshot();
        assert_eq!(m.requests, 20);
        // One batch is stuck in the sink, two wait in the queue, the rest were dropped.
        assert!(m.records_dropped >= 17, "{m:?}");
        assert_eq!(m.records_sent, 0);
        let text = gw.render_prometheus();
        assert!(text.contains("loupe_gateway_requests_total 20"), "{text}");
        assert!(text.contains("loupe_gateway_record_queue "), "{text}");
    }
}
