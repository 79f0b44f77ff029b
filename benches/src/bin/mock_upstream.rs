//! A fast mock LLM provider for the gateway benches: `POST /v1/chat/completions` answers a fixed
//! OpenAI chat completion (or, with `"stream": true`, a 5-chunk SSE stream with a usage chunk; the
//! first chunk goes out at once, the others 2 ms apart, so a client can time its first token).
//! Prints `listening on http://ADDR` and serves until killed.
//!   mock_upstream [--listen 127.0.0.1:0]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::post;

const JSON: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1735689600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Jupiter is the largest planet in the solar system."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":17,"completion_tokens":11,"total_tokens":28,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;

fn sse(include_usage: bool) -> Vec<String> {
    let mut out = Vec::new();
    for w in ["Jupiter", " is", " the", " largest", "."] {
        out.push(format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{w}\"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    let mut last = String::new();
    if include_usage {
        last.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":17,\"completion_tokens\":5,\"total_tokens\":22}}\n\n");
    }
    last.push_str("data: [DONE]\n\n");
    out.push(last);
    out
}

async fn chat(body: Bytes) -> axum::response::Response {
    let text = String::from_utf8_lossy(&body);
    let stream = text.contains("\"stream\":true") || text.contains("\"stream\": true");
    if stream {
        let usage = text.contains("include_usage");
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .header("x-request-id", "req_bench")
            .body(Body::from_stream(futures::stream::unfold(
                (sse(usage).into_iter(), true),
                |(mut chunks, first)| async move {
                    let c = chunks.next()?;
                    if !first {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(c)), (chunks, false)))
                },
            )))
            .unwrap_or_default()
    } else {
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .header("x-request-id", "req_bench")
            .header("x-ratelimit-remaining-requests", "4999")
            .body(Body::from(JSON))
            .unwrap_or_default()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let Ok(l) = tokio::net::TcpListener::bind(&listen).await else {
        eprintln!("cannot listen on {listen}");
        std::process::exit(1);
    };
    if let Ok(a) = l.local_addr() {
        eprintln!("listening on http://{a}");
    }
    let app = Router::new().route("/v1/chat/completions", post(chat));
    let l = axum::serve::ListenerExt::tap_io(l, |s| {
        let _ = s.set_nodelay(true);
    });
    let _ = axum::serve(l, app).await;
}
