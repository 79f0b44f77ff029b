//! The LLM gateway: an OpenAI-compatible (and Anthropic-native) proxy that forwards each call to
//! its provider, streams the answer back event by event, and records the call — tokens, exact
//! cost, latency, TTFT, user, session, properties — by handing a [`RequestRecord`] to an
//! [`EventSink`] off the hot path (bounded queue; if storage is slow the call still goes through
//! and the dropped record is counted). It must not depend on storage, Parquet, DataFusion or
//! the server: keys come in through [`KeyResolver`], records go out through [`EventSink`].

mod anthropic;
pub mod config;
pub mod error;
mod proxy;
mod recorder;
pub mod sse;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::{get, post};
use loupe_model::{EventSink, PriceTable};

pub use config::{GatewayConfig, ProviderConfig, ProviderKind, ProvidersConfig, Secret};
pub use error::GatewayError;

/// Resolves Loupe API keys to orgs (the server's key store).
pub trait KeyResolver: Send + Sync + 'static {
    /// False when no keys exist: everything belongs to org `default`.
    fn enabled(&self) -> bool;
    fn org_of(&self, key: &str) -> Option<String>;
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    pub requests: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub records_sent: AtomicU64,
    pub records_dropped: AtomicU64,
    pub sink_errors: AtomicU64,
    pub client_disconnects: AtomicU64,
}

/// The gateway: configuration, HTTP client, price table, and the record queue.
pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    pub(crate) providers: ProvidersConfig,
    pub(crate) prices: Arc<PriceTable>,
    pub(crate) keys: Arc<dyn KeyResolver>,
    pub(crate) client: reqwest::Client,
    pub(crate) recorder: recorder::Recorder,
    pub metrics: Arc<GatewayMetrics>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Must be called inside a Tokio runtime (it starts the recorder task).
    pub fn new(
        cfg: GatewayConfig,
        providers: ProvidersConfig,
        prices: Arc<PriceTable>,
        sink: Arc<dyn EventSink>,
        keys: Arc<dyn KeyResolver>,
    ) -> Result<Arc<Gateway>, GatewayError> {
        for (name, p) in &providers.0 {
            if !p.base_url.is_empty() && url_ok(&p.base_url).is_none() {
                return Err(GatewayError::Config(format!(
                    "providers.{name}.base_url '{}' is not an http(s) URL",
                    p.base_url
                )));
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .build()
            .map_err(|e| GatewayError::Config(format!("http client: {e}")))?;
        let metrics = Arc::new(GatewayMetrics::default());
        let recorder = recorder::Recorder::start(cfg.record_queue, sink, metrics.clone());
        Ok(Arc::new(Gateway {
            cfg,
            providers,
            prices,
            keys,
            client,
            recorder,
            metrics,
        }))
    }

    /// The gateway's routes (merge into the server's route table).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(proxy::chat_completions))
            .route("/v1/completions", post(proxy::completions))
            .route("/v1/embeddings", post(proxy::embeddings))
            .route("/v1/responses", post(proxy::responses))
            .route("/v1/messages", post(proxy::messages))
            .route("/v1/models", get(proxy::models))
            .layer(axum::extract::DefaultBodyLimit::max(
                self.cfg.max_request_bytes,
            ))
            .with_state(self.clone())
    }

    /// Prometheus text lines for `/metrics`.
    pub fn render_prometheus(&self) -> String {
        let m = &self.metrics;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE loupe_gateway_requests_total counter\nloupe_gateway_requests_total {}\n\
             # TYPE loupe_gateway_upstream_errors_total counter\nloupe_gateway_upstream_errors_total {}\n\
             # TYPE loupe_gateway_records_sent_total counter\nloupe_gateway_records_sent_total {}\n\
             # TYPE loupe_gateway_records_dropped_total counter\nloupe_gateway_records_dropped_total {}\n\
             # TYPE loupe_gateway_sink_errors_total counter\nloupe_gateway_sink_errors_total {}\n\
             # TYPE loupe_gateway_client_disconnects_total counter\nloupe_gateway_client_disconnects_total {}\n",
            g(&m.requests),
            g(&m.upstream_errors),
            g(&m.records_sent),
            g(&m.records_dropped),
            g(&m.sink_errors),
            g(&m.client_disconnects),
        )
    }

    /// Stops taking records and waits until the queued ones reached the sink.
    pub async fn shutdown(&self) {
        self.recorder.shutdown().await;
    }
}

fn url_ok(s: &str) -> Option<()> {
    (s.starts_with("http://") || s.starts_with("https://")).then_some(())
}
