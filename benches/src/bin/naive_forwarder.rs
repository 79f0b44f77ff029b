//! The floor for the gateway's added latency: the simplest axum + reqwest forwarder. It copies the
//! request body to `UPSTREAM/v1/chat/completions` with a bearer key and streams the answer back,
//! recording nothing.   naive_forwarder --upstream http://127.0.0.1:PORT [--listen 127.0.0.1:0]

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::routing::post;
use futures::TryStreamExt;

#[derive(Clone)]
struct St {
    client: reqwest::Client,
    url: String,
}

async fn forward(State(st): State<St>, body: Bytes) -> axum::response::Response {
    match st
        .client
        .post(&st.url)
        .bearer_auth("sk-bench")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status();
            let ct = r.headers().get("content-type").cloned();
            let mut resp = axum::response::Response::new(Body::from_stream(
                r.bytes_stream().map_err(std::io::Error::other),
            ));
            *resp.status_mut() = status;
            if let Some(ct) = ct {
                resp.headers_mut().insert("content-type", ct);
            }
            resp
        }
        Err(e) => axum::response::Response::builder()
            .status(502)
            .body(Body::from(e.to_string()))
            .unwrap_or_default(),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |n: &str| {
        args.iter()
            .position(|a| a == n)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let Some(upstream) = arg("--upstream") else {
        eprintln!("usage: naive_forwarder --upstream URL [--listen ADDR]");
        std::process::exit(2);
    };
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let Ok(l) = tokio::net::TcpListener::bind(&listen).await else {
        eprintln!("cannot listen on {listen}");
        std::process::exit(1);
    };
    if let Ok(a) = l.local_addr() {
        eprintln!("listening on http://{a}");
    }
    let st = St {
        client: reqwest::Client::new(),
        url: format!("{}/v1/chat/completions", upstream.trim_end_matches('/')),
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(forward))
        .with_state(st);
    let l = axum::serve::ListenerExt::tap_io(l, |s| {
        let _ = s.set_nodelay(true);
    });
    let _ = axum::serve(l, app).await;
}
