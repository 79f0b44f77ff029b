//! The route table and its thin handlers.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use loupe_ingest::{HeliconeRoute, IngestContext, IngestLimits};
use loupe_model::{ErrorKind, PriceTable};
use loupe_storage::Storage;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::keys::{Caller, KeyStore, StoredKey};

/// Everything handlers share. No globals: this is passed to the router as state.
pub struct AppState {
    /// The `requests` table.
    pub storage: Storage,
    /// The `spans` table (OTLP spans of every kind).
    pub spans: Storage,
    pub query: loupe_query::QueryEngine,
    pub prices: Arc<PriceTable>,
    pub keys: Arc<KeyStore>,
    pub gateway: Option<Arc<loupe_gateway::Gateway>>,
    pub limits: IngestLimits,
    pub max_body_bytes: usize,
    /// OTLP receiver state (event logs waiting for their span).
    pub otlp: crate::otlp::OtlpState,
}

pub type Shared = Arc<AppState>;

/// The one route table.
pub fn router(state: Shared) -> Router {
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/ingest", post(ingest_native))
        .route("/v1/hql", post(hql))
        .route("/v1/hql/explain", post(hql_explain))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}", delete(revoke_key));
    for route in HeliconeRoute::ALL {
        r = r.route(
            route.path(),
            post(move |s: State<Shared>, h: HeaderMap, b: Body| helicone_log(s, h, b, route)),
        );
    }
    // OpenTelemetry OTLP/HTTP receiver (docs/otlp.md).
    r = r
        .route("/v1/traces", post(crate::otlp::traces))
        .route("/v1/logs", post(crate::otlp::logs));
    // Helicone's Jawn also accepts the custom body here.
    r = r.route(
        "/v1/trace/custom/log",
        post(|s: State<Shared>, h: HeaderMap, b: Body| {
            helicone_log(s, h, b, HeliconeRoute::Custom)
        }),
    );
    // Dashboard: analytics API, saved queries, and the web UI at `/` (analytics.rs).
    let r = r.merge(crate::analytics::routes());
    let gateway = state.gateway.clone();
    let r = r.fallback(not_found).with_state(state);
    match gateway {
        Some(g) => r.merge(g.router()),
        None => r,
    }
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "no such endpoint; see docs/api.md for the routes Loupe serves",
    )
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn metrics(State(st): State<Shared>) -> impl IntoResponse {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let s = st.storage.stats();
    let sp = st.spans.stats();
    let (waiting, expired) = st.otlp.join_stats();
    let (counter, gauge) = ("counter", "gauge");
    let series: [(&str, &str, u64); 16] = [
        (
            "loupe_ingested_records_total",
            counter,
            s.appended_records.load(Relaxed),
        ),
        (
            "loupe_duplicate_records_total",
            counter,
            s.duplicate_records.load(Relaxed),
        ),
        ("loupe_flushes_total", counter, s.flushes.load(Relaxed)),
        (
            "loupe_flushed_records_total",
            counter,
            s.flushed_records.load(Relaxed),
        ),
        (
            "loupe_flush_errors_total",
            counter,
            s.flush_errors.load(Relaxed),
        ),
        (
            "loupe_compactions_total",
            counter,
            s.compactions.load(Relaxed),
        ),
        (
            "loupe_pending_records",
            gauge,
            st.storage.pending_rows() as u64,
        ),
        ("loupe_wal_bytes", gauge, st.storage.wal_bytes()),
        (
            "loupe_dedup_index_entries",
            gauge,
            st.storage.dedup_index_len() as u64,
        ),
        (
            "loupe_spans_ingested_total",
            counter,
            sp.appended_records.load(Relaxed),
        ),
        (
            "loupe_spans_duplicate_total",
            counter,
            sp.duplicate_records.load(Relaxed),
        ),
        (
            "loupe_spans_flush_errors_total",
            counter,
            sp.flush_errors.load(Relaxed),
        ),
        ("loupe_spans_pending", gauge, st.spans.pending_rows() as u64),
        ("loupe_spans_wal_bytes", gauge, st.spans.wal_bytes()),
        ("loupe_otlp_join_waiting_spans", gauge, waiting as u64),
        ("loupe_otlp_join_expired_events_total", counter, expired),
    ];
    let mut body = String::new();
    for (name, kind, value) in series {
        let _ = write!(body, "# TYPE {name} {kind}\n{name} {value}\n");
    }
    if let Some(g) = &st.gateway {
        body += &g.render_prometheus();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// The caller's key: `None` when no key exists (then every request is accepted as org
/// `default`). Accepts `Authorization: Bearer <key>` and Helicone's `Helicone-Auth` (alias
/// `Loupe-Auth`).
pub(crate) fn caller(st: &AppState, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
    if !st.keys.enabled() {
        return Ok(None);
    }
    let presented = ["loupe-auth", "helicone-auth", "authorization"]
        .iter()
        .find_map(|h| {
            headers.get(*h).and_then(|v| v.to_str().ok()).map(|v| {
                v.trim()
                    .strip_prefix("Bearer ")
                    .unwrap_or(v.trim())
                    .trim()
                    .to_string()
            })
        });
    let Some(key) = presented else {
        return Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "missing API key: send 'Authorization: Bearer <key>' (create one with 'loupe keys create --org NAME')",
        ));
    };
    st.keys.caller(&key).map(Some).ok_or_else(|| {
        ApiError::new(
            ErrorKind::Unauthenticated,
            "invalid API key: it is unknown or was revoked",
        )
    })
}

