//! The request record: one LLM call, however it reached Loupe (gateway, async log, OTLP).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How a record reached Loupe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Proxied through Loupe's gateway.
    Gateway,
    /// Sent after the fact: Helicone async-log API or native `/v1/ingest`.
    Async,
    /// Decoded from OpenTelemetry traces/logs.
    Otlp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Gateway => "gateway",
            Source::Async => "async",
            Source::Otlp => "otlp",
        }
    }
}

/// One row of the `requests` table. Field names are the column names HQL shows.
///
/// Times are kept at microsecond precision (UTC). Cost is exact: a decimal in USD, `None` when the
/// model has no price (then `price_known` is `false`), never a silent zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request_id: Uuid,
    pub org_id: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub provider: String,
    pub model: String,
    pub response_model: Option<String>,
    pub path: String,
    pub status: i32,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// All prompt tokens, cached ones included (OpenAI semantics).
    pub prompt_tokens: i64,
    /// All completion tokens, reasoning ones included.
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: Option<Decimal>,
    pub price_known: bool,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub session_path: Option<String>,
    pub session_name: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub cache_hit: bool,
    pub stream: bool,
    pub source: Source,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    /// Upstream headers worth keeping (lower-case names): `x-ratelimit-*`,
    /// `anthropic-ratelimit-*`, `retry-after`, the provider's request id. Never credentials.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, String>,
    /// Gateway: every upstream attempt that failed before the answer (retries and fallbacks), in
    /// order. Stored as a JSON array in the `attempts` column (null when empty).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Gateway: which upstream attempt produced the answer (1 = the first); `None` when no
    /// provider was asked (cache hits) or the record did not come through the gateway.
    #[serde(default)]
    pub attempt: Option<i32>,
    /// Gateway: the fallback that answered (0 = the model/target asked for; see
    /// `Helicone-Fallback-Index`); `None` without fallbacks.
    #[serde(default)]
    pub fallback_index: Option<i32>,
    /// Cache hits: what the answer cost when it was first computed (the hit itself costs 0).
    #[serde(default)]
    pub cost_saved_usd: Option<Decimal>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

impl RequestRecord {
    /// A record with every optional field empty; callers fill in what they know.
    pub fn new(request_id: Uuid, org_id: impl Into<String>, created_at: DateTime<Utc>) -> Self {
        RequestRecord {
            request_id,
            org_id: org_id.into(),
            created_at,
            completed_at: created_at,
            latency_ms: 0,
            ttft_ms: None,
            provider: String::new(),
            model: String::new(),
            response_model: None,
            path: String::new(),
            status: 200,
            error_type: None,
            error_message: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            reasoning_tokens: 0,
            total_tokens: 0,
            cost_usd: None,
            price_known: false,
            user_id: None,
            session_id: None,
            session_path: None,
            session_name: None,
            properties: BTreeMap::new(),
            cache_hit: false,
            stream: false,
            source: Source::Async,
            trace_id: None,
            span_id: None,
            upstream_headers: BTreeMap::new(),
            attempts: Vec::new(),
            attempt: None,
            fallback_index: None,
            cost_saved_usd: None,
            request_body: None,
            response_body: None,
        }
    }
}

/// One failed upstream attempt of a gateway call (a retry or a fallback followed it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first upstream attempt of the call.
    pub attempt: i32,
    /// Index of the fallback tried (0 = the model/target asked for).
    pub fallback_index: i32,
    pub provider: String,
    pub model: String,
    /// The provider's status, or Loupe's (502 unreachable/broken, 504 timeout).
    pub status: i32,
    /// `error.type` of the provider's answer, or Loupe's (`upstream_unreachable`, …).
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    pub latency_ms: i64,
    /// The wait before the next attempt (backoff, or the provider's `retry-after`); 0 when the
    /// next attempt was a fallback sent at once.
    #[serde(default)]
    pub backoff_ms: i64,
}

/// Whether an upstream response header is kept on the record (`upstream_headers`): rate-limit
/// state, `retry-after` and the provider's request id. `name` must be lower-case. Credentials and
/// cookies never match.
pub fn keep_upstream_header(name: &str) -> bool {
    name.starts_with("x-ratelimit-")
        || name.starts_with("anthropic-ratelimit-")
        || matches!(
            name,
            "retry-after"
                | "retry-after-ms"
                | "x-request-id"
                | "request-id"
                | "openai-processing-ms"
        )
}
