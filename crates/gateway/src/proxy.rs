//! The proxy: authenticate, route, forward, stream back, record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use loupe_model::{RequestRecord, Source, Usage, keep_upstream_header};
use serde_json::Value;
use uuid::Uuid;

use crate::config::{ProviderConfig, ProviderKind};
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
    fn suffix(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Messages => "/messages",
        }
    }
    fn anthropic(self) -> bool {
        self == Endpoint::Messages
    }
}

pub(crate) async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    handle(gw, Endpoint::Chat, h, b).await
}
pub(crate) async fn completions(
    State(gw): State<Arc<Gateway>>,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    handle(gw, Endpoint::Completions, h, b).await
}
pub(crate) async fn embeddings(State(gw): State<Arc<Gateway>>, h: HeaderMap, b: Bytes) -> Response {
    handle(gw, Endpoint::Embeddings, h, b).await
}
pub(crate) async fn responses(State(gw): State<Arc<Gateway>>, h: HeaderMap, b: Bytes) -> Response {
    handle(gw, Endpoint::Responses, h, b).await
}
pub(crate) async fn messages(State(gw): State<Arc<Gateway>>, h: HeaderMap, b: Bytes) -> Response {
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
struct Meta {
    request_id: Uuid,
    user_id: Option<String>,
    session_id: Option<String>,
    session_path: Option<String>,
    session_name: Option<String>,
    properties: std::collections::BTreeMap<String, String>,
    omit_request: bool,
    omit_response: bool,
    model_override: Option<String>,
    target_url: Option<String>,
}

/// `Helicone-<name>` or `Loupe-<name>` (name in lower case).
fn meta_header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
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

fn bearer(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .unwrap_or(v)
        .trim()
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
}

/// A provider key the caller sent.
enum CallerKey {
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
            "missing credentials: send 'Authorization: Bearer <loupe key>'".into(),
        )),
    }
}

