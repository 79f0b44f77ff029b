//! The LLM gateway: an OpenAI-compatible (and Anthropic-native) proxy that forwards each call to
//! its provider, streams the answer back event by event, and records the call — tokens, exact
//! cost, latency, TTFT, user, session, properties — by handing a [`RequestRecord`] to an
//! [`EventSink`] off the hot path (bounded queue; if storage is slow the call still goes through
//! and the dropped record is counted). It must not depend on storage, Parquet, DataFusion or
//! the server: keys come in through [`KeyResolver`], records go out through [`EventSink`].
//!
//! Resilience (Helicone-compatible headers, config defaults per route): a response cache
//! ([`cache`], behind [`CacheStore`]), retries with backoff ([`retry`]), fallbacks across
//! providers ([`fallback`]), and rate limits ([`ratelimit`], behind [`RateLimitStore`]).

mod anthropic;
mod attempts;
pub mod cache;
pub mod config;
pub mod error;
pub mod fallback;
mod proxy;
pub mod ratelimit;
mod recorder;
mod replay;
pub mod retry;
pub mod sse;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::{get, post};
use loupe_model::{EventSink, PriceTable};

pub use cache::{CacheStore, TieredCache};
pub use config::{
    CacheConfig, FailureMode, GatewayConfig, ProviderConfig, ProviderKind, ProvidersConfig,
    RateLimitConfig, RateLimitPolicyConfig, RetryConfig, RouteConfig, Secret,
};
pub use error::GatewayError;
pub use ratelimit::{MemoryRateLimits, RateLimitStore};
pub use sse::EventSplitter;

/// Resolves Loupe API keys to orgs (the server's key store).
pub trait KeyResolver: Send + Sync + 'static {
    /// False when no keys exist: everything belongs to org `default`.
    fn enabled(&self) -> bool;
    fn org_of(&self, key: &str) -> Option<String>;
}

/// Counters for `/metrics` (read them with [`Gateway::metrics_snapshot`]).
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    pub requests: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub records_sent: AtomicU64,
    pub records_dropped: AtomicU64,
    pub sink_errors: AtomicU64,
    pub client_disconnects: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub retries: AtomicU64,
    pub fallbacks: AtomicU64,
    pub rate_limited: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Calls received on the proxy endpoints (`/v1/models` excluded).
    pub requests: u64,
    /// Calls the provider answered with an error status, or that failed to reach it / broke off.
    pub upstream_errors: u64,
    /// Records the sink acknowledged.
    pub records_sent: u64,
    /// Records lost: queue full, sink failed, or recorded after shutdown.
    pub records_dropped: u64,
    /// Failed sink appends (each drops its whole batch).
    pub sink_errors: u64,
    /// Calls whose client went away before the answer was complete.
    pub client_disconnects: u64,
    /// Records waiting in the queue now.
    pub queued: u64,
    /// Calls answered from the cache.
    pub cache_hits: u64,
    /// Cached-enabled calls that went to the provider.
    pub cache_misses: u64,
    /// Upstream attempts that were retries of the same target.
    pub retries: u64,
    /// Upstream attempts that went to a fallback.
    pub fallbacks: u64,
    /// Calls refused by a rate limit (429).
    pub rate_limited: u64,
}

/// The stores behind the cache and the rate limits (in process by default; see
/// [`Gateway::with_stores`] for shared ones).
#[derive(Clone)]
pub struct Stores {
    pub cache: Arc<dyn CacheStore>,
    pub rate_limits: Arc<dyn RateLimitStore>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

impl Stores {
    /// The in-process stores for `cfg`: a [`TieredCache`] (memory, plus disk when
    /// `cache.disk_dir` is set) and [`MemoryRateLimits`].
    pub fn in_process(cfg: &GatewayConfig) -> Result<Stores, GatewayError> {
        let dir =
            (!cfg.cache.disk_dir.is_empty()).then(|| std::path::Path::new(&cfg.cache.disk_dir));
        let cache = TieredCache::new(cfg.cache.max_bytes, dir, cfg.cache.disk_max_bytes)
            .map_err(GatewayError::Config)?;
        Ok(Stores {
            cache: Arc::new(cache),
            rate_limits: Arc::new(MemoryRateLimits::new()),
        })
    }
}

/// Runs a store call: at once when it is ready at the first poll (the in-process stores), else
/// on a task of its own, so a slow shared store never holds up a call.
pub(crate) fn run_soon<T: Send + 'static>(
    fut: futures::future::BoxFuture<'static, Result<T, String>>,
) {
    use futures::FutureExt;
    let mut fut = fut;
    match (&mut fut).now_or_never() {
        Some(Err(e)) => tracing::warn!(error = %e, "cache/rate-limit store write failed"),
        Some(Ok(_)) => {}
        None => match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::warn!(error = %e, "cache/rate-limit store write failed");
                    }
                });
            }
            Err(_) => tracing::warn!("cache/rate-limit store write dropped: no runtime"),
        },
    }
}

