//! A mock LLM provider on 127.0.0.1:0 for gateway tests, serving the recorded fixtures in
//! `testdata/providers` (see its README for where each comes from). It answers under any base
//! path, by the end of the path, so one mock stands in for OpenAI (`/v1/...`), Gemini's OpenAI
//! endpoint (`/v1beta/openai/...`), Azure (`/openai/deployments/<d>/...?api-version=`), and any
//! OpenAI-compatible server:
//!
//! | path ends with | answer |
//! |---|---|
//! | `/chat/completions` | the OpenAI JSON fixture; with `"stream": true` an SSE stream of the same text and usage (usage chunk and `"usage":null` fields only with `stream_options.include_usage`, as OpenAI does) |
//! | `/completions` | the completions fixture, or a stream of it (same usage rule) |
//! | `/embeddings` | the embeddings fixture |
//! | `/responses` | the Responses fixture, or the Responses SSE fixture |
//! | `/models` (GET) | the models list fixture |
//! | `/messages` | the Anthropic fixture, JSON or SSE |
//!
//! The model name picks a failure:
//!
//! | model | answer |
//! |---|---|
//! | `mock-401` | 401 with OpenAI's invalid-key body |
//! | `mock-429` | 429 with OpenAI's rate-limit body and headers (`retry-after`, `x-ratelimit-*`) |
//! | `claude-mock-429` | (on `/messages`) 429 with Anthropic's body and `anthropic-ratelimit-*` headers |
//! | `mock-reset` | 200, half a JSON body, then the connection breaks |
//! | `mock-hang` | never answers |
//! | `mock-slow` | a stream with one event every 50 ms |
//! | `mock-stall` | a stream that sends two events, then nothing (and never ends) |
//! | `mock-stream-reset` | a stream that sends two events, then breaks |
//! | `mock-no-stream-options` | 400 naming `stream_options` when the body has them, else the normal stream |
//! | `mock-status-<NNN>` | always status NNN with an OpenAI-shaped error body (429 with `retry-after: 1`) |
//!
//! Fault schedules (for retries and fallbacks), by request header:
//!
//! | header | effect |
//! |---|---|
//! | `x-mock-schedule: 500,429,reset,ok` | the n-th request carrying the same `x-mock-schedule-key` (default `default`) gets the n-th entry; past the end, `ok`. Entries: `ok`; a status (OpenAI error body; 429 adds `retry-after` when `x-mock-retry-after` is given); `reset` (200, half a body, then the connection breaks); `hang` (never answers); `midstream` (a stream that breaks after two events; a JSON call: `reset`) |
//! | `x-mock-fail-rate: 0.2` | a deterministic pseudo-random fifth of the requests (per schedule key, seeded by `x-mock-fail-seed`) fail, rotating through 429, 500, 503 and `reset` |
//! | `x-mock-retry-after: 2` | the `retry-after` header of scheduled 429s |
//! | `x-mock-latency-ms: N` | wait N ms before answering (any answer) |
//!
//! Request headers shape a stream (they reach the mock because the gateway forwards non-Loupe
//! headers): `x-mock-delay-ms: N` (pause between pieces), `x-mock-line-ending: lf|crlf|cr`,
//! `x-mock-chunk-bytes: N` (re-cut the whole stream into N-byte pieces, so events and line
//! breaks straddle chunks), `x-mock-fixture: recorded` (chat: replay `openai_chat_stream.sse`
//! instead of a stream derived from the JSON fixture).
//!
//! Every request is kept (method, path, query, lower-case headers, JSON body) for assertions,
//! and [`MockUpstream::streams_dropped`] counts response streams that ended before their last
//! piece because the client (the gateway) hung up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The raw query string (`""` when none), e.g. `api-version=2024-10-21`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when the body is empty or not JSON).
    pub body: Value,
    /// When it arrived (tokio's clock, so paused-clock tests can measure waits).
    pub at: tokio::time::Instant,
}

impl Received {
    /// The first value of a (lower-case) header.
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
    /// `http://127.0.0.1:<port>` (no path: append `/v1`, `/v1beta/openai`, … as the provider's
    /// base URL).
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    dropped: Arc<AtomicUsize>,
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
    dropped: Arc<AtomicUsize>,
    /// Requests seen per schedule key.
    counters: Arc<Mutex<std::collections::HashMap<String, usize>>>,
}