/// Resolves the caller's org. With no keys configured everything belongs to `default`.
pub(crate) fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    Ok(caller(st, headers)?.map_or_else(|| "default".to_string(), |c| c.org))
}

async fn read_body(st: &AppState, body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, st.max_body_bytes).await.map_err(|_| {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "request body is larger than {} bytes (server.max_body_bytes): split the batch or raise the limit",
                st.max_body_bytes
            ),
        )
    })
}

pub(crate) fn context(st: &AppState, org: String) -> IngestContext {
    let mut ctx = IngestContext::new(org, st.prices.clone());
    ctx.limits = st.limits;
    ctx
}

async fn ingest_native(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let org = authenticate(&st, &headers)?;
    let bytes = read_body(&st, body).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let ctx = context(&st, org);
    // Parsing thousands of records is CPU work: keep it off the I/O threads.
    let records = tokio::task::spawn_blocking(move || {
        loupe_ingest::parse_native(&bytes, content_type.as_deref(), &ctx)
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::Internal, format!("ingest worker failed: {e}")))??;
    let ack = st
        .storage
        .append(records)
        .await
        .map_err(loupe_model::SinkError::from)?;
    Ok(
        axum::Json(json!({ "accepted": ack.accepted, "duplicates": ack.duplicates }))
            .into_response(),
    )
}

async fn helicone_log(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Body,
    route: HeliconeRoute,
) -> Result<Response, ApiError> {
    let org = authenticate(&st, &headers)?;
    let bytes = read_body(&st, body).await?;
    let ctx = context(&st, org);
    let record = loupe_ingest::parse_helicone_log(&bytes, route, &ctx)?;
    let id = record.request_id;
    let ack = st
        .storage
        .append(vec![record])
        .await
        .map_err(loupe_model::SinkError::from)?;
    Ok(axum::Json(
        json!({ "accepted": ack.accepted, "duplicates": ack.duplicates, "request_id": id }),
    )
    .into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HqlRequest {
    query: String,
    #[serde(default)]
    format: HqlFormat,
}

#[derive(serde::Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum HqlFormat {
    #[default]
    Json,
    Csv,
    Arrow,
}

async fn hql_request(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, HqlRequest), ApiError> {
    let org = authenticate(st, headers)?;
    let bytes = read_body(st, body).await?;
    let req: HqlRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            ErrorKind::InvalidInput,
            format!(
                "the body must be JSON {{\"query\": \"requests | take 10\", \"format\": \"json\"|\"csv\"|\"arrow\"}}: {e}"
            ),
        )
    })?;
    Ok((org, req))
}

async fn hql(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (org, req) = hql_request(&st, &headers, body).await?;
    let out = st.query.hql(&org, &req.query).await?;
    use loupe_query::format;
    Ok(match req.format {
        HqlFormat::Json => {
            let mut v = format::to_json(&out.schema, &out.batches)?;
            v["stats"] = serde_json::to_value(&out.stats).unwrap_or_default();
            axum::Json(v).into_response()
        }
        HqlFormat::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            format::to_csv(&out.schema, &out.batches)?,
        )
            .into_response(),
        HqlFormat::Arrow => (
            [(header::CONTENT_TYPE, "application/vnd.apache.arrow.stream")],
            format::to_arrow(&out.schema, &out.batches)?,
        )
            .into_response(),
    })
}

async fn hql_explain(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (org, req) = hql_request(&st, &headers, body).await?;
    let explain = st.query.explain(&org, &req.query).await?;
    Ok(axum::Json(explain).into_response())
}

