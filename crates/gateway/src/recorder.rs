//! Records leave the request path through a bounded queue; one task batches them into the sink.
//! A full queue drops the record (counted), never the call.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use loupe_model::{EventSink, RequestRecord};
use tokio::sync::mpsc;

use crate::GatewayMetrics;

/// A record on its way to the sink, with the credentials seen on its call (to scrub them from
/// the record before it is stored; never stored themselves).
type Pending = (RequestRecord, Vec<String>);

pub(crate) struct Recorder {
    tx: std::sync::Mutex<Option<mpsc::Sender<Pending>>>,
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: Arc<GatewayMetrics>,
}

impl Recorder {
    pub(crate) fn start(
        capacity: usize,
        sink: Arc<dyn EventSink>,
        metrics: Arc<GatewayMetrics>,
    ) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Pending>(capacity.max(1));
        let m = metrics.clone();
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            loop {
                let n = rx.recv_many(&mut batch, 256).await;
                if n == 0 {
                    return;
                }
                // Let a burst gather briefly: fewer, larger appends share WAL syncs.
                if batch.len() < 256 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    while batch.len() < 256 {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                }
                let records: Vec<RequestRecord> = batch
                    .drain(..)
                    .map(|(mut r, secrets)| {
                        redact(&mut r, &secrets);
                        r
                    })
                    .collect();
                let count = records.len() as u64;
                // Every record here is a call that really happened: no dedup (see append_unique).
                match sink.append_unique(records).await {
                    Ok(_) => {
                        m.records_sent.fetch_add(count, Ordering::Relaxed);
                    }
                    Err(e) => {
                        m.sink_errors.fetch_add(1, Ordering::Relaxed);
                        m.records_dropped.fetch_add(count, Ordering::Relaxed);
                        tracing::warn!(error = %e, records = count, "gateway records could not be stored");
                    }
                }
            }
        });
        Recorder {
            tx: std::sync::Mutex::new(Some(tx)),
            done: tokio::sync::Mutex::new(Some(task)),
            metrics,
        }
    }

    /// Queues a record without waiting; `secrets` are scrubbed from it before it is stored.
    pub(crate) fn record(&self, r: RequestRecord, secrets: Vec<String>) {
        let sent = match self.tx.lock() {
            Ok(g) => match g.as_ref() {
                Some(tx) => tx.try_send((r, secrets)).is_ok(),
                None => false,
            },
            Err(_) => false,
        };
        if !sent {
            self.metrics.records_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        match self.tx.lock() {
            Ok(g) => g.as_ref().map_or(0, |tx| tx.max_capacity() - tx.capacity()),
            Err(_) => 0,
        }
    }

    /// Stops taking records and waits until the queued ones went to the sink.
    pub(crate) async fn shutdown(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        if let Some(task) = self.done.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// Replaces every credential of the call found in the record's free-text fields with
/// `[REDACTED]` (a client may paste its key into a prompt or a header value).
pub(crate) fn redact(r: &mut RequestRecord, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let scrub = |t: &mut String| {
        for s in secrets {
            if !s.is_empty() && t.contains(s.as_str()) {
                *t = t.replace(s.as_str(), "[REDACTED]");
            }
        }
    };
    for f in [
        &mut r.request_body,
        &mut r.response_body,
        &mut r.error_message,
        &mut r.user_id,
        &mut r.session_id,
        &mut r.session_path,
        &mut r.session_name,
    ]
    .into_iter()
    .flatten()
    {
        scrub(f);
    }
    for v in r.properties.values_mut() {
        scrub(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_scrubbed_from_free_text() {
        let mut r = RequestRecord::new(uuid::Uuid::nil(), "o", chrono::Utc::now());
        r.request_body = Some("{\"messages\":[{\"content\":\"my key is sk-secret-123\"}]}".into());
        r.error_message = Some("bad key sk-secret-123".into());
        r.properties.insert("k".into(), "sk-secret-123".into());
        redact(&mut r, &["sk-secret-123".into()]);
        assert_eq!(
            r.request_body.as_deref(),
            Some("{\"messages\":[{\"content\":\"my key is [REDACTED]\"}]}")
        );
        assert_eq!(r.error_message.as_deref(), Some("bad key [REDACTED]"));
        assert_eq!(r.properties["k"], "[REDACTED]");
    }
}
