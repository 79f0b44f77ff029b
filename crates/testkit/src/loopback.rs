//! Test plumbing shared by the crates' integration tests: an axum app served on 127.0.0.1, and
//! an [`EventSink`] that keeps what it is given.

use std::sync::Mutex;

use axum::Router;
use futures::future::BoxFuture;
use loupe_model::{AppendAck, EventSink, RequestRecord, SinkError};

/// Serves `app` on 127.0.0.1:0 as the server does (TCP_NODELAY on: without it, the last small
/// write of a relayed stream waits for the client's delayed ACK, ~40 ms) until the runtime ends;
/// returns its base URL.
pub async fn serve_loopback(app: Router) -> String {
    use axum::serve::ListenerExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = l.local_addr().expect("addr");
    let l = l.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

/// A sink that keeps every record it gets, or (with `fail`) refuses every append as a full disk
/// would.
#[derive(Default)]
pub struct CollectSink {
    pub records: Mutex<Vec<RequestRecord>>,
    pub fail: bool,
}

impl CollectSink {
    /// The records kept so far.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl EventSink for CollectSink {
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