/// Who may manage keys: any valid key, for its own org (keys have no roles: a key can already
/// read and write everything of its org). Without keys the server cannot tell who is asking, and
/// the first key turns authentication on for every client: that is done on the server.
fn key_manager(st: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    caller(st, headers)?.ok_or_else(|| {
        ApiError::new(
            ErrorKind::Forbidden,
            "no API keys exist, so this server runs without authentication and cannot tell who is \
             asking: create the first key on the server with 'loupe keys create --org NAME' (it \
             turns authentication on for every client); then any key of an org can create and \
             revoke that org's keys here",
        )
    })
}

/// A key as the API shows it: never the key itself, nor its hash.
fn key_json(k: &StoredKey, caller: Option<&Caller>) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.display_prefix,
        "created_at": k.created_at,
        "created_by": k.created_by,
        "current": caller.is_some_and(|c| c.key_id == k.id),
    })
}

/// `GET /v1/keys`: the caller's org and its keys (prefixes only; keys are stored hashed).
async fn list_keys(State(st): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = caller(&st, &headers)?;
    let org = caller
        .as_ref()
        .map_or_else(|| "default".to_string(), |c| c.org.clone());
    let keys: Vec<Value> = st
        .keys
        .list(&org)?
        .iter()
        .map(|k| key_json(k, caller.as_ref()))
        .collect();
    Ok(
        axum::Json(json!({ "org": org, "auth_required": caller.is_some(), "keys": keys }))
            .into_response(),
    )
}

fn field_error(field: &str, message: impl Into<String>) -> ApiError {
    let mut e = ApiError::new(ErrorKind::InvalidInput, message);
    e.details = Some(json!({ "field": field }));
    e
}

/// The name in a `POST /v1/keys` body: `{"name": "LABEL"}`, nothing else.
fn new_key_name(bytes: &[u8]) -> Result<String, ApiError> {
    const SHAPE: &str = "the body must be a JSON object {\"name\": \"LABEL\"}";
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(ErrorKind::InvalidInput, format!("{SHAPE}: {e}")))?;
    let Value::Object(obj) = v else {
        return Err(ApiError::new(
            ErrorKind::InvalidInput,
            format!("{SHAPE}, not {v}"),
        ));
    };
    for k in obj.keys() {
        match k.as_str() {
            "name" => {}
            "org" => {
                return Err(field_error(
                    "org",
                    "org cannot be chosen: a key is created for the org of the key you sign in \
                     with; remove the field (for another org, sign in with its key, or run \
                     'loupe keys create --org NAME' on the server)",
                ));
            }
            other => {
                return Err(field_error(
                    other,
                    format!("unknown field {other:?}: {SHAPE}"),
                ));
            }
        }
    }
    match obj.get("name") {
        None => Err(field_error(
            "name",
            format!("name is required: {SHAPE}, e.g. {{\"name\": \"ci-pipeline\"}}"),
        )),
        Some(Value::String(s)) if s.is_empty() => Err(field_error(
            "name",
            "name is empty: give the key a label saying who or what uses it, e.g. \"ci-pipeline\"",
        )),
        Some(Value::String(s)) => {
            crate::keys::validate_name(s)?;
            Ok(s.clone())
        }
        Some(other) => Err(field_error(
            "name",
            format!("name must be a string such as \"ci-pipeline\", not {other}"),
        )),
    }
}

fn worker_failed(e: tokio::task::JoinError) -> ApiError {
    ApiError::new(ErrorKind::Internal, format!("key worker failed: {e}"))
}

/// `POST /v1/keys`: a new key of the caller's org. The key is in this answer only.
async fn create_key(
    State(st): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = key_manager(&st, &headers)?;
    let bytes = read_body(&st, body).await?;
    let name = new_key_name(&bytes)?;
    let keys = st.keys.clone();
    let (key, stored) =
        tokio::task::spawn_blocking(move || keys.create(&caller.org, &name, Some(&caller.key_id)))
            .await
            .map_err(worker_failed)??;
    let mut v = key_json(&stored, None);
    v["org"] = json!(stored.org_id);
    v["key"] = json!(key);
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(v),
    )
        .into_response())
}

/// `DELETE /v1/keys/{id}`: revokes a key of the caller's org (not the caller's own key).
async fn revoke_key(
    State(st): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = key_manager(&st, &headers)?;
    let keys = st.keys.clone();
    let revoked =
        tokio::task::spawn_blocking(move || keys.revoke(&caller.org, &id, &caller.key_id))
            .await
            .map_err(worker_failed)??;
    Ok(axum::Json(json!({ "revoked": key_json(&revoked, None) })).into_response())
}
