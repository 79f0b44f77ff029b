//! The `loupe` binary's library: configuration, API-key auth, the axum route table and the wiring
//! of storage, ingest and query. It is the only crate that knows about HTTP statuses (see
//! [`error::status_of`]); it may depend on every other Loupe crate, and none may depend on it.

pub mod analytics;
pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod keys;

use std::sync::Arc;

use axum::serve::ListenerExt;
use loupe_model::PriceTable;
use loupe_storage::Storage;
use tokio::net::TcpListener;

use crate::config::Config;

/// Loads the bundled price table plus the configured override file.
pub fn load_prices(cfg: &Config) -> Result<PriceTable, String> {
    let mut prices = PriceTable::bundled().map_err(|e| e.to_string())?;
    if let Some(path) = &cfg.prices.override_file {
        let json = std::fs::read_to_string(path)
            .map_err(|e| format!("prices.override_file {}: {e}", path.display()))?;
        let n = prices
            .merge_overrides_json(&json)
            .map_err(|e| format!("prices.override_file {}: {e}", path.display()))?;
        tracing::info!(entries = n, "loaded price overrides");
    }
    Ok(prices)
}

/// Runs the server until SIGINT/SIGTERM, then flushes and stops.
pub async fn serve(cfg: Config) -> Result<(), String> {
    let keys = keys::KeyStore::open(cfg.keys_file())?;
    if !cfg.server.listen.ip().is_loopback() && !keys.enabled() {
        return Err(format!(
            "refusing to listen on {} without API keys: anyone who can reach it could write data. \
             Create a key first ('loupe keys create --org NAME'), or listen on 127.0.0.1",
            cfg.server.listen
        ));
    }
    let prices = Arc::new(load_prices(&cfg)?);
    let storage = Storage::open(cfg.storage.clone())
        .await
        .map_err(|e| format!("cannot open storage: {e}"))?;
    let query = loupe_query::QueryEngine::new(storage.clone(), cfg.query.limits());
    let keys = Arc::new(keys);
    let gateway = loupe_gateway::Gateway::new(
        cfg.gateway.clone(),
        cfg.providers.clone(),
        prices.clone(),
        Arc::new(storage.clone()),
        keys.clone(),
    )
    .map_err(|e| format!("gateway: {e}"))?;
    let state = Arc::new(app::AppState {
        storage: storage.clone(),
        query,
        prices,
        keys,
        gateway: Some(gateway.clone()),
        limits: cfg.ingest,
        max_body_bytes: cfg.server.max_body_bytes,
    });
    let listener = TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.server.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Tests and scripts read this line to find the port when listening on :0.
    eprintln!("loupe listening on http://{addr}");
    // Without TCP_NODELAY, Nagle holds each small SSE chunk until the client's delayed ACK
    // (~40 ms on Linux): streamed calls would get their tokens late.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    tracing::info!("shutting down: flushing acknowledged records");
    gateway.shutdown().await;
    storage.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
