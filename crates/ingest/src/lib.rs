//! Turns ingestion request bodies into validated [`RequestRecord`]s: the native batch format of
//! `POST /v1/ingest` ([`parse_native`]: NDJSON, a JSON array or one object) and Helicone's
//! async-log body of `POST /custom/v1/log`, `/oai/v1/log`, `/anthropic/v1/log` and
//! `/googleapis/v1/log` ([`parse_helicone_log`]), and OpenTelemetry OTLP traces and logs
//! ([`otlp`]: `POST /v1/traces`, `POST /v1/logs`, OTLP/gRPC). It owns validation, defaults, the mapping of
//! Helicone `meta` headers, cost computation through the [`PriceTable`], and the error list
//! returned to the sender ([`IngestError`]); it does not do I/O: the server authenticates,
//! enforces the whole-body size limit, and writes the records to an `EventSink`.
//!
//! This crate must not depend on DataFusion, object_store, axum or the storage crate; only on
//! `loupe-model` and small crates (serde, serde_json, chrono, uuid, rust_decimal, thiserror).
//! The format and the batch policy are documented for users in `docs/ingest.md`.

mod error;
mod helicone;
mod json;
mod native;
pub mod otlp;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use loupe_model::{PriceTable, RequestRecord};
use serde::{Deserialize, Serialize};

pub use error::{IngestError, MAX_PROBLEMS, Problem};
pub use helicone::{HeliconeRoute, parse_helicone_log};
pub use native::parse_native;

/// Everything a parse needs besides the body: who is sending, prices, the clock and limits.
#[derive(Debug, Clone)]
pub struct IngestContext {
    /// The organisation the API key belongs to; every record gets it.
    pub org_id: String,
    /// Prices used when a record carries no `cost_usd`.
    pub prices: Arc<PriceTable>,
    /// "Now", for the accepted time window (2000-01-01 ..= now + 1 day).
    pub now: DateTime<Utc>,
    /// Size limits (config section `ingest`).
    pub limits: IngestLimits,
}

impl IngestContext {
    /// A context for `org_id` with `prices`, the current time and default limits.
    pub fn new(org_id: impl Into<String>, prices: Arc<PriceTable>) -> Self {
        IngestContext {
            org_id: org_id.into(),
            prices,
            now: Utc::now(),
            limits: IngestLimits::default(),
        }
    }
}

impl Default for IngestContext {
    fn default() -> Self {
        IngestContext::new(String::new(), Arc::new(PriceTable::default()))
    }
}

/// Per-request limits. Field names are the config keys under `ingest.` (e.g.
/// `ingest.max_properties`); error messages name the key to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestLimits {
    /// Records in one `/v1/ingest` request.
    pub max_records: usize,
    /// Keys in one record's `properties`.
    pub max_properties: usize,
    /// Bytes (UTF-8) of one property name.
    pub max_property_key_len: usize,
    /// Bytes (UTF-8) of one property value.
    pub max_property_value_len: usize,
    /// Bytes of `request_body` and of `response_body`, each, as stored.
    pub max_body_field_len: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_records: 10_000,
            max_properties: 200,
            max_property_key_len: 256,
            max_property_value_len: 16 * 1024,
            max_body_field_len: 1024 * 1024,
        }
    }
}

/// Fills in the fields every ingested record shares and checks the ones both parsers produce.
fn finish_record(mut r: RequestRecord, ctx: &IngestContext) -> RequestRecord {
    use chrono::SubsecRound;
    r.org_id = ctx.org_id.clone();
    r.source = loupe_model::Source::Async;
    r.created_at = r.created_at.trunc_subsecs(6);
    r.completed_at = r.completed_at.trunc_subsecs(6);
    r
}
