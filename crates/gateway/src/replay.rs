//! The cache on the call path: saving a successful answer ([`CacheSave`]) and answering from
//! the cache ([`serve_hit`]: the stored answer, a stream replayed event by event, recorded as a
//! hit with cost 0 and the cost saved). Keys and stores are in [`crate::cache`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use loupe_model::{RequestRecord, Source, Usage};

use crate::Gateway;
use crate::proxy::{Meta, insert_headers};
use crate::sse::EventSplitter;

/// Where a successful answer is saved in the cache.
pub(crate) struct CacheSave {
    pub(crate) key: crate::cache::CacheKey,
    pub(crate) ttl: Duration,
    pub(crate) max_bytes: usize,
}

impl CacheSave {
    /// Saves a successful answer; `record` names who answered (its bodies are not read).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store(
        &self,
        gw: &Gateway,
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        stream: bool,
        record: &RequestRecord,
        response_model: Option<String>,
        usage: Option<&Usage>,
    ) {
        if !status.is_success() || body.len() > self.max_bytes {
            return;
        }
        let cost = usage.and_then(|u| gw.prices.cost(&record.provider, &record.model, u).usd);
        let answer = crate::cache::CachedAnswer {
            status: status.as_u16(),
            headers: headers
                .iter()
                .filter(|(n, _)| !crate::cache::per_call_header(n.as_str()))
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect(),
            body,
            stream,
            provider: record.provider.clone(),
            model: record.model.clone(),
            response_model,
            usage: usage.map(|u| crate::cache::CachedUsage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cache_read_tokens: u.cache_read_tokens,
                cache_write_tokens: u.cache_write_tokens.saturating_add(u.cache_write_1h_tokens),
                reasoning_tokens: u.reasoning_tokens,
                total_tokens: u.total_tokens,
            }),
            cost_usd: cost,
        };
        crate::run_soon(gw.stores.cache.put(self.key, Arc::new(answer), self.ttl));
    }
}

/// Answers from the cache: the stored status, headers and body (a stream is replayed event by
/// event), recorded with `cache_hit = true`, cost 0 and the cost saved.
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve_hit(
    gw: &Gateway,
    answer: Arc<crate::cache::CachedAnswer>,
    idx: usize,
    meta: Meta,
    org: String,
    path: String,
    body: &Bytes,
    started: Instant,
    created_at: DateTime<Utc>,
    secrets: Vec<String>,
    admission: &crate::ratelimit::Admission,
) -> Response {
    let mut headers = HeaderMap::with_capacity(answer.headers.len() + 8);
    for (k, v) in &answer.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(n, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&meta.request_id.to_string()) {
        headers.insert(HeaderName::from_static("helicone-id"), v.clone());
        headers.insert(HeaderName::from_static("loupe-id"), v);
    }
    headers.insert(
        HeaderName::from_static("helicone-cache"),
        HeaderValue::from_static("HIT"),
    );
    headers.insert(
        HeaderName::from_static("helicone-cache-bucket-idx"),
        HeaderValue::from(idx as u64),
    );
    insert_headers(&mut headers, &admission.headers);

    let mut r = RequestRecord::new(meta.request_id, org, created_at);
    r.source = Source::Gateway;
    r.provider = answer.provider.clone();
    r.model = meta.model_override.unwrap_or_else(|| answer.model.clone());
    r.response_model = answer.response_model.clone();
    r.path = path;
    r.status = i32::from(answer.status);
    r.stream = answer.stream;
    r.cache_hit = true;
    r.user_id = meta.user_id;
    r.session_id = meta.session_id;
    r.session_path = meta.session_path;
    r.session_name = meta.session_name;
    r.properties = meta.properties;
    if let Some(u) = answer.usage {
        r.prompt_tokens = u.prompt_tokens;
        r.completion_tokens = u.completion_tokens;
        r.cache_read_tokens = u.cache_read_tokens;
        r.cache_write_tokens = u.cache_write_tokens;
        r.reasoning_tokens = u.reasoning_tokens;
        r.total_tokens = u.total_tokens;
    }
    r.cost_usd = Some(rust_decimal::Decimal::ZERO);
    r.price_known = true;
    r.cost_saved_usd = answer.cost_usd;
    if !meta.omit_request && body.len() <= gw.cfg.max_stored_body_bytes {
        r.request_body = Some(String::from_utf8_lossy(body).into_owned());
    }
    if !meta.omit_response && answer.body.len() <= gw.cfg.max_stored_body_bytes {
        r.response_body = Some(String::from_utf8_lossy(&answer.body).into_owned());
    }
    let elapsed = started.elapsed();
    r.latency_ms = i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX);
    r.completed_at = created_at + chrono::TimeDelta::from_std(elapsed).unwrap_or_default();
    if answer.stream {
        r.ttft_ms = Some(r.latency_ms);
    }
    gw.recorder.record(r, secrets);

    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let out_body = if answer.stream {
        let mut splitter = EventSplitter::default();
        let mut events: Vec<Bytes> = splitter.push(&answer.body);
        events.extend(splitter.finish());
        Body::from_stream(futures::stream::iter(
            events.into_iter().map(Ok::<_, std::io::Error>),
        ))
    } else {
        Body::from(answer.body.clone())
    };
    let mut resp = Response::new(out_body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}
