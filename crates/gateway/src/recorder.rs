//! Records leave the request path through a bounded queue; one task batches them into the sink.
//! A full queue drops the record (counted), never the call.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use loupe_model::{EventSink, RequestRecord};
use tokio::sync::mpsc;

use crate::GatewayMetrics;

pub(crate) struct Recorder {
    tx: std::sync::Mutex<Option<mpsc::Sender<RequestRecord>>>,
    done: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: Arc<GatewayMetrics>,
}

impl Recorder {
    pub(crate) fn start(
        capacity: usize,
        sink: Arc<dyn EventSink>,
        metrics: Arc<GatewayMetrics>,
    ) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<RequestRecord>(capacity.max(1));
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
                let records = std::mem::take(&mut batch);
                let count = records.len() as u64;
                match sink.append(records).await {
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

    /// Queues a record without waiting.
    pub(crate) fn record(&self, r: RequestRecord) {
        let sent = match self.tx.lock() {
            Ok(g) => match g.as_ref() {
                Some(tx) => tx.try_send(r).is_ok(),
                None => false,
            },
            Err(_) => false,
        };
        if !sent {
            self.metrics.records_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) async fn shutdown(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        if let Some(task) = self.done.lock().await.take() {
            let _ = task.await;
        }
    }
}
