//! The `loupe` binary's library: configuration, API-key auth, the axum route table and the wiring
//! of storage, ingest and query. It is the only crate that knows about HTTP statuses (see
//! [`error::status_of`]); it may depend on every other Loupe crate, and none may depend on it.

pub mod analytics;
pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod keys;
pub mod otlp;

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
    let spans = Storage::open_table(cfg.storage.clone(), loupe_storage::TableSpec::SPANS)
        .await
        .map_err(|e| format!("cannot open the spans table: {e}"))?;
    let query = loupe_query::QueryEngine::new(storage.clone(), cfg.query.limits())
        .with_spans(spans.clone());
    let keys_enabled = keys.enabled();
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
        spans: spans.clone(),
        query,
        prices,
        keys,
        gateway: Some(gateway.clone()),
        limits: cfg.ingest,
        max_body_bytes: cfg.server.max_body_bytes,
        otlp: otlp::OtlpState::open(&cfg.otlp, &cfg.storage.data_dir)?,
    });
    let grpc_listener = bind_grpc(&cfg, keys_enabled).await?;
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc = grpc_listener.map(|l| {
        let mut rx = stop_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(otlp::serve_grpc(state.clone(), l, stop))
    });
    let served = axum::serve(listener, app::router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(|e| format!("server error: {e}"));
    drop(stop_rx);
    if let Some(mut g) = grpc {
        // The HTTP server stopped (signal or error), so has gRPC's graceful shutdown begun: give
        // in-flight exports a few seconds, then close idle exporter connections (they reconnect).
        match tokio::time::timeout(std::time::Duration::from_secs(5), &mut g).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "OTLP/gRPC server"),
            Ok(_) => {}
            Err(_) => g.abort(),
        }
    }
    served?;
    tracing::info!("shutting down: flushing acknowledged records");
    gateway.shutdown().await;
    tokio::join!(storage.shutdown(), spans.shutdown());
    Ok(())
}

/// Binds the OTLP/gRPC listener (`otlp.grpc_listen`; `""` = off). See [`otlp::OtlpConfig`].
async fn bind_grpc(cfg: &Config, keys_enabled: bool) -> Result<Option<TcpListener>, String> {
    let raw = cfg.otlp.grpc_listen.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = raw.parse().map_err(|e| {
        format!("otlp.grpc_listen {raw:?} is not an address such as 127.0.0.1:4317: {e}")
    })?;
    if !addr.ip().is_loopback() && !keys_enabled {
        return Err(format!(
            "refusing to serve OTLP/gRPC on {addr} without API keys; create a key first or listen on 127.0.0.1"
        ));
    }
    match TcpListener::bind(addr).await {
        Ok(l) => {
            let local = l.local_addr().map_err(|e| e.to_string())?;
            // Tests read this line to find the port when listening on :0.
            eprintln!("loupe OTLP/gRPC listening on {local}");
            Ok(Some(l))
        }
        Err(e) if raw == otlp::DEFAULT_GRPC_LISTEN => {
            tracing::warn!(
                error = %e,
                "OTLP/gRPC is off: cannot listen on the default {raw} (set otlp.grpc_listen to another address, or \"\" to silence this)"
            );
            Ok(None)
        }
        Err(e) => Err(format!("cannot listen on {addr} (otlp.grpc_listen): {e}")),
    }
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