fn upstream_key(
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
struct Route {
    provider: String,
    config: ProviderConfig,
    /// The model name sent upstream (prefix stripped, map applied).
    model: String,
    url: String,
    /// OpenAI chat/completions sent to an Anthropic model: translate both ways.
    translate: bool,
}

fn route(
    gw: &Gateway,
    ep: Endpoint,
    model: &str,
    meta: &Meta,
    path: &str,
) -> Result<Route, GatewayError> {
    if let Some(target) = &meta.target_url {
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
        return Ok(Route {
            provider: provider_of_model(model).to_owned(),
            config: ProviderConfig {
                kind,
                base_url: target.trim_end_matches('/').to_owned(),
                ..ProviderConfig::default()
            },
            model: model.to_owned(),
            url: format!("{}{path}", target.trim_end_matches('/')),
            translate: false,
        });
    }
    let (provider, upstream_model) = match model.split_once('/') {
        Some((p, m)) if gw.providers.0.contains_key(p) => (p.to_owned(), m.to_owned()),
        _ => match gw.cfg.model_map.get(model).and_then(|t| t.split_once('/')) {
            Some((p, m)) => (p.to_owned(), m.to_owned()),
            None if ep.anthropic() => ("anthropic".to_owned(), model.to_owned()),
            None => (provider_of_model(model).to_owned(), model.to_owned()),
        },
    };
    let config = gw.providers.0.get(&provider).cloned().ok_or_else(|| {
        GatewayError::BadRequest(format!(
            "unknown provider '{provider}'; configure it as [providers.{provider}] with kind and base_url"
        ))
    })?;
    if config.base_url.is_empty() {
        return Err(GatewayError::BadRequest(format!(
            "provider '{provider}' has no base_url; set providers.{provider}.base_url"
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
        ProviderKind::Azure => format!(
            "{base}/openai/deployments/{upstream_model}{}?api-version={}",
            ep.suffix(),
            config.api_version
        ),
        _ => format!("{base}{}", ep.suffix()),
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

/// Headers never forwarded upstream: hop-by-hop, credentials (set per provider), Loupe's own.
fn forwardable(name: &str) -> bool {
    !(matches!(
        name,
        "host"
            | "content-length"
            | "connection"
            | "keep-alive"
            | "proxy-authorization"
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
    )
}

struct Call {
    gw: Arc<Gateway>,
    meta: Meta,
    record: RequestRecord,
    started: Instant,
}

async fn handle(gw: Arc<Gateway>, ep: Endpoint, headers: HeaderMap, body: Bytes) -> Response {
    gw.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let created_at = Utc::now();
    match forward(gw.clone(), ep, &headers, body, started, created_at).await {
        Ok(r) => r,
        Err(e) => e.into_response_for(ep.anthropic()),
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
    let route = route(&gw, ep, &model, &meta, &path)?;
    let key = upstream_key(&route.config, &route.provider, passthrough)?;

    let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
    let mut modified = false;
    if route.model != model {
        json["model"] = Value::String(route.model.clone());
        modified = true;
    }
    // Usage of a streamed OpenAI chat call comes in a final chunk only if asked for: ask, and
    // take that chunk out of what the client sees if the client did not ask itself.
    let mut strip_usage_chunk = false;
    if stream
        && matches!(ep, Endpoint::Chat | Endpoint::Completions)
        && route.config.kind != ProviderKind::Anthropic
    {
        let asked = json
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        if !asked {
            match json.get_mut("stream_options") {
                Some(Value::Object(o)) => {
                    o.insert("include_usage".into(), Value::Bool(true));
                }
                _ => {
                    json["stream_options"] = serde_json::json!({"include_usage": true});
                }
            }
            strip_usage_chunk = true;
            modified = true;
        }
    }
    let client_wants_usage = json
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if route.translate {
        json = crate::anthropic::request_to_messages(&json, &route.model)?;
        modified = true;
    }
    let upstream_body = if modified {
        Bytes::from(serde_json::to_vec(&json).map_err(|e| GatewayError::BadRequest(e.to_string()))?)
    } else {
        body.clone()
    };

    let mut record = RequestRecord::new(meta.request_id, org, created_at);
    record.source = Source::Gateway;
    record.provider = route.provider.clone();
    record.model = meta
        .model_override
        .clone()
        .unwrap_or_else(|| route.model.clone());
    record.path = path.clone();
    record.stream = stream;
    record.user_id = meta.user_id.clone();
    record.session_id = meta.session_id.clone();
    record.session_path = meta.session_path.clone();
    record.session_name = meta.session_name.clone();
    record.properties = meta.properties.clone();
    if !meta.omit_request && body.len() <= gw.cfg.max_stored_body_bytes {
        record.request_body = Some(String::from_utf8_lossy(&body).into_owned());
    }
    let mut call = Call {
        gw: gw.clone(),
        meta,
        record,
        started,
    };

    let mut req = gw.client.post(&route.url);
    for (name, value) in headers {
        if forwardable(name.as_str()) {
            req = req.header(name, value);
        }
    }
    req = match route.config.kind {
        ProviderKind::Openai => req.bearer_auth(&key),
        ProviderKind::Azure => req.header("api-key", &key),
        ProviderKind::Anthropic => {
            let r = req.header("x-api-key", &key);
            if headers.contains_key("anthropic-version") {
                r
            } else {
                r.header("anthropic-version", "2023-06-01")
            }
        }
    };
    req = req
        .header("content-type", "application/json")
        .body(upstream_body);
    let timeout = Duration::from_secs(gw.cfg.upstream_timeout_secs.max(1));
    let resp = match tokio::time::timeout(timeout, req.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if e.is_connect() => {
            let err = GatewayError::Upstream(format!(
                "cannot reach provider '{}' at {}: {}",
                route.provider,
                route.url,
                error_chain(&e)
            ));
            return Err(call.fail(502, "upstream_unreachable", err));
        }
        Ok(Err(e)) => {
            let err = GatewayError::Upstream(format!(
                "provider '{}' broke off the connection: {}",
                route.provider,
                error_chain(&e)
            ));
            return Err(call.fail(502, "upstream_broken", err));
        }
        Err(_) => {
            let err = GatewayError::Timeout(format!(
                "provider '{}' did not answer within {} s (gateway.upstream_timeout_secs)",
                route.provider,
                timeout.as_secs()
            ));
            return Err(call.fail(504, "upstream_timeout", err));
        }
    };

    let status = resp.status();
    call.record.status = i32::from(status.as_u16());
    let mut out_headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        let n = name.as_str();
        if keep_upstream_header(n)
            && let Ok(v) = value.to_str()
        {
            call.record
                .upstream_headers
                .insert(n.to_owned(), v.to_owned());
        }
        if returnable(n) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&call.record.request_id.to_string()) {
        out_headers.insert(HeaderName::from_static("helicone-id"), v.clone());
        out_headers.insert(HeaderName::from_static("loupe-id"), v);
    }
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_sse && status.is_success() {
        let state = StreamState {
            translator: route
                .translate
                .then(|| crate::anthropic::StreamTranslator::new(client_wants_usage)),
            splitter: EventSplitter::default(),
            usage_events: String::new(),
            body_copy: (!call.meta.omit_response).then(BytesMut::new),
            strip_usage_chunk,
            response_model: None,
            finished: false,
            error: None,
            call: Some(call),
        };
        let upstream = resp.bytes_stream();
        let s = futures::stream::unfold(
            (upstream, state, false),
            |(mut up, mut st, done)| async move {
                if done {
                    return None;
                }
                loop {
                    match up.next().await {
                        Some(Ok(chunk)) => {
                            let out = st.on_chunk(&chunk);
                            if !out.is_empty() {
                                return Some((Ok::<Bytes, std::io::Error>(out), (up, st, false)));
                            }
                        }
                        Some(Err(e)) => {
                            st.end(Some(error_chain(&e)));
                            return None;
                        }
                        None => {
                            let rest = st.on_end();
                            st.end(None);
                            return if rest.is_empty() {
                                None
                            } else {
                                Some((Ok(rest), (up, st, true)))
                            };
                        }
                    }
                }
            },
        );
        let mut r = Response::new(Body::from_stream(s));
        *r.status_mut() = status;
        *r.headers_mut() = out_headers;
        return Ok(r);
    }

    let bytes = match tokio::time::timeout(timeout, resp.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let err = GatewayError::Upstream(format!(
                "provider '{}' broke off its answer: {}",
                route.provider,
                error_chain(&e)
            ));
            return Err(call.fail(502, "upstream_broken", err));
        }
        Err(_) => {
            let err = GatewayError::Timeout(format!(
                "provider '{}' did not finish its answer within {} s",
                route.provider,
                timeout.as_secs()
            ));
            return Err(call.fail(504, "upstream_timeout", err));
        }
    };
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
    // An Anthropic answer to an OpenAI-shaped call goes back in OpenAI's shape.
    let bytes = match (&parsed, route.translate) {
        (Some(v), true) => {
            let out = if status.is_success() {
                crate::anthropic::response_to_chat(v)
            } else {
                crate::anthropic::error_to_openai(v)
            };
            out_headers.insert("content-type", HeaderValue::from_static("application/json"));
            Bytes::from(serde_json::to_vec(&out).unwrap_or_default())
        }
        _ => bytes,
    };
    if !call.meta.omit_response && bytes.len() <= gw.cfg.max_stored_body_bytes {
        call.record.response_body = Some(String::from_utf8_lossy(&bytes).into_owned());
    }
    call.finish(usage, None);
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    *r.headers_mut() = out_headers;
    Ok(r)
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
    /// Records a call that failed in the gateway and hands back the error to answer with.
    fn fail(mut self, status: i32, error_type: &str, err: GatewayError) -> GatewayError {
        self.gw
            .metrics
            .upstream_errors
            .fetch_add(1, Ordering::Relaxed);
        self.record.status = status;
        self.record.error_type = Some(error_type.to_owned());
        self.record.error_message = Some(err.to_string());
        self.finish(None, None);
        err
    }

    /// Fills in timing, tokens and cost, and queues the record.
    fn finish(mut self, usage: Option<Usage>, ttft_ms: Option<i64>) {
        let r = &mut self.record;
        let elapsed = self.started.elapsed();
        r.latency_ms = elapsed.as_millis() as i64;
        r.completed_at = r.created_at
            + chrono::TimeDelta::from_std(elapsed).unwrap_or(chrono::TimeDelta::zero());
        r.ttft_ms = ttft_ms.map(|t| t.min(r.latency_ms));
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
        self.gw.recorder.record(std::mem::replace(
            &mut self.record,
            RequestRecord::new(Uuid::nil(), "", Utc::now()),
        ));
    }
}

/// Per-stream state; its `Drop` records the call, finished or cut off.
struct StreamState {
    /// Set when an Anthropic stream is answered to an OpenAI client.
    translator: Option<crate::anthropic::StreamTranslator>,
    splitter: EventSplitter,
    /// `data:` payloads that carry usage, as SSE text for [`Usage::from_sse`].
    usage_events: String,
    body_copy: Option<BytesMut>,
    strip_usage_chunk: bool,
    response_model: Option<String>,
    finished: bool,
    error: Option<String>,
    call: Option<Call>,
}

/// Bounds what a stream keeps for usage parsing.
const MAX_USAGE_TEXT: usize = 1 << 20;

impl StreamState {
    fn ttft_pending(&self) -> bool {
        self.call
            .as_ref()
            .is_some_and(|c| c.record.ttft_ms.is_none())
    }

    fn on_chunk(&mut self, chunk: &[u8]) -> Bytes {
        if self.ttft_pending()
            && let Some(c) = self.call.as_mut()
        {
            c.record.ttft_ms = Some(c.started.elapsed().as_millis() as i64);
        }
        let events = self.splitter.push(chunk);
        self.forward(events)
    }

    /// The upstream stream ended (with an error, or cleanly).
    fn end(&mut self, error: Option<String>) {
        self.error = error;
        self.finished = true;
    }

    fn on_end(&mut self) -> Bytes {
        let rest: Vec<Bytes> = self.splitter.finish().into_iter().collect();
        self.forward(rest)
    }

    fn forward(&mut self, events: Vec<Bytes>) -> Bytes {
        let mut out = BytesMut::new();
        for ev in events {
            let mut drop_event = false;
            if let Some(data) = data_of(&ev) {
                // OpenAI marks every chunk `"usage":null` once usage was asked for.
                let has_usage = data.contains("\"usage\"") && !data.contains("\"usage\":null");
                if has_usage || self.response_model.is_none() {
                    if let Ok(v) = serde_json::from_str::<Value>(&data) {
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
                        self.usage_events.push_str(&data);
                        self.usage_events.push_str("\n\n");
                    }
                }
            }
            if drop_event {
                continue;
            }
            let ev = match self.translator.as_mut() {
                Some(t) => match data_of(&ev) {
                    Some(d) => Bytes::from(t.event(&d)),
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
            if let (Some(copy), Some(c)) = (self.body_copy.as_mut(), self.call.as_ref()) {
                if copy.len() + ev.len() <= c.gw.cfg.max_stored_body_bytes {
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
        if let Some(e) = self.error.take() {
            call.gw
                .metrics
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            call.record.error_type = Some("upstream_stream_error".into());
            call.record.error_message = Some(format!("the provider's stream broke off: {e}"));
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
