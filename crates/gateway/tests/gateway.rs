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
