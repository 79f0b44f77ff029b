//! One upstream attempt: a candidate (the model asked for, or a fallback) made ready to send —
//! route, key, body (model rewrite, `stream_options`, translation) — and sent once. The retry and
//! fallback loop around it is in `proxy::forward`, its decisions in [`crate::retry`].

use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;

use crate::config::ProviderKind;
use crate::fallback::Candidate;
use crate::proxy::{
    Call, CallerKey, Endpoint, Head, Route, SendError, bearer, build_request, contains, header_str,
    read_all, route, send, upstream_key,
};
use crate::{Gateway, GatewayError};

/// One candidate made ready to send: where, with which key and body.
pub(crate) struct Prepared {
    pub(crate) route: Route,
    pub(crate) key: String,
    pub(crate) upstream_body: Bytes,
    /// The body without the injected `stream_options`, in case the provider rejects them.
    pub(crate) plain_body: Option<Bytes>,
    pub(crate) strip_usage_chunk: bool,
    pub(crate) client_wants_usage: bool,
    /// A `Helicone-Fallbacks` entry's headers.
    pub(crate) extra_headers: HeaderMap,
}

/// The provider key in a `Helicone-Fallbacks` entry's headers.
pub(crate) fn entry_key(h: &HeaderMap) -> Option<String> {
    header_str(h, "authorization")
        .map(bearer)
        .or_else(|| header_str(h, "x-api-key").map(str::trim))
        .or_else(|| header_str(h, "api-key").map(str::trim))
        .map(str::to_owned)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare(
    gw: &Gateway,
    ep: Endpoint,
    cand: &Candidate,
    mut json: Value,
    body: &Bytes,
    requested_model: &str,
    target_url: Option<&str>,
    passthrough: Option<CallerKey>,
    path: &str,
) -> Result<Prepared, GatewayError> {
    let mut modified = false;
    if let Some(o) = &cand.body_override {
        for (k, v) in o {
            json[k.as_str()] = v.clone();
        }
        modified = true;
    }
    let model = cand
        .model
        .clone()
        .unwrap_or_else(|| requested_model.to_owned());
    let target = cand.target_url.as_deref().or(target_url);
    let route = route(gw, ep, &model, target, path)?;
    let caller = match entry_key(&cand.headers) {
        Some(k) => Some(CallerKey::Wins(k)),
        None => passthrough,
    };
    let key = upstream_key(&route.config, &route.provider, caller)?;

    let stream = json.get("stream").and_then(Value::as_bool) == Some(true);
    if json.get("model").and_then(Value::as_str) != Some(route.model.as_str()) {
        json["model"] = Value::String(route.model.clone());
        modified = true;
    }
    // Usage of a streamed OpenAI chat call comes in a final chunk only if asked for: ask, and
    // take that chunk out of what the client sees if the client did not ask itself.
    let mut strip_usage_chunk = false;
    let mut plain_body: Option<Bytes> = None;
    if stream
        && matches!(ep, Endpoint::Chat | Endpoint::Completions)
        && route.config.kind != ProviderKind::Anthropic
        && route.config.stream_usage
    {
        let asked = json
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        if !asked {
            plain_body = Some(if modified {
                Bytes::from(
                    serde_json::to_vec(&json)
                        .map_err(|e| GatewayError::BadRequest(e.to_string()))?,
                )
            } else {
                body.clone()
            });
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
    Ok(Prepared {
        route,
        key,
        upstream_body,
        plain_body,
        strip_usage_chunk,
        client_wants_usage,
        extra_headers: cand.headers.clone(),
    })
}

/// A provider's answer to one attempt: its head, and either the live stream (a successful
/// SSE answer) or the whole body.
pub(crate) struct Answer {
    pub(crate) head: Head,
    pub(crate) live: Option<reqwest::Response>,
    pub(crate) body: Option<Bytes>,
    pub(crate) strip_usage_chunk: bool,
}

/// One upstream attempt. Anything but a successful stream is read whole here, so a body that
/// breaks off is a failed attempt (and may be retried) rather than a broken answer.
pub(crate) async fn try_once(
    gw: &Gateway,
    p: &Prepared,
    headers: &HeaderMap,
    call: &mut Call,
) -> Result<Answer, SendError> {
    let timeout = Duration::from_secs(gw.cfg.upstream_timeout_secs.max(1));
    let deadline = tokio::time::Instant::now() + timeout;
    let req = build_request(
        gw,
        &p.route,
        headers,
        &p.key,
        p.upstream_body.clone(),
        &p.extra_headers,
    );
    let resp = send(req, &p.route, deadline, timeout).await?;
    let mut head = Head::of(&resp, call);
    let mut live = Some(resp);
    let mut body: Option<Bytes> = None;
    let mut strip_usage_chunk = p.strip_usage_chunk;
    // A server that rejects `stream_options` (which Loupe added) gets the call as the client
    // sent it: the call must not fail because of Loupe.
    if let Some(plain) = &p.plain_body
        && matches!(head.status.as_u16(), 400 | 422)
        && let Some(resp) = live.take()
    {
        let bytes = read_all(resp, &p.route, deadline, timeout).await?;
        if contains(&bytes, b"stream_options") {
            tracing::debug!(provider = %p.route.provider, "provider rejected stream_options; retrying without");
            strip_usage_chunk = false;
            let req = build_request(
                gw,
                &p.route,
                headers,
                &p.key,
                plain.clone(),
                &p.extra_headers,
            );
            let resp = send(req, &p.route, deadline, timeout).await?;
            head = Head::of(&resp, call);
            live = Some(resp);
        } else {
            body = Some(bytes);
        }
    }
    if !(head.is_sse && head.status.is_success())
        && let Some(resp) = live.take()
    {
        body = Some(read_all(resp, &p.route, deadline, timeout).await?);
    }
    Ok(Answer {
        head,
        live,
        body,
        strip_usage_chunk,
    })
}
