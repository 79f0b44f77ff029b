//! The gateway against a mock provider on 127.0.0.1: client disconnects mid-stream cancel the
//! upstream call and record the partial call; a failing sink never fails a call (fail-open,
//! counted); unreachable providers answer 502 in OpenAI's shape and are recorded.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use futures::future::BoxFuture;
use loupe_gateway::{
    Gateway, GatewayConfig, KeyResolver, ProviderConfig, ProviderKind, ProvidersConfig, Secret,
};
use loupe_model::{AppendAck, EventSink, PriceTable, RequestRecord, SinkError};

struct NoKeys;
impl KeyResolver for NoKeys {
    fn enabled(&self) -> bool {
        false
    }
    fn org_of(&self, _: &str) -> Option<String> {
        None
    }
}

/// A sink that keeps what it gets, or fails every append.
#[derive(Default)]
struct Collect {
    records: Mutex<Vec<RequestRecord>>,
    fail: bool,
}
impl EventSink for Collect {
    fn append(&self, records: Vec<RequestRecord>) -> BoxFuture<'_, Result<AppendAck, SinkError>> {
        Box::pin(async move {
            if self.fail {
                return Err(SinkError::Unavailable {
                    reason: "disk budget".into(),
                    retry_after_secs: 1,
                });
            }
            let n = records.len();
            if let Ok(mut r) = self.records.lock() {
                r.extend(records);
            }
            Ok(AppendAck {
                accepted: n,
                duplicates: 0,
            })
        })
    }
}

/// Set when the mock's response stream is dropped (the gateway hung up on it).
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

async fn serve(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
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
            api_key: Secret("sk-test".into()),
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
    use loupe_testkit::mock_upstream::MockUpstream;

    async fn setup(timeout_secs: u64) -> (MockUpstream, Arc<Gateway>, String, Arc<Collect>) {
        let mock = MockUpstream::start().await;
        let sink = Arc::new(Collect::default());
        let prices = Arc::new(PriceTable::bundled().expect("prices"));
        let gw = Gateway::new(
            GatewayConfig {
                upstream_timeout_secs: timeout_secs,
                ..GatewayConfig::default()
            },
            providers(&mock.url),
            prices,
            sink.clone(),
            Arc::new(NoKeys),
        )
        .expect("gateway");
        let url = serve(gw.router()).await;
        (mock, gw, url, sink)
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
    async fn streamed_and_unstreamed_calls_cost_the_same() {
        let (_mock, gw, url, sink) = setup(30).await;
        let plain = chat(&url, r#"{"model":"gpt-4o-mini","messages":[]}"#).await;
        assert_eq!(plain.status(), 200);
        let _ = plain.text().await;
        let s = chat(
            &url,
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
        gw.shutdown().await;
        let recs = sink.records.lock().expect("lock").clone();
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
    async fn rate_limits_resets_and_timeouts() {
        let (mock, gw, url, sink) = setup(1).await;
        let r = chat(&url, r#"{"model":"mock-429","messages":[]}"#).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["x-ratelimit-remaining-tokens"], "10");
        let body: serde_json::Value = r.json().await.expect("json");
        let want: serde_json::Value = serde_json::from_str(
            &loupe_testkit::mock_upstream::provider_fixture("openai_error_429.json"),
        )
        .expect("fixture");
        assert_eq!(body, want, "the provider's body, unchanged");
        let r = chat(&url, r#"{"model":"mock-reset","messages":[]}"#).await;
        assert_eq!(r.status(), 502);
        let r = chat(&url, r#"{"model":"mock-hang","messages":[]}"#).await;
        assert_eq!(r.status(), 504);
        let v: serde_json::Value = r.json().await.expect("json");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("upstream_timeout_secs"))
        );
        gw.shutdown().await;
        let recs = sink.records.lock().expect("lock").clone();
        let by = |m: &str| recs.iter().find(|r| r.model == m).cloned().expect(m);
        let limited = by("mock-429");
        assert_eq!(limited.status, 429);
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
                .get("x-request-id")
                .map(String::as_str),
            Some("req_fixture0000000000000000000001")
        );
        assert_eq!(
            by("mock-reset").error_type.as_deref(),
            Some("upstream_broken")
        );
        assert_eq!(
            by("mock-hang").error_type.as_deref(),
            Some("upstream_timeout")
        );
        // Loupe's own headers never reach the provider; the configured key does.
        for q in mock.requests() {
            assert_eq!(q.header("authorization"), Some("Bearer sk-test"));
            assert!(
                q.headers
                    .iter()
                    .all(|(k, _)| !k.starts_with("helicone-") && !k.starts_with("loupe-"))
            );
        }
    }

    #[tokio::test]
    async fn header_variants_request_ids_and_omit() {
        let (_mock, gw, url, sink) = setup(30).await;
        let c = reqwest::Client::new();
        let send = |h: Vec<(&'static str, &'static str)>| {
            let mut r = c
                .post(format!("{url}/v1/chat/completions"))
                .header("content-type", "application/json")
                .header("authorization", "Bearer sk-caller")
                .body(r#"{"model":"gpt-4o-mini","messages":[],"user":"body_user"}"#);
            for (k, v) in h {
                r = r.header(k, v);
            }
            r.send()
        };
        let r = send(vec![
            ("Helicone-Request-Id", "not-a-uuid"),
            ("Loupe-Property-Team", "search"),
            ("Helicone-Omit-Request", "true"),
            ("Helicone-Model-Override", "gpt-4o"),
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
        let _ = r.text().await;
        gw.shutdown().await;
        let recs = sink.records.lock().expect("lock").clone();
        assert_eq!(recs.len(), 2);
        let (a, b) = (&recs[0], &recs[1]);
        assert_eq!(a.request_id.to_string(), id);
        assert_eq!(a.properties.get("team").map(String::as_str), Some("search"));
        assert!(a.request_body.is_none() && a.response_body.is_some());
        assert_eq!(a.model, "gpt-4o", "model override prices the call");
        assert_eq!(a.user_id.as_deref(), Some("body_user"));
        assert_eq!(
            b.request_id.to_string(),
            "4f0c1b0e-7a0e-4d6b-9c55-0b7f3c1e5d2a"
        );
        assert_eq!(b.user_id.as_deref(), Some("header_user"));
        assert!(b.request_body.is_some() && b.response_body.is_none());
        for r in &recs {
            assert!(
                !r.request_body
                    .clone()
                    .unwrap_or_default()
                    .contains("sk-caller")
            );
        }
    }
}
