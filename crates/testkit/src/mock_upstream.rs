//! A mock LLM provider on 127.0.0.1:0 for gateway tests, serving the recorded fixtures in
//! `testdata/providers`. The model name picks the behaviour:
//!
//! | model | answer |
//! |---|---|
//! | anything (chat/completions) | the OpenAI fixture; with `"stream": true` an SSE stream of the same text and the same usage (usage chunk only if `stream_options.include_usage`) |
//! | `mock-slow` | that stream, one event every 50 ms |
//! | `mock-429` | 429 with OpenAI's rate-limit body and headers |
//! | `mock-reset` | 200, half a JSON body, then the connection breaks |
//! | `mock-hang` | never answers |
//! | anything (`/v1/messages`) | the Anthropic fixture, JSON or SSE |
//!
//! Every request is kept (path, lower-case headers, JSON body) for assertions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running mock provider; stops when dropped.
#[derive(Debug)]
pub struct MockUpstream {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A fixture from `testdata/providers`.
pub fn provider_fixture(name: &str) -> String {
    let path = format!(
        "{}/../../testdata/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

#[derive(Clone)]
struct St {
    received: Arc<Mutex<Vec<Received>>>,
}

impl MockUpstream {
    pub async fn start() -> MockUpstream {
        let received = Arc::new(Mutex::new(Vec::new()));
        let st = St {
            received: received.clone(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/messages", post(messages))
            .with_state(st);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        MockUpstream {
            url,
            received,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

fn keep(st: &St, path: &str, headers: &HeaderMap, body: &Bytes) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Ok(mut r) = st.received.lock() {
        r.push(Received {
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: v.clone(),
        });
    }
    v
}

fn respond(status: u16, ctype: &str, headers: &[(&str, &str)], body: Body) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header("content-type", ctype);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).unwrap_or_default()
}

/// SSE events, one every `delay`.
fn sse_body(events: Vec<String>, delay: Duration) -> Body {
    let s = futures::stream::unfold(
        (events.into_iter(), true),
        move |(mut it, first)| async move {
            let ev = it.next()?;
            if !first && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Some((Ok::<_, std::io::Error>(ev), (it, false)))
        },
    );
    Body::from_stream(s)
}

/// The OpenAI JSON fixture's answer as a stream with the same usage.
fn openai_stream(include_usage: bool) -> Vec<String> {
    let full: Value =
        serde_json::from_str(&provider_fixture("openai_chat_response.json")).unwrap_or_default();
    let text = full
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let model = full["model"].clone();
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": full["id"], "object": "chat.completion.chunk", "created": full["created"],
                           "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    for w in text.split_inclusive(' ') {
        out.push(chunk(json!({"content": w}), Value::Null));
    }
    out.push(chunk(json!({}), json!("stop")));
    if include_usage {
        let u = json!({"id": full["id"], "object": "chat.completion.chunk", "created": full["created"],
                       "model": model, "choices": [], "usage": full["usage"]});
        out.push(format!("data: {u}\n\n"));
    }
    out.push("data: [DONE]\n\n".into());
    out
}

async fn chat(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let v = keep(&st, "/v1/chat/completions", &headers, &body);
    let model = v["model"].as_str().unwrap_or("");
    let stream = v["stream"].as_bool() == Some(true);
    match model {
        "mock-429" => {
            let mut extra = Vec::new();
            let raw = provider_fixture("openai_error_429.headers.txt");
            for line in raw.lines().skip(1) {
                if let Some((k, val)) = line.split_once(':') {
                    extra.push((k.trim().to_owned(), val.trim().to_owned()));
                }
            }
            let pairs: Vec<(&str, &str)> = extra
                .iter()
                .filter(|(k, _)| k != "content-type")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            respond(
                429,
                "application/json",
                &pairs,
                Body::from(provider_fixture("openai_error_429.json")),
            )
        }
        "mock-hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            respond(200, "application/json", &[], Body::empty())
        }
        "mock-reset" => {
            let s = futures::stream::iter(vec![
                Ok::<_, std::io::Error>(Bytes::from_static(b"{\"id\":\"chatcmpl-half")),
                Err(std::io::Error::other("connection reset")),
            ]);
            respond(200, "application/json", &[], Body::from_stream(s))
        }
        _ if stream => {
            let usage = v
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                == Some(true);
            let delay = if model == "mock-slow" {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            };
            respond(
                200,
                "text/event-stream",
                &[("x-request-id", "req_stream")],
                sse_body(openai_stream(usage), delay),
            )
        }
        _ => respond(
            200,
            "application/json",
            &[
                ("x-request-id", "req_json"),
                ("x-ratelimit-remaining-requests", "4999"),
            ],
            Body::from(provider_fixture("openai_chat_response.json")),
        ),
    }
}

async fn messages(State(st): State<St>, headers: HeaderMap, body: Bytes) -> Response {
    let v = keep(&st, "/v1/messages", &headers, &body);
    if v["stream"].as_bool() == Some(true) {
        let sse = provider_fixture("anthropic_stream.sse");
        let events: Vec<String> = sse.split_inclusive("\n\n").map(str::to_owned).collect();
        respond(
            200,
            "text/event-stream",
            &[],
            sse_body(events, Duration::ZERO),
        )
    } else {
        respond(
            200,
            "application/json",
            &[("request-id", "req_anthropic")],
            Body::from(provider_fixture("anthropic_messages_response.json")),
        )
    }
}
