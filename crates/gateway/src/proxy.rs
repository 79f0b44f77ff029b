//! The proxy: authenticate, route, forward, stream back, record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use loupe_model::{RequestRecord, Source, Usage, keep_upstream_header};
use serde_json::Value;
use uuid::Uuid;

use crate::attempts::{Answer, Prepared, entry_key, prepare, try_once};
use crate::config::{ProviderConfig, ProviderKind};
use crate::replay::{CacheSave, serve_hit};
use crate::sse::{EventSplitter, data_of};
use crate::{Gateway, GatewayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Messages,
}

impl Endpoint {
    /// The path below the provider's versioned base URL.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Messages => "/messages",
        }
    }
    pub(crate) fn anthropic(self) -> bool {
        self == Endpoint::Messages
    }
}

/// The request body, or why axum could not read it (too large, broken connection).
type BodyResult = Result<Bytes, axum::extract::rejection::BytesRejection>;

pub(crate) async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    b: BodyResult,
) -> Response {
    handle(gw, Endpoint::Chat, h, b).await
}
pub(crate) async fn completions(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    b: BodyResult,
) -> Response {
    handle(gw, Endpoint::Completions, h, b).await
}
pub(crate) async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    b: BodyResult,
) -> Response {
    handle(gw, Endpoint::Embeddings, h, b).await
}
pub(crate) async fn responses(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    b: BodyResult,
) -> Response {
    handle(gw, Endpoint::Responses, h, b).await
}
pub(crate) async fn messages(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    b: BodyResult,
) -> Response {
    handle(gw, Endpoint::Messages, h, b).await
}

/// `GET /v1/models`: the OpenAI provider's list (same auth rules as calls; not recorded).
pub(crate) async fn models(State(gw): State<Arc<Gateway>>, h: HeaderMap) -> Response {
    let result = async {
        let (_, passthrough) = authenticate(&gw, &h)?;
        let p = gw
            .providers
            .0
            .get("openai")
            .cloned()
            .ok_or_else(|| GatewayError::Config("no [providers.openai]".into()))?;
        let key = upstream_key(&p, "openai", passthrough)?;
        let req = gw
            .client
            .get(format!("{}/models", p.base_url.trim_end_matches('/')))
            .bearer_auth(key)
            .timeout(Duration::from_secs(gw.cfg.upstream_timeout_secs.max(1)));
        let resp = req
            .send()
            .await
            .map_err(|e| GatewayError::Upstream(format!("cannot reach openai: {e}")))?;
        let status = resp.status();
        let ct = resp.headers().get("content-type").cloned();
        let body = resp
            .bytes()
            .await
            .map_err(|e| GatewayError::Upstream(format!("reading openai's answer: {e}")))?;
        let mut r = (status, body).into_response();
        if let Some(ct) = ct {
            r.headers_mut().insert("content-type", ct);
        }
        Ok::<_, GatewayError>(r)
    }
    .await;
    result.unwrap_or_else(|e| e.into_response_for(false))
}

/// What the Helicone/Loupe headers of a call say.
pub(crate) struct Meta {
    pub(crate) request_id: Uuid,
    pub(crate) user_id: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) session_path: Option<String>,
    pub(crate) session_name: Option<String>,
    pub(crate) properties: std::collections::BTreeMap<String, String>,
    pub(crate) omit_request: bool,
    pub(crate) omit_response: bool,
    pub(crate) model_override: Option<String>,
    pub(crate) target_url: Option<String>,
}

/// `Helicone-<name>` or `Loupe-<name>` (name in lower case).
pub(crate) fn meta_header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    for prefix in ["helicone-", "loupe-"] {
        if let Some(v) = h
            .get(format!("{prefix}{name}"))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            return Some(v);
        }
    }
    None
}

/// Helicone accepts a request id only if it is an RFC 4122 UUID of version 1–5.
fn valid_request_id(v: &str) -> Option<Uuid> {
    let id = Uuid::parse_str(v).ok()?;
    let version_ok = (1..=5).contains(&id.get_version_num());
    let variant_ok = id.get_variant() == uuid::Variant::RFC4122;
    (version_ok && variant_ok && v.len() == 36).then_some(id)
}