/// The gateway: configuration, HTTP client, price table, and the record queue.
pub struct Gateway {
    pub(crate) cfg: GatewayConfig,
    pub(crate) providers: ProvidersConfig,
    pub(crate) prices: Arc<PriceTable>,
    pub(crate) keys: Arc<dyn KeyResolver>,
    pub(crate) client: reqwest::Client,
    pub(crate) recorder: recorder::Recorder,
    pub(crate) stores: Stores,
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
        let stores = Stores::in_process(&cfg)?;
        Self::with_stores(cfg, providers, prices, sink, keys, stores)
    }

    /// As [`Gateway::new`], with the cache and rate-limit counters in `stores` (e.g. shared
    /// ones, so limits and cached answers hold across gateway nodes).
    pub fn with_stores(
        cfg: GatewayConfig,
        providers: ProvidersConfig,
        prices: Arc<PriceTable>,
        sink: Arc<dyn EventSink>,
        keys: Arc<dyn KeyResolver>,
        stores: Stores,
    ) -> Result<Arc<Gateway>, GatewayError> {
        ratelimit::validate(&cfg.rate_limit).map_err(GatewayError::Config)?;
        for (name, p) in &providers.0 {
            if !p.base_url.is_empty() && url_ok(&p.base_url).is_none() {
                return Err(GatewayError::Config(format!(
                    "providers.{name}.base_url '{}' is not an http(s) URL",
                    p.base_url
                )));
            }
        }
        for (from, to) in &cfg.model_map {
            if let Some((p, m)) = to.split_once('/')
                && (!providers.0.contains_key(p) || m.is_empty())
            {
                return Err(GatewayError::Config(format!(
                    "gateway.model_map.\"{from}\" = \"{to}\": '{p}' is not a configured provider; \
                     write \"provider/model\" with one of: {} (e.g. \"openai/{to}\")",
                    providers.0.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(
                cfg.connect_timeout_secs.max(1),
            ))
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
            stores,
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

    /// The counters now.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        let m = &self.metrics;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            requests: g(&m.requests),
            upstream_errors: g(&m.upstream_errors),
            records_sent: g(&m.records_sent),
            records_dropped: g(&m.records_dropped),
            sink_errors: g(&m.sink_errors),
            client_disconnects: g(&m.client_disconnects),
            queued: self.recorder.queued() as u64,
            cache_hits: g(&m.cache_hits),
            cache_misses: g(&m.cache_misses),
            retries: g(&m.retries),
            fallbacks: g(&m.fallbacks),
            rate_limited: g(&m.rate_limited),
        }
    }

    /// Prometheus text lines for `/metrics`.
    pub fn render_prometheus(&self) -> String {
        let m = self.metrics_snapshot();
        format!(
            "# TYPE loupe_gateway_requests_total counter\nloupe_gateway_requests_total {}\n\
             # TYPE loupe_gateway_upstream_errors_total counter\nloupe_gateway_upstream_errors_total {}\n\
             # TYPE loupe_gateway_records_sent_total counter\nloupe_gateway_records_sent_total {}\n\
             # TYPE loupe_gateway_records_dropped_total counter\nloupe_gateway_records_dropped_total {}\n\
             # TYPE loupe_gateway_sink_errors_total counter\nloupe_gateway_sink_errors_total {}\n\
             # TYPE loupe_gateway_client_disconnects_total counter\nloupe_gateway_client_disconnects_total {}\n\
             # TYPE loupe_gateway_record_queue gauge\nloupe_gateway_record_queue {}\n\
             # TYPE loupe_gateway_cache_hits_total counter\nloupe_gateway_cache_hits_total {}\n\
             # TYPE loupe_gateway_cache_misses_total counter\nloupe_gateway_cache_misses_total {}\n\
             # TYPE loupe_gateway_retries_total counter\nloupe_gateway_retries_total {}\n\
             # TYPE loupe_gateway_fallbacks_total counter\nloupe_gateway_fallbacks_total {}\n\
             # TYPE loupe_gateway_rate_limited_total counter\nloupe_gateway_rate_limited_total {}\n",
            m.requests,
            m.upstream_errors,
            m.records_sent,
            m.records_dropped,
            m.sink_errors,
            m.client_disconnects,
            m.queued,
            m.cache_hits,
            m.cache_misses,
            m.retries,
            m.fallbacks,
            m.rate_limited,
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