impl MockUpstream {
    pub async fn start() -> MockUpstream {
        let received = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(AtomicUsize::new(0));
        let st = St {
            received: received.clone(),
            dropped: dropped.clone(),
            counters: Arc::default(),
        };
        let app = Router::new().fallback(dispatch).with_state(st);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        // Small writes go out at once, as a real provider's do.
        let l = axum::serve::ListenerExt::tap_io(l, |s| {
            let _ = s.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        MockUpstream {
            url,
            received,
            dropped,
            task,
        }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Response streams dropped before their end (the reader hung up).
    pub fn streams_dropped(&self) -> usize {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// How the request headers ask a stream to be shaped.
#[derive(Debug, Clone, Copy)]
struct Shape {
    delay: Duration,
    ending: &'static str,
    chunk_bytes: usize,
    recorded: bool,
}

impl Shape {
    fn of(h: &HeaderMap) -> Shape {
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
        Shape {
            delay: Duration::from_millis(
                get("x-mock-delay-ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            ending: match get("x-mock-line-ending") {
                Some("crlf") => "\r\n",
                Some("cr") => "\r",
                _ => "\n",
            },
            chunk_bytes: get("x-mock-chunk-bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            recorded: get("x-mock-fixture") == Some("recorded"),
        }
    }
}

fn keep(st: &St, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Ok(mut r) = st.received.lock() {
        r.push(Received {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or("").to_owned(),
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
            at: tokio::time::Instant::now(),
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

/// Counts a stream as dropped unless it reached its end.
struct EndGuard {
    dropped: Arc<AtomicUsize>,
    done: bool,
}

impl EndGuard {
    fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.done {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What a stream does after its pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tail {
    End,
    Stall,
    Break,
}

/// SSE events (written with `\n`), reshaped per `shape`, one piece every `shape.delay`.
fn sse_body(st: &St, events: Vec<String>, shape: Shape, tail: Tail) -> Body {
    let text: Vec<String> = events
        .into_iter()
        .map(|e| {
            if shape.ending == "\n" {
                e
            } else {
                e.replace('\n', shape.ending)
            }
        })
        .collect();
    let pieces: Vec<Bytes> = if shape.chunk_bytes > 0 {
        let all = text.concat().into_bytes();
        all.chunks(shape.chunk_bytes)
            .map(Bytes::copy_from_slice)
            .collect()
    } else {
        text.into_iter().map(Bytes::from).collect()
    };
    let guard = EndGuard {
        dropped: st.dropped.clone(),
        done: false,
    };
    let delay = shape.delay;
    let s = futures::stream::unfold(
        (pieces.into_iter(), true, guard),
        move |(mut it, first, mut guard)| async move {
            if guard.done {
                return None;
            }
            if !first && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match it.next() {
                Some(p) => Some((Ok::<_, std::io::Error>(p), (it, false, guard))),
                None => match tail {
                    Tail::End => {
                        guard.finish();
                        None
                    }
                    Tail::Stall => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        None
                    }
                    Tail::Break => {
                        // Let what was sent reach the reader before the connection breaks.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        guard.finish();
                        Some((
                            Err(std::io::Error::other("connection reset")),
                            (it, false, guard),
                        ))
                    }
                },
            }
        },
    );
    Body::from_stream(s)
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&provider_fixture(name)).unwrap_or_default()
}

/// OpenAI's stream for the chat JSON fixture: same text, same usage. With `include_usage`
/// every chunk carries `"usage":null` and a final usage-only chunk follows, as OpenAI does.
pub fn openai_chat_stream(include_usage: bool) -> Vec<String> {
    let full = fixture_json("openai_chat_response.json");
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

/// The recorded OpenAI stream (`openai_chat_stream.sse`, recorded with `include_usage`); without
/// `include_usage`, what OpenAI sends then: no usage chunk, no `"usage":null` fields.
pub fn openai_recorded_stream(include_usage: bool) -> Vec<String> {
    let raw = provider_fixture("openai_chat_stream.sse");
    raw.split_inclusive("\n\n")
        .filter(|e| include_usage || !e.contains("\"choices\":[]"))
        .map(|e| {
            if include_usage {
                e.to_owned()
            } else {
                e.replace(",\"usage\":null", "")
            }
        })
        .collect()
}

/// A completions stream of the completions fixture (usage rule as for chat).
fn completions_stream(include_usage: bool) -> Vec<String> {
    let full = fixture_json("openai_completions_response.json");
    let text = full
        .pointer("/choices/0/text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let chunk = |t: &str, finish: Value| {
        let mut c = json!({"id": full["id"], "object": "text_completion", "created": full["created"],
                           "model": full["model"], "choices": [{"text": t, "index": 0, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut out: Vec<String> = text
        .split_inclusive('\n')
        .map(|t| chunk(t, Value::Null))
        .collect();
    out.push(chunk("", json!("stop")));
    if include_usage {
        let u = json!({"id": full["id"], "object": "text_completion", "created": full["created"],
                       "model": full["model"], "choices": [], "usage": full["usage"]});
        out.push(format!("data: {u}\n\n"));
    }
    out.push("data: [DONE]\n\n".into());
    out
}

/// 200, half a JSON body, then the connection breaks.
fn broken_json() -> Response {
    let s = futures::stream::iter(vec![
        Ok::<_, std::io::Error>(Bytes::from_static(b"{\"id\":\"chatcmpl-half")),
        Err(std::io::Error::other("connection reset")),
    ]);
    respond(200, "application/json", &[], Body::from_stream(s))
}

fn header_of<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn include_usage_of(v: &Value) -> bool {
    v.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true)
}

/// An injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Status(u16),
    Reset,
    Hang,
    MidStream,
}

/// SplitMix64: a deterministic stream of pseudo-random numbers.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fault `x-mock-schedule` / `x-mock-fail-rate` assign to this request, if any.
fn scheduled_fault(st: &St, h: &HeaderMap) -> Option<Fault> {
    let schedule = header_of(h, "x-mock-schedule");
    let rate = header_of(h, "x-mock-fail-rate").and_then(|v| v.parse::<f64>().ok());
    if schedule.is_none() && rate.is_none() {
        return None;
    }
    let key = header_of(h, "x-mock-schedule-key")
        .unwrap_or("default")
        .to_owned();
    let n = {
        let mut c = st.counters.lock().ok()?;
        let e = c.entry(key).or_insert(0);
        *e += 1;
        *e - 1
    };
    if let Some(s) = schedule {
        let entry = s.split(',').map(str::trim).nth(n).unwrap_or("ok");
        return match entry {
            "ok" | "" => None,
            "reset" => Some(Fault::Reset),
            "hang" => Some(Fault::Hang),
            "midstream" => Some(Fault::MidStream),
            code => code.parse::<u16>().ok().map(Fault::Status),
        };
    }
    let p = rate.unwrap_or(0.0);
    let seed: u64 = header_of(h, "x-mock-fail-seed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let r = splitmix(seed ^ (n as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    if (r >> 11) as f64 / (1u64 << 53) as f64 >= p {
        return None;
    }
    Some(match splitmix(r) % 4 {
        0 => Fault::Status(429),
        1 => Fault::Status(500),
        2 => Fault::Status(503),
        _ => Fault::Reset,
    })
}

fn json_response(status: u16, headers: &[(&str, &str)], fixture: &str) -> Response {
    respond(
        status,
        "application/json",
        headers,
        Body::from(provider_fixture(fixture)),
    )
}

async fn dispatch(
    State(st): State<St>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v = keep(&st, &method, &uri, &headers, &body);
    let path = uri.path().to_owned();
    let shape = Shape::of(&headers);
    if method == Method::GET && path.ends_with("/models") {
        return json_response(200, &[("x-request-id", "req_models")], "openai_models.json");
    }
    if method != Method::POST {
        return respond(404, "application/json", &[], Body::from("{}"));
    }
    let model = v["model"].as_str().unwrap_or("").to_owned();
    let stream = v["stream"].as_bool() == Some(true);
    if let Some(ms) = header_of(&headers, "x-mock-latency-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let scheduled = scheduled_fault(&st, &headers);
    let status_model = model
        .strip_prefix("mock-status-")
        .and_then(|n| n.parse::<u16>().ok());
    let fault = scheduled.or(status_model.map(Fault::Status));
    match fault {
        Some(Fault::Status(code)) => {
            let retry_after = header_of(&headers, "x-mock-retry-after")
                .map(str::to_owned)
                .or_else(|| (status_model.is_some() && code == 429).then(|| "1".to_owned()));
            let mut hs: Vec<(&str, &str)> = vec![("x-request-id", "req_fault")];
            if let Some(ra) = retry_after.as_deref()
                && code == 429
            {
                hs.push(("retry-after", ra));
            }
            let body = json!({"error": {"message": format!("injected {code}"), "type": if code == 429 { "rate_limit_exceeded" } else { "server_error" }, "param": null, "code": null}});
            return respond(code, "application/json", &hs, Body::from(body.to_string()));
        }
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return respond(200, "application/json", &[], Body::empty());
        }
        Some(Fault::Reset) => return broken_json(),
        Some(Fault::MidStream) if stream && path.ends_with("/chat/completions") => {
            return respond(
                200,
                "text/event-stream; charset=utf-8",
                &[("x-request-id", "req_midstream")],
                sse_body(
                    &st,
                    openai_chat_stream(include_usage_of(&v))
                        .into_iter()
                        .take(2)
                        .collect(),
                    shape,
                    Tail::Break,
                ),
            );
        }
        Some(Fault::MidStream) => return broken_json(),
        None => {}
    }
    let include_usage = v
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    match model.as_str() {
        "mock-401" => {
            return json_response(401, &[("x-request-id", "req_401")], "openai_error_401.json");
        }
        "mock-429" => {
            let raw = provider_fixture("openai_error_429.headers.txt");
            let extra: Vec<(String, String)> = raw
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .filter(|(k, _)| k != "content-type")
                .collect();
            let pairs: Vec<(&str, &str)> = extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            return json_response(429, &pairs, "openai_error_429.json");
        }
        "claude-mock-429" => {
            return json_response(
                429,
                &[
                    ("request-id", "req_FIXTURE0001"),
                    ("retry-after", "7"),
                    ("anthropic-ratelimit-input-tokens-limit", "30000"),
                    ("anthropic-ratelimit-input-tokens-remaining", "0"),
                    (
                        "anthropic-ratelimit-input-tokens-reset",
                        "2026-01-01T00:00:07Z",
                    ),
                ],
                "anthropic_error_429.json",
            );
        }
        "mock-hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return respond(200, "application/json", &[], Body::empty());
        }
        "mock-reset" => return broken_json(),
        "mock-no-stream-options" if v.get("stream_options").is_some() => {
            return respond(
                400,
                "application/json",
                &[],
                Body::from(
                    r#"{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error","param":"stream_options","code":null}}"#,
                ),
            );
        }
        _ => {}
    }
    let sse = |events: Vec<String>, shape: Shape, tail: Tail, req_id: &str| {
        respond(
            200,
            "text/event-stream; charset=utf-8",
            &[("x-request-id", req_id), ("cache-control", "no-cache")],
            sse_body(&st, events, shape, tail),
        )
    };
    if path.ends_with("/chat/completions") {
        if !stream {
            return json_response(
                200,
                &[
                    ("x-request-id", "req_json"),
                    ("x-ratelimit-remaining-requests", "4999"),
                    ("openai-processing-ms", "321"),
                ],
                "openai_chat_response.json",
            );
        }
        let events = if shape.recorded {
            openai_recorded_stream(include_usage)
        } else {
            openai_chat_stream(include_usage)
        };
        let (shape, tail) = match model.as_str() {
            "mock-slow" => (
                Shape {
                    delay: Duration::from_millis(50),
                    ..shape
                },
                Tail::End,
            ),
            "mock-stall" => {
                return sse(
                    events.into_iter().take(2).collect(),
                    shape,
                    Tail::Stall,
                    "req_stall",
                );
            }
            "mock-stream-reset" => {
                return sse(
                    events.into_iter().take(2).collect(),
                    shape,
                    Tail::Break,
                    "req_reset",
                );
            }
            _ => (shape, Tail::End),
        };
        return sse(events, shape, tail, "req_stream");
    }
    if path.ends_with("/completions") {
        if stream {
            return sse(
                completions_stream(include_usage),
                shape,
                Tail::End,
                "req_cmpl",
            );
        }
        return json_response(
            200,
            &[("x-request-id", "req_cmpl")],
            "openai_completions_response.json",
        );
    }
    if path.ends_with("/embeddings") {
        return json_response(
            200,
            &[("x-request-id", "req_emb")],
            "openai_embeddings_response.json",
        );
    }
    if path.ends_with("/responses") {
        if stream {
            let raw = provider_fixture("openai_responses_stream.sse");
            let events = raw.split_inclusive("\n\n").map(str::to_owned).collect();
            return sse(events, shape, Tail::End, "req_resp");
        }
        return json_response(
            200,
            &[("x-request-id", "req_resp")],
            "openai_responses_response.json",
        );
    }
    if path.ends_with("/messages") {
        if stream {
            let raw = provider_fixture("anthropic_stream.sse");
            let events = raw.split_inclusive("\n\n").map(str::to_owned).collect();
            return respond(
                200,
                "text/event-stream; charset=utf-8",
                &[("request-id", "req_anthropic_stream")],
                sse_body(&st, events, shape, Tail::End),
            );
        }
        return json_response(
            200,
            &[
                ("request-id", "req_anthropic"),
                ("anthropic-ratelimit-requests-remaining", "49"),
            ],
            "anthropic_messages_response.json",
        );
    }
    respond(404, "application/json", &[], Body::from("{}"))
}