impl Meta {
    fn from_headers(h: &HeaderMap, body: Option<&Value>) -> Meta {
        let flag = |n: &str| meta_header(h, n).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let own = |n: &str| meta_header(h, n).map(str::to_owned);
        let mut properties = std::collections::BTreeMap::new();
        for (name, value) in h {
            let n = name.as_str();
            let key = n
                .strip_prefix("helicone-property-")
                .or_else(|| n.strip_prefix("loupe-property-"));
            if let (Some(k), Ok(v)) = (key.filter(|k| !k.is_empty()), value.to_str()) {
                properties.insert(k.to_owned(), v.to_owned());
            }
        }
        Meta {
            request_id: meta_header(h, "request-id")
                .and_then(valid_request_id)
                .unwrap_or_else(Uuid::new_v4),
            user_id: own("user-id").or_else(|| {
                body.and_then(|b| b.get("user"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }),
            session_id: own("session-id"),
            session_path: own("session-path"),
            session_name: own("session-name"),
            properties,
            omit_request: flag("omit-request"),
            omit_response: flag("omit-response"),
            model_override: own("model-override"),
            target_url: own("target-url"),
        }
    }
}

pub(crate) fn bearer(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or(v)
        .trim()
}

pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
}

/// A provider key the caller sent.
#[derive(Clone)]
pub(crate) enum CallerKey {
    /// Passthrough mode: used instead of any configured key.
    Wins(String),
    /// No-keys mode: used only when the provider has no configured key.
    Fallback(String),
}

/// The caller's org, and the provider key to forward if the caller brought one.
///
/// * `Helicone-Auth`/`Loupe-Auth: Bearer <loupe key>` (passthrough mode): the org comes from that
///   key; the provider key is the caller's `Authorization`/`x-api-key`, forwarded, never stored.
/// * Otherwise (gateway mode) `Authorization: Bearer <loupe key>` (or `x-api-key`) names the org
///   and provider keys come from config.
/// * With no Loupe keys at all (loopback only, org `default`): a key the caller sends is used
///   as the provider key when the provider has none configured.
fn authenticate(gw: &Gateway, h: &HeaderMap) -> Result<(String, Option<CallerKey>), GatewayError> {
    let caller_key = header_str(h, "authorization")
        .map(bearer)
        .or_else(|| header_str(h, "x-api-key").map(str::trim))
        .map(str::to_owned);
    if let Some(v) = header_str(h, "helicone-auth").or_else(|| header_str(h, "loupe-auth")) {
        let org = if gw.keys.enabled() {
            gw.keys.org_of(bearer(v)).ok_or_else(|| {
                GatewayError::Unauthorized(
                    "Helicone-Auth/Loupe-Auth does not carry a valid Loupe API key; create one with 'loupe keys create --org NAME'".into(),
                )
            })?
        } else {
            "default".to_owned()
        };
        return Ok((org, caller_key.map(CallerKey::Wins)));
    }
    if !gw.keys.enabled() {
        return Ok(("default".to_owned(), caller_key.map(CallerKey::Fallback)));
    }
    match caller_key {
        Some(k) => match gw.keys.org_of(&k) {
            Some(org) => Ok((org, None)),
            None => Err(GatewayError::Unauthorized(
                "the key in Authorization is not a Loupe API key. Send your Loupe key as 'Authorization: Bearer <key>' (provider keys then come from [providers.*] in the config), or send 'Helicone-Auth: Bearer <loupe key>' and keep your provider key in Authorization".into(),
            )),
        },
        None => Err(GatewayError::Unauthorized(
            "missing credentials: send your Loupe API key as 'Authorization: Bearer <loupe key>' (or 'x-api-key: <loupe key>'), or 'Helicone-Auth: Bearer <loupe key>' with your provider key in Authorization".into(),
        )),
    }
}

pub(crate) fn upstream_key(
    p: &ProviderConfig,
    name: &str,
    caller: Option<CallerKey>,
) -> Result<String, GatewayError> {
    match (caller, p.key()) {
        (Some(CallerKey::Wins(k)), _) => return Ok(k),
        (_, Some(k)) => return Ok(k),
        (Some(CallerKey::Fallback(k)), None) => return Ok(k),
        (None, None) => {}
    }
    Err(GatewayError::Unauthorized(format!(
        "no API key for provider '{name}': set providers.{name}.api_key{} or send your own provider key in Authorization",
        if p.api_key_env.is_empty() {
            String::new()
        } else {
            format!(" (or env {})", p.api_key_env)
        }
    )))
}

/// Where a call goes.
pub(crate) struct Route {
    pub(crate) provider: String,
    pub(crate) config: ProviderConfig,
    /// The model name sent upstream (prefix stripped, map applied).
    pub(crate) model: String,
    pub(crate) url: String,
    /// OpenAI chat/completions sent to an Anthropic model: translate both ways.
    pub(crate) translate: bool,
}

/// The provider and upstream model for a requested model name:
/// 1. `[gateway.model_map]` entry for the exact name (`"provider/model"`, or a bare model
///    routed by rule 3);
/// 2. `provider/model` where `provider` is configured;
/// 3. `/v1/messages` → `anthropic`; `claude*` → `anthropic`, `gemini*` → `gemini`, else `openai`
///    (with the name unchanged, so `meta-llama/Llama-3-8B` goes to `openai` as it is).
pub(crate) fn resolve_model(
    model_map: &std::collections::BTreeMap<String, String>,
    providers: &crate::ProvidersConfig,
    anthropic_api: bool,
    model: &str,
) -> (String, String) {
    let model = model_map.get(model).map_or(model, String::as_str);
    if let Some((p, m)) = model.split_once('/')
        && providers.0.contains_key(p)
        && !m.is_empty()
    {
        return (p.to_owned(), m.to_owned());
    }
    let provider = if anthropic_api {
        "anthropic"
    } else {
        provider_of_model(model)
    };
    (provider.to_owned(), model.to_owned())
}

pub(crate) fn route(
    gw: &Gateway,
    ep: Endpoint,
    model: &str,
    target_url: Option<&str>,
    path: &str,
) -> Result<Route, GatewayError> {
    if let Some(target) = target_url {
        if !(target.starts_with("http://") || target.starts_with("https://")) {
            return Err(GatewayError::BadRequest(format!(
                "Helicone-Target-URL '{target}' is not an http(s) URL"
            )));
        }
        let kind = if ep.anthropic() {
            ProviderKind::Anthropic
        } else {
            ProviderKind::Openai
        };
        let (provider, _) = resolve_model(&gw.cfg.model_map, &gw.providers, ep.anthropic(), model);
        return Ok(Route {
            provider,
            config: ProviderConfig {
                kind,
                base_url: target.trim_end_matches('/').to_owned(),
                // No configured key ever goes to a caller-chosen URL: only the caller's own.
                api_key_env: String::new(),
                ..ProviderConfig::default()
            },
            model: model.to_owned(),
            url: format!("{}{path}", target.trim_end_matches('/')),
            translate: false,
        });
    }
    let (provider, upstream_model) =
        resolve_model(&gw.cfg.model_map, &gw.providers, ep.anthropic(), model);
    let config = gw.providers.0.get(&provider).cloned().ok_or_else(|| {
        GatewayError::BadRequest(format!(
            "unknown provider '{provider}' for model '{model}'; configure it as [providers.{provider}] with kind and base_url"
        ))
    })?;
    if config.base_url.is_empty() {
        return Err(GatewayError::BadRequest(format!(
            "provider '{provider}' has no base_url; set providers.{provider}.base_url (env LOUPE__PROVIDERS__{}__BASE_URL)",
            provider.to_ascii_uppercase()
        )));
    }
    let translate = config.kind == ProviderKind::Anthropic && ep == Endpoint::Chat;
    match (config.kind, ep.anthropic()) {
        (ProviderKind::Anthropic, false) if !translate => {
            return Err(GatewayError::BadRequest(format!(
                "model '{model}' is served by '{provider}' (Anthropic Messages API), which has no {} endpoint; use /v1/chat/completions or /v1/messages",
                ep.suffix()
            )));
        }
        (ProviderKind::Openai | ProviderKind::Azure, true) => {
            return Err(GatewayError::BadRequest(format!(
                "/v1/messages is Anthropic's API, but model '{model}' routes to '{provider}'; use an Anthropic model or the OpenAI endpoints"
            )));
        }
        _ => {}
    }
    let base = config.base_url.trim_end_matches('/');
    let url = match config.kind {
        ProviderKind::Anthropic => format!("{base}/messages"),
        ProviderKind::Azure => {
            let deployment = config
                .deployments
                .get(&upstream_model)
                .unwrap_or(&upstream_model);
            format!(
                "{base}/openai/deployments/{deployment}{}?api-version={}",
                ep.suffix(),
                config.api_version
            )
        }
        ProviderKind::Openai => format!("{base}{}", ep.suffix()),
    };
    Ok(Route {
        provider,
        config,
        model: upstream_model,
        url,
        translate,
    })
}

/// The provider a bare model name belongs to (also the price-table provider).
fn provider_of_model(model: &str) -> &'static str {
    if model.starts_with("claude") {
        "anthropic"
    } else if model.starts_with("gemini") {
        "gemini"
    } else {
        "openai"
    }
}

/// Headers never forwarded upstream: hop-by-hop, credentials (set per provider), the body's
/// framing and type (set by Loupe), Loupe's own.
fn forwardable(name: &str) -> bool {
    !(matches!(
        name,
        "host"
            | "content-length"
            | "content-type"
            | "connection"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "accept-encoding"
            | "authorization"
            | "x-api-key"
            | "api-key"
            | "cookie"
    ) || name.starts_with("helicone-")
        || name.starts_with("loupe-"))
}

/// Upstream response headers passed back (hop-by-hop and length are the server's business).
fn returnable(name: &str) -> bool {
    !matches!(
        name,
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "upgrade"
            | "te"
            | "trailer"
            | "proxy-authenticate"
            | "set-cookie"
    )
}

/// Header names a `Connection` header lists (hop-by-hop for this one message).
fn connection_listed(h: &HeaderMap) -> Vec<String> {
    h.get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Credentials seen on a call: never stored (see `recorder::redact`).
fn secrets_of(h: &HeaderMap, upstream_key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        let s = s.trim();
        if s.len() >= 8 && !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    add(upstream_key);
    for name in [
        "authorization",
        "x-api-key",
        "api-key",
        "helicone-auth",
        "loupe-auth",
        "proxy-authorization",
    ] {
        if let Some(v) = header_str(h, name) {
            add(bearer(v));
        }
    }
    out
}

/// A call in flight. Recorded exactly once: by `finish`/`fail`, or when dropped unfinished
/// (the client went away while Loupe waited for the provider).
pub(crate) struct Call {
    pub(crate) gw: Arc<Gateway>,
    pub(crate) record: RequestRecord,
    pub(crate) started: Instant,
    pub(crate) omit_response: bool,
    pub(crate) secrets: Vec<String>,
    /// The provider's status line arrived.
    pub(crate) responded: bool,
    pub(crate) sent: bool,
    /// `u=cents` rate-limit counters charged with the call's cost when it is finished.
    pub(crate) cents: Vec<crate::ratelimit::Applied>,
}

/// What Loupe answers when it could not get an answer from the provider.
pub(crate) struct SendError {
    pub(crate) status: i32,
    pub(crate) error_type: &'static str,
    pub(crate) err: GatewayError,
}

impl SendError {
    /// 502 `upstream_broken`: the provider's connection failed mid-call (`what` says where).
    fn broken(route: &Route, what: &str, e: &reqwest::Error) -> SendError {
        SendError {
            status: 502,
            error_type: "upstream_broken",
            err: GatewayError::Upstream(format!(
                "provider '{}' {what}: {}",
                route.provider,
                error_chain(e)
            )),
        }
    }

    /// 504 `upstream_timeout`: `what` did not happen within `gateway.upstream_timeout_secs`.
    fn timeout(route: &Route, what: &str, timeout: Duration) -> SendError {
        SendError {
            status: 504,
            error_type: "upstream_timeout",
            err: GatewayError::Timeout(format!(
                "provider '{}' {what} within {} s (gateway.upstream_timeout_secs)",
                route.provider,
                timeout.as_secs()
            )),
        }
    }
}

async fn handle(gw: Arc<Gateway>, ep: Endpoint, headers: HeaderMap, body: BodyResult) -> Response {
    gw.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let created_at = Utc::now();
    let body = match body {
        Ok(b) => b,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return GatewayError::TooLarge(format!(
                "the request body is larger than gateway.max_request_bytes ({} bytes)",
                gw.cfg.max_request_bytes
            ))
            .into_response_for(ep.anthropic());
        }
        Err(rej) => {
            return GatewayError::BadRequest(format!(
                "could not read the request body: {}",
                rej.body_text()
            ))
            .into_response_for(ep.anthropic());
        }
    };
    match forward(gw.clone(), ep, &headers, body, started, created_at).await {
        Ok(r) => r,
        Err(e) => e.into_response_for(ep.anthropic()),
    }
}

/// The upstream request for `route` with `body`.
pub(crate) fn build_request(
    gw: &Gateway,
    route: &Route,
    headers: &HeaderMap,
    key: &str,
    body: Bytes,
    extra: &HeaderMap,
) -> reqwest::RequestBuilder {
    let listed = connection_listed(headers);
    let mut out = HeaderMap::with_capacity(headers.len() + 3);
    for (name, value) in headers {
        let n = name.as_str();
        if forwardable(n) && !listed.iter().any(|l| l == n) {
            out.append(name.clone(), value.clone());
        }
    }
    let auth = |v: String| {
        HeaderValue::from_str(&v).ok().map(|mut v| {
            v.set_sensitive(true);
            v
        })
    };
    match route.config.kind {
        ProviderKind::Openai => {
            if let Some(v) = auth(format!("Bearer {key}")) {
                out.insert(axum::http::header::AUTHORIZATION, v);
            }
        }
        ProviderKind::Azure => {
            if let Some(v) = auth(key.to_owned()) {
                out.insert(HeaderName::from_static("api-key"), v);
            }
        }
        ProviderKind::Anthropic => {
            if let Some(v) = auth(key.to_owned()) {
                out.insert(HeaderName::from_static("x-api-key"), v);
            }
            if !out.contains_key("anthropic-version") {
                out.insert(
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static("2023-06-01"),
                );
            }
        }
    }
    // A `Helicone-Fallbacks` entry's own headers (its key is already in `key`).
    for (name, value) in extra {
        if forwardable(name.as_str()) {
            out.insert(name.clone(), value.clone());
        }
    }
    out.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    gw.client.post(&route.url).headers(out).body(body)
}

pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    route: &Route,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<reqwest::Response, SendError> {
    match tokio::time::timeout_at(deadline, req.send()).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) if e.is_connect() => Err(SendError {
            status: 502,
            error_type: "upstream_unreachable",
            err: GatewayError::Upstream(format!(
                "cannot reach provider '{}' at {}: {}; check providers.{}.base_url",
                route.provider,
                route.url,
                error_chain(&e),
                route.provider
            )),
        }),
        Ok(Err(e)) => Err(SendError::broken(route, "broke off the connection", &e)),
        Err(_) => Err(SendError::timeout(route, "did not answer", timeout)),
    }
}

pub(crate) async fn read_all(
    resp: reqwest::Response,
    route: &Route,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Bytes, SendError> {
    match tokio::time::timeout_at(deadline, resp.bytes()).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(SendError::broken(route, "broke off its answer", &e)),
        Err(_) => Err(SendError::timeout(
            route,
            "did not finish its answer",
            timeout,
        )),
    }
}

/// The status and headers of a provider's answer: captured on the record, and filtered into
/// what the client gets (plus `Helicone-Id`/`Loupe-Id`).
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) is_sse: bool,
}

impl Head {
    pub(crate) fn of(resp: &reqwest::Response, call: &mut Call) -> Head {
        let status = resp.status();
        call.responded = true;
        call.record.status = i32::from(status.as_u16());
        call.record.upstream_headers.clear();
        let listed = connection_listed(resp.headers());
        let mut headers = HeaderMap::with_capacity(resp.headers().len() + 2);
        for (name, value) in resp.headers() {
            let n = name.as_str();
            if keep_upstream_header(n)
                && let Ok(v) = value.to_str()
            {
                call.record
                    .upstream_headers
                    .insert(n.to_owned(), v.to_owned());
            }
            if returnable(n) && !listed.iter().any(|l| l == n) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&call.record.request_id.to_string()) {
            headers.insert(HeaderName::from_static("helicone-id"), v.clone());
            headers.insert(HeaderName::from_static("loupe-id"), v);
        }
        let is_sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        Head {
            status,
            headers,
            is_sse,
        }
    }
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

pub(crate) fn insert_headers(out: &mut HeaderMap, extra: &[(HeaderName, HeaderValue)]) {
    for (n, v) in extra {
        out.insert(n.clone(), v.clone());
    }
}

async fn forward(
    gw: Arc<Gateway>,
    ep: Endpoint,
    headers: &HeaderMap,
    body: Bytes,
    started: Instant,
    created_at: DateTime<Utc>,
) -> Result<Response, GatewayError> {
    let (org, passthrough) = authenticate(&gw, headers)?;
    let mut json: Value = serde_json::from_slice(&body).map_err(|e| {
        GatewayError::BadRequest(format!(
            "the request body must be a JSON object ({e}); see the provider's API reference for {}",
            ep.suffix()
        ))
    })?;
    if !json.is_object() {
        return Err(GatewayError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    let model = json
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            GatewayError::BadRequest(
                "'model' is required: a string such as \"gpt-4o-mini\" or \"groq/llama-3.3-70b-versatile\"".into(),
            )
        })?
        .to_owned();
    let meta = Meta::from_headers(headers, Some(&json));
    let path = format!("/v1{}", ep.suffix());
    let candidates = crate::fallback::plan(headers, &gw.cfg, &model)?;
    let retry = crate::retry::RetryPolicy::resolve(headers, &gw.cfg, &model)?;
    let cache = crate::cache::settings(headers, &gw.cfg, &model)?;
    let caller_key = match &passthrough {
        Some(CallerKey::Wins(k) | CallerKey::Fallback(k)) => Some(k.clone()),
        None => None,
    };
    let mut secrets = secrets_of(headers, "");

    // Rate limits first: a refused call costs nothing and reaches nobody.
    let admission = crate::ratelimit::admit(
        gw.stores.rate_limits.as_ref(),
        &gw.cfg.rate_limit,
        headers,
        &crate::ratelimit::Who {
            org: &org,
            user_id: meta.user_id.as_deref(),
            properties: &meta.properties,
            key_sha256: gw
                .cfg
                .rate_limit
                .policies
                .iter()
                .any(|p| !p.key_sha256.is_empty())
                .then(|| loupe_key_sha256(headers))
                .flatten(),
        },
    )
    .await;
    let admission = match admission {
        Ok(a) => a,
        Err(refusal) => {
            if matches!(refusal, crate::ratelimit::Refusal::Limited { .. }) {
                gw.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            return refusal.into_response(ep.anthropic());
        }
    };

    // The cache.
    let mut cache_save: Option<CacheSave> = None;
    if let Some(c) = &cache {
        let keys = crate::cache::keys(&org, &path, &json, c, headers, caller_key.as_deref());
        let slot = if c.read {
            match crate::cache::lookup(gw.stores.cache.as_ref(), &keys).await {
                crate::cache::Lookup::Hit { answer, idx } => {
                    gw.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(serve_hit(
                        &gw, answer, idx, meta, org, path, &body, started, created_at, secrets,
                        &admission,
                    ));
                }
                crate::cache::Lookup::Miss { slot } => {
                    gw.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
                    slot
                }
            }
        } else {
            0
        };
        if c.write
            && let Some(key) = keys.get(slot)
        {
            cache_save = Some(CacheSave {
                key: *key,
                ttl: c.ttl,
                max_bytes: gw.cfg.cache.max_entry_bytes,
            });
        }
    }

    let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
    let mut record = RequestRecord::new(meta.request_id, org, created_at);
    record.source = Source::Gateway;
    record.path = path.clone();
    record.stream = stream;
    record.cache_hit = false;
    record.user_id = meta.user_id;
    record.session_id = meta.session_id;
    record.session_path = meta.session_path;
    record.session_name = meta.session_name;
    record.properties = meta.properties;
    if !meta.omit_request && body.len() <= gw.cfg.max_stored_body_bytes {
        record.request_body = Some(String::from_utf8_lossy(&body).into_owned());
    }
    for c in &candidates {
        if let Some(k) = entry_key(&c.headers) {
            secrets.push(k);
        }
    }
    let mut call = Call {
        gw: gw.clone(),
        record,
        started,
        omit_response: meta.omit_response,
        secrets,
        responded: false,
        sent: false,
        cents: admission.cents,
    };

    // Attempts: each candidate in turn, each retried per the policy.
    let mut attempt_no: i32 = 0;
    let mut outcome: Option<(Result<Answer, SendError>, usize, Prepared)> = None;
    // The latest failure that moved on to a fallback: the answer if no later one can be sent.
    let mut last_failure: Option<(Result<Answer, SendError>, usize, Prepared, i32)> = None;
    let mut prepare_error: Option<GatewayError> = None;
    let mut sent_any = false;
    'candidates: for (idx, cand) in candidates.iter().enumerate() {
        let more = idx + 1 < candidates.len();
        // The last candidate takes the parsed body; earlier ones work on a copy.
        let body_json = if more {
            json.clone()
        } else {
            std::mem::take(&mut json)
        };
        let prepared = match prepare(
            &gw,
            ep,
            cand,
            body_json,
            &body,
            &model,
            meta.target_url.as_deref(),
            passthrough.clone(),
            &path,
        ) {
            Ok(p) => p,
            Err(e) => {
                // A fallback that cannot be sent (no key, unknown provider…) is skipped.
                attempt_no += 1;
                call.record.attempts.push(loupe_model::Attempt {
                    attempt: attempt_no,
                    fallback_index: idx as i32,
                    provider: String::new(),
                    model: cand.model.clone().unwrap_or_else(|| model.clone()),
                    status: i32::from(e.status().as_u16()),
                    error_type: Some("not_sent".into()),
                    error: Some(e.to_string()),
                    latency_ms: 0,
                    backoff_ms: 0,
                });
                prepare_error = Some(e);
                continue;
            }
        };
        if !call.secrets.iter().any(|s| s == &prepared.key) && prepared.key.len() >= 8 {
            call.secrets.push(prepared.key.clone());
        }
        call.record.provider = prepared.route.provider.clone();
        call.record.model = meta
            .model_override
            .clone()
            .unwrap_or_else(|| prepared.route.model.clone());
        let mut retries_done = 0u32;
        loop {
            attempt_no += 1;
            let t0 = Instant::now();
            sent_any = true;
            let res = try_once(&gw, &prepared, headers, &mut call).await;
            let (status, upstream_head) = match &res {
                Ok(a) if a.head.status.is_success() => {
                    outcome = Some((res, idx, prepared));
                    break 'candidates;
                }
                Ok(a) => (a.head.status.as_u16(), Some(&a.head.headers)),
                Err(e) => (u16::try_from(e.status).unwrap_or(502), None),
            };
            let falls = more
                && match &res {
                    Ok(_) => cand.falls_back_on(status),
                    Err(_) => true,
                };
            let failure = match upstream_head {
                Some(h) => crate::retry::Failure::Status(status, h),
                None => crate::retry::Failure::NoAnswer,
            };
            let delay = match retry.next_step(retries_done, failure, falls) {
                crate::retry::Step::Retry(d) => Some(d),
                crate::retry::Step::Fallback => None,
                crate::retry::Step::Answer => {
                    outcome = Some((res, idx, prepared));
                    break 'candidates;
                }
            };
            let (error_type, error) = match &res {
                Ok(a) => {
                    let parsed = a
                        .body
                        .as_deref()
                        .and_then(|b| serde_json::from_slice::<Value>(b).ok());
                    let (t, m) = parsed.as_ref().map(error_info).unwrap_or((None, None));
                    (t.or_else(|| Some(format!("http_{status}"))), m)
                }
                Err(e) => (Some(e.error_type.to_owned()), Some(e.err.to_string())),
            };
            call.record.attempts.push(loupe_model::Attempt {
                attempt: attempt_no,
                fallback_index: idx as i32,
                provider: prepared.route.provider.clone(),
                model: prepared.route.model.clone(),
                status: i32::from(status),
                error_type,
                error,
                latency_ms: ms_between(t0, Instant::now()),
                backoff_ms: delay.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            });
            match delay {
                Some(d) => {
                    drop(res);
                    gw.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    retries_done += 1;
                    tokio::time::sleep(d).await;
                }
                None => {
                    gw.metrics.fallbacks.fetch_add(1, Ordering::Relaxed);
                    last_failure = Some((res, idx, prepared, attempt_no));
                    continue 'candidates;
                }
            }
        }
    }
    let mut answered = attempt_no;
    let outcome = outcome.or_else(|| {
        // Fallbacks after the last failure could not be sent: that failure is the answer.
        let (res, idx, prepared, n) = last_failure.take()?;
        call.record.attempts.retain(|a| a.attempt != n);
        answered = n;
        Some((res, idx, prepared))
    });
    let Some((res, idx, prepared)) = outcome else {
        // No candidate could be sent at all.
        let e = prepare_error.unwrap_or_else(|| GatewayError::Config("no candidate".into()));
        if !sent_any {
            call.discard();
            return Err(e);
        }
        return Err(call.fail(SendError {
            status: i32::from(e.status().as_u16()),
            error_type: "not_sent",
            err: e,
        }));
    };
    call.record.attempt = Some(answered);
    if candidates.len() > 1 {
        call.record.fallback_index = Some(idx as i32);
    }
    let answer = res.map_err(|e| call.fail(e))?;
    let route = &prepared.route;
    let mut head = answer.head;
    let mut extra: Vec<(HeaderName, HeaderValue)> = admission.headers;
    if candidates.len() > 1 {
        extra.push((
            HeaderName::from_static("helicone-fallback-index"),
            HeaderValue::from(idx as u64),
        ));
    }
    if cache.as_ref().is_some_and(|c| c.read) {
        extra.push((
            HeaderName::from_static("helicone-cache"),
            HeaderValue::from_static("MISS"),
        ));
    }
    insert_headers(&mut head.headers, &extra);

    if head.is_sse
        && head.status.is_success()
        && let Some(resp) = answer.live
    {
        let state = StreamState {
            translator: route
                .translate
                .then(|| crate::anthropic::StreamTranslator::new(prepared.client_wants_usage)),
            splitter: EventSplitter::default(),
            usage_events: String::new(),
            body_copy: (!call.omit_response).then(BytesMut::new),
            max_body: gw.cfg.max_stored_body_bytes,
            strip_usage_chunk: answer.strip_usage_chunk,
            response_model: None,
            partial_since: None,
            first_data: None,
            content_probes_left: MAX_CONTENT_PROBES,
            finished: false,
            error: None,
            cache: cache_save.map(|save| StreamCache {
                save,
                status: head.status,
                headers: head.headers.clone(),
                copy: Some(BytesMut::new()),
            }),
            call: Some(call),
        };
        let idle = Duration::from_secs(gw.cfg.stream_idle_timeout_secs.max(1));
        let s = relay(resp.bytes_stream(), state, idle);
        let mut r = Response::new(Body::from_stream(s));
        *r.status_mut() = head.status;
        *r.headers_mut() = head.headers;
        return Ok(r);
    }

    let bytes = answer.body.unwrap_or_default();
    let status = head.status;
    let mut out_headers = head.headers;
    if !status.is_success() {
        gw.metrics.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let usage = parsed
        .as_ref()
        .and_then(Usage::from_response_json)
        .map(|(u, _)| u);
    if let Some(v) = &parsed {
        call.record.response_model = v.get("model").and_then(Value::as_str).map(str::to_owned);
        if !status.is_success() {
            let (t, m) = error_info(v);
            call.record.error_type = t;
            call.record.error_message = m;
        }
    }
    if !status.is_success() && call.record.error_type.is_none() {
        call.record.error_type = Some(format!("http_{}", status.as_u16()));
    }
    // An Anthropic answer to an OpenAI-shaped call goes back in OpenAI's shape.
    let bytes = match (&parsed, route.translate) {
        (Some(v), true) => {
            let out = if status.is_success() {
                crate::anthropic::response_to_chat(v)
            } else {
                crate::anthropic::error_to_openai(v)
            };
            out_headers.insert("content-type", HeaderValue::from_static("application/json"));
            match serde_json::to_vec(&out) {
                Ok(b) => Bytes::from(b),
                Err(_) => bytes,
            }
        }
        _ => bytes,
    };
    if !call.omit_response && bytes.len() <= gw.cfg.max_stored_body_bytes {
        call.record.response_body = Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    if let Some(save) = &cache_save {
        save.store(
            &gw,
            status,
            &out_headers,
            bytes.clone(),
            false,
            &call.record,
            call.record.response_model.clone(),
            usage.as_ref(),
        );
    }
    call.finish(usage, None);
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    *r.headers_mut() = out_headers;
    Ok(r)
}

/// Hex SHA-256 of the Loupe key a call carries (for per-key rate-limit policies).
fn loupe_key_sha256(h: &HeaderMap) -> Option<String> {
    use sha2::Digest;
    let k = header_str(h, "helicone-auth")
        .or_else(|| header_str(h, "loupe-auth"))
        .or_else(|| header_str(h, "authorization"))
        .map(bearer)
        .or_else(|| header_str(h, "x-api-key").map(str::trim))?;
    Some(hex::encode(sha2::Sha256::digest(k.as_bytes())))
}

/// The client's response body: the provider's SSE events as they complete, through
/// [`StreamState`]. A provider that breaks off (or goes quiet past `idle`) breaks the client's
/// stream too, so the client sees an error rather than a silently short answer.
fn relay<S>(
    upstream: S,
    state: StreamState,
    idle: Duration,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    S: futures::Stream<Item = Result<Bytes, reqwest::Error>> + Send + Unpin + 'static,
{
    futures::stream::unfold(
        (upstream, state, false),
        move |(mut up, mut st, done)| async move {
            if done {
                return None;
            }
            loop {
                match tokio::time::timeout(idle, up.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        let out = st.on_chunk(&chunk);
                        if !out.is_empty() {
                            return Some((Ok(out), (up, st, false)));
                        }
                    }
                    Ok(Some(Err(e))) => {
                        let msg = format!("the provider's stream broke off: {}", error_chain(&e));
                        st.end(Some(("upstream_stream_error", msg.clone())));
                        return Some((Err(std::io::Error::other(msg)), (up, st, true)));
                    }
                    Ok(None) => {
                        let rest = st.on_end();
                        st.end(None);
                        return if rest.is_empty() {
                            None
                        } else {
                            Some((Ok(rest), (up, st, true)))
                        };
                    }
                    Err(_) => {
                        let msg = format!(
                            "the provider sent nothing for {} s (gateway.stream_idle_timeout_secs)",
                            idle.as_secs()
                        );
                        st.end(Some(("upstream_stream_timeout", msg.clone())));
                        return Some((Err(std::io::Error::other(msg)), (up, st, true)));
                    }
                }
            }
        },
    )
}

/// `error.type`/`error.code` and `error.message` of an OpenAI- or Anthropic-shaped error body.
fn error_info(v: &Value) -> (Option<String>, Option<String>) {
    let e = v.get("error");
    let s = |x: Option<&Value>| x.and_then(Value::as_str).map(str::to_owned);
    (
        s(e.and_then(|e| e.get("type"))).or_else(|| s(e.and_then(|e| e.get("code")))),
        s(e.and_then(|e| e.get("message"))),
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Call {
    /// Drops the call unrecorded (nothing was forwarded).
    fn discard(&mut self) {
        self.sent = true;
    }

    /// Records a call that failed in the gateway and hands back the error to answer with.
    fn fail(&mut self, e: SendError) -> GatewayError {
        self.gw
            .metrics
            .upstream_errors
            .fetch_add(1, Ordering::Relaxed);
        self.record.status = e.status;
        self.record.error_type = Some(e.error_type.to_owned());
        self.record.error_message = Some(e.err.to_string());
        self.finish(None, None);
        e.err
    }

    /// Fills in timing, tokens and cost, and queues the record (once).
    fn finish(&mut self, usage: Option<Usage>, ttft_ms: Option<i64>) {
        if self.sent {
            return;
        }
        self.sent = true;
        let r = &mut self.record;
        let elapsed = self.started.elapsed();
        r.latency_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
        r.completed_at = r.created_at
            + chrono::TimeDelta::from_std(elapsed).unwrap_or(chrono::TimeDelta::zero());
        r.ttft_ms = ttft_ms.map(|t| t.clamp(0, r.latency_ms));
        // Without usage a successful call cannot be priced: cost stays unknown (never $0).
        let known_usage = usage.is_some() || r.status >= 400;
        let u = usage.unwrap_or_default();
        r.prompt_tokens = u.prompt_tokens;
        r.completion_tokens = u.completion_tokens;
        r.cache_read_tokens = u.cache_read_tokens;
        r.cache_write_tokens = u.cache_write_tokens.saturating_add(u.cache_write_1h_tokens);
        r.reasoning_tokens = u.reasoning_tokens;
        r.total_tokens = u.total_tokens;
        if known_usage {
            let cost = self.gw.prices.cost(&r.provider, &r.model, &u);
            r.price_known = cost.usd.is_some();
            r.cost_usd = cost.usd;
        }
        if !self.cents.is_empty() {
            crate::ratelimit::charge_cents(&self.gw.stores.rate_limits, &self.cents, r.cost_usd);
        }
        let created_at = r.created_at;
        let record = std::mem::replace(
            &mut self.record,
            RequestRecord::new(Uuid::nil(), String::new(), created_at),
        );
        self.gw
            .recorder
            .record(record, std::mem::take(&mut self.secrets));
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.sent {
            return;
        }
        // The client went away while Loupe waited for the provider (the request future was
        // dropped, which also dropped the upstream request).
        self.gw
            .metrics
            .client_disconnects
            .fetch_add(1, Ordering::Relaxed);
        if !self.responded {
            self.record.status = STATUS_CLIENT_CLOSED;
        }
        self.record.error_type = Some("client_disconnected".into());
        self.record.error_message = Some(
            "the client closed the connection before the answer was complete; the upstream call was cancelled".into(),
        );
        let ttft = self.record.ttft_ms;
        self.finish(None, ttft);
    }
}

/// Status recorded for a call whose client left before the provider answered (nginx's 499).
const STATUS_CLIENT_CLOSED: i32 = 499;

/// Per-stream state; its `Drop` records the call, finished or cut off.
struct StreamState {
    /// Set when an Anthropic stream is answered to an OpenAI client.
    translator: Option<crate::anthropic::StreamTranslator>,
    splitter: EventSplitter,
    /// `data:` payloads that carry usage, as SSE text for [`Usage::from_sse`].
    usage_events: String,
    /// What the client received (`None` when omitted or past `max_body`).
    body_copy: Option<BytesMut>,
    max_body: usize,
    strip_usage_chunk: bool,
    response_model: Option<String>,
    /// When the first byte of the event still being assembled arrived.
    partial_since: Option<Instant>,
    /// When the first event with a `data:` field began (TTFT if no content event is seen).
    first_data: Option<Instant>,
    /// Events still to inspect for content (TTFT); bounds JSON parsing of event bodies.
    content_probes_left: u32,
    finished: bool,
    /// `(error_type, message)` when the provider's stream failed.
    error: Option<(&'static str, String)>,
    /// Where the stream is saved in the cache if it ends cleanly.
    cache: Option<StreamCache>,
    call: Option<Call>,
}

/// A stream on its way into the cache: what the client received, up to the entry limit.
struct StreamCache {
    save: CacheSave,
    status: StatusCode,
    headers: HeaderMap,
    /// `None` once past `save.max_bytes`.
    copy: Option<BytesMut>,
}

/// Bounds what a stream keeps for usage parsing.
const MAX_USAGE_TEXT: usize = 1 << 20;
/// Events inspected for the first content event before TTFT falls back to the first event.
const MAX_CONTENT_PROBES: u32 = 256;

/// Whether an event's data carries generated output (text, tool-call, refusal or reasoning
/// deltas): OpenAI chat/completions chunks, Anthropic `content_block_delta`, Responses
/// `*.delta` events, Gemini candidates.
pub(crate) fn is_content_event(data: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return false;
    };
    if let Some(t) = v.get("type").and_then(Value::as_str) {
        return t == "content_block_delta" || t.ends_with(".delta");
    }
    if let Some(choices) = v.get("choices").and_then(Value::as_array) {
        return choices.iter().any(|c| {
            c.get("text")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty())
                || c.get("delta").and_then(Value::as_object).is_some_and(|d| {
                    d.iter().any(|(k, x)| {
                        k != "role"
                            && match x {
                                Value::Null => false,
                                Value::String(s) => !s.is_empty(),
                                Value::Array(a) => !a.is_empty(),
                                Value::Object(o) => !o.is_empty(),
                                _ => true,
                            }
                    })
                })
        });
    }
    v.get("candidates").is_some()
}

impl StreamState {
    fn on_chunk(&mut self, chunk: &[u8]) -> Bytes {
        let now = Instant::now();
        let first_start = self.partial_since.unwrap_or(now);
        let events = self.splitter.push(chunk);
        self.partial_since =
            self.splitter
                .pending()
                .then_some(if events.is_empty() { first_start } else { now });
        self.forward(events, first_start, now)
    }

    /// The upstream stream ended: cleanly (`None`) or with `(error_type, message)`.
    fn end(&mut self, error: Option<(&'static str, String)>) {
        self.error = error;
        self.finished = true;
    }

    fn on_end(&mut self) -> Bytes {
        let now = Instant::now();
        let first_start = self.partial_since.take().unwrap_or(now);
        let rest: Vec<Bytes> = self.splitter.finish().into_iter().collect();
        let out = self.forward(rest, first_start, now);
        self.save_to_cache();
        out
    }

    /// The stream ended cleanly: cache what the client received (before its last bytes go out,
    /// so a client that has read the whole stream finds it cached).
    fn save_to_cache(&mut self) {
        let (Some(c), Some(call)) = (self.cache.take(), self.call.as_ref()) else {
            return;
        };
        let Some(copy) = c.copy else {
            return;
        };
        let usage = Usage::from_sse(&self.usage_events).map(|(u, _)| u);
        c.save.store(
            &call.gw,
            c.status,
            &c.headers,
            copy.freeze(),
            true,
            &call.record,
            self.response_model.clone(),
            usage.as_ref(),
        );
    }

    /// Notes when output began: the first byte of the first event carrying content.
    fn observe_timing(&mut self, data: &str, began: Instant) {
        let Some(c) = self.call.as_mut() else {
            return;
        };
        if c.record.ttft_ms.is_some() || self.content_probes_left == 0 {
            return;
        }
        self.first_data.get_or_insert(began);
        self.content_probes_left -= 1;
        if is_content_event(data) {
            c.record.ttft_ms = Some(ms_between(c.started, began));
        }
    }

    fn forward(&mut self, events: Vec<Bytes>, first_start: Instant, now: Instant) -> Bytes {
        let mut out = BytesMut::new();
        for (i, ev) in events.into_iter().enumerate() {
            let began = if i == 0 { first_start } else { now };
            let mut drop_event = false;
            let data = data_of(&ev);
            if let Some(data) = &data {
                self.observe_timing(data, began);
                // OpenAI marks every chunk `"usage":null` once usage was asked for.
                let has_usage = data.contains("\"usage\"") && !data.contains("\"usage\":null");
                if has_usage || self.response_model.is_none() {
                    if let Ok(v) = serde_json::from_str::<Value>(data) {
                        if self.response_model.is_none() {
                            self.response_model = v
                                .get("model")
                                .or_else(|| v.pointer("/message/model"))
                                .or_else(|| v.pointer("/response/model"))
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                        }
                        if self.strip_usage_chunk
                            && v.get("choices")
                                .and_then(Value::as_array)
                                .is_some_and(Vec::is_empty)
                            && v.get("usage").is_some_and(|u| !u.is_null())
                        {
                            drop_event = true;
                        }
                    }
                    if has_usage && self.usage_events.len() + data.len() < MAX_USAGE_TEXT {
                        self.usage_events.push_str("data: ");
                        self.usage_events.push_str(data);
                        self.usage_events.push_str("\n\n");
                    }
                }
            }
            if drop_event {
                continue;
            }
            let ev = match self.translator.as_mut() {
                Some(t) => match &data {
                    Some(d) => Bytes::from(t.event(d)),
                    None => continue,
                },
                None => ev,
            };
            if ev.is_empty() {
                continue;
            }
            // Asking for usage makes OpenAI add `"usage":null` to every chunk; take it out again
            // so a client that did not ask sees the bytes it would have seen. (Inside a JSON
            // string the quotes would be escaped, so this text only ever matches the field.)
            let ev = if self.strip_usage_chunk {
                strip_null_usage(ev)
            } else {
                ev
            };
            if let Some(c) = self.cache.as_mut()
                && let Some(copy) = c.copy.as_mut()
            {
                if copy.len() + ev.len() <= c.save.max_bytes {
                    copy.extend_from_slice(&ev);
                } else {
                    c.copy = None;
                }
            }
            if let Some(copy) = self.body_copy.as_mut() {
                if copy.len() + ev.len() <= self.max_body {
                    copy.extend_from_slice(&ev);
                } else {
                    self.body_copy = None;
                }
            }
            out.extend_from_slice(&ev);
        }
        out.freeze()
    }
}

fn ms_between(from: Instant, to: Instant) -> i64 {
    i64::try_from(to.saturating_duration_since(from).as_millis()).unwrap_or(i64::MAX)
}

const NULL_USAGE: &[u8] = b",\"usage\":null";

fn strip_null_usage(ev: Bytes) -> Bytes {
    let Some(first) = ev.windows(NULL_USAGE.len()).position(|w| w == NULL_USAGE) else {
        return ev;
    };
    let mut out = BytesMut::with_capacity(ev.len());
    let mut rest = &ev[..];
    let mut at = Some(first);
    while let Some(i) = at {
        out.extend_from_slice(&rest[..i]);
        rest = &rest[i + NULL_USAGE.len()..];
        at = rest.windows(NULL_USAGE.len()).position(|w| w == NULL_USAGE);
    }
    out.extend_from_slice(rest);
    out.freeze()
}

impl Drop for StreamState {
    fn drop(&mut self) {
        let Some(mut call) = self.call.take() else {
            return;
        };
        let usage = Usage::from_sse(&self.usage_events).map(|(u, _)| u);
        call.record.response_model = self.response_model.take();
        if let Some(b) = self.body_copy.take() {
            call.record.response_body = Some(String::from_utf8_lossy(&b).into_owned());
        }
        if call.record.ttft_ms.is_none()
            && let Some(t) = self.first_data
        {
            call.record.ttft_ms = Some(ms_between(call.started, t));
        }
        if let Some((ty, msg)) = self.error.take() {
            call.gw
                .metrics
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            call.record.error_type = Some(ty.into());
            call.record.error_message = Some(msg);
        } else if !self.finished {
            call.gw
                .metrics
                .client_disconnects
                .fetch_add(1, Ordering::Relaxed);
            call.record.error_type = Some("client_disconnected".into());
            call.record.error_message =
                Some("the client closed the connection before the stream ended; the upstream call was cancelled".into());
        }
        let ttft = call.record.ttft_ms;
        call.finish(usage, ttft);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_events_start_ttft() {
        for (data, content) in [
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}"#,
                false,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"content":"Jup"}}]}"#,
                true,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]}"#,
                true,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#,
                true,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
                false,
            ),
            (r#"{"choices":[],"usage":{"prompt_tokens":1}}"#, false),
            (r#"{"choices":[{"text":"\n\nJ","index":0}]}"#, true),
            (r#"{"type":"message_start","message":{"usage":{}}}"#, false),
            (r#"{"type":"ping"}"#, false),
            (
                r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"J"}}"#,
                true,
            ),
            (r#"{"type":"response.output_text.delta","delta":"J"}"#, true),
            (r#"{"type":"response.created","response":{}}"#, false),
            ("[DONE]", false),
        ] {
            assert_eq!(is_content_event(data), content, "{data}");
        }
    }

    #[test]
    fn models_resolve_by_map_then_prefix_then_rule() {
        let providers = crate::ProvidersConfig::default();
        let mut map = std::collections::BTreeMap::new();
        map.insert("fast".to_owned(), "groq/llama-3.3-70b".to_owned());
        map.insert("alias".to_owned(), "claude-haiku-4-5".to_owned());
        let r = |m: &str, messages: bool| {
            let (p, m) = resolve_model(&map, &providers, messages, m);
            format!("{p} {m}")
        };
        assert_eq!(r("fast", false), "groq llama-3.3-70b");
        assert_eq!(r("alias", false), "anthropic claude-haiku-4-5");
        assert_eq!(
            r("anthropic/claude-3-5-sonnet-20241022", false),
            "anthropic claude-3-5-sonnet-20241022"
        );
        assert_eq!(
            r("together/meta-llama/Llama-3-70b", false),
            "together meta-llama/Llama-3-70b"
        );
        assert_eq!(
            r("meta-llama/Llama-3-70b", false),
            "openai meta-llama/Llama-3-70b"
        );
        assert_eq!(r("claude-sonnet-4-5", false), "anthropic claude-sonnet-4-5");
        assert_eq!(r("gemini-2.5-flash", false), "gemini gemini-2.5-flash");
        assert_eq!(r("gpt-4o", false), "openai gpt-4o");
        assert_eq!(r("my-finetune", true), "anthropic my-finetune");
        assert_eq!(r("openai/", false), "openai openai/");
    }

    #[test]
    fn loupe_credential_and_hop_by_hop_headers_stay_home() {
        for h in [
            "helicone-auth",
            "loupe-auth",
            "helicone-property-x",
            "loupe-session-id",
            "authorization",
            "x-api-key",
            "api-key",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "te",
            "upgrade",
            "host",
            "content-length",
            "content-type",
            "accept-encoding",
            "cookie",
            "proxy-authorization",
        ] {
            assert!(!forwardable(h), "{h}");
        }
        for h in [
            "openai-organization",
            "anthropic-version",
            "anthropic-beta",
            "user-agent",
            "x-stainless-os",
            "accept",
        ] {
            assert!(forwardable(h), "{h}");
        }
        let mut m = HeaderMap::new();
        m.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Trace-Hop"),
        );
        assert_eq!(connection_listed(&m), ["keep-alive", "x-trace-hop"]);
    }

    #[test]
    fn null_usage_fields_are_removed_and_nothing_else() {
        let ev = Bytes::from_static(
            b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\",\\\"usage\\\":null\"}}],\"usage\":null}\n\n",
        );
        let out = strip_null_usage(ev);
        assert_eq!(
            &out[..],
            &b"data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\",\\\"usage\\\":null\"}}]}\n\n"[..]
        );
        let plain = Bytes::from_static(b"data: [DONE]\n\n");
        assert_eq!(strip_null_usage(plain.clone()), plain);
    }
}
