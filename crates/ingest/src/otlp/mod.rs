//! OpenTelemetry (OTLP) ingest: `POST /v1/traces` and `POST /v1/logs` bodies (protobuf or
//! OTLP/JSON, optionally gzip-compressed) become [`RequestRecord`]s. GenAI spans (current
//! semantic conventions and legacy OpenLLMetry ≤ 0.47) map to one record each; OpenLLMetry event
//! logs (`gen_ai.user.message`, `gen_ai.choice`, …) are turned into [`GenAiEvents`] that fill a
//! record's request and response bodies when they share its trace and span id ([`EventJoin`]).
//! The mapping is documented for users in `docs/otlp.md`.
//!
//! Structural problems (undecodable body, ids of the wrong length) refuse the whole body
//! ([`IngestError`], HTTP 400, nothing stored). A span that decodes but cannot be stored (times
//! outside the accepted window, a property over a limit) is *rejected* on its own and counted in
//! the OTLP partial-success answer.

mod attrs;
mod events;
mod spans;

use std::io::Read;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::error::{IngestError, Problems, Scope};

pub use events::{EventJoin, GenAiEvents, LogsOutcome, apply_events, map_logs};
pub use spans::{OTLP_NAMESPACE, TracesOutcome, map_traces, request_id_for};

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpFormat {
    /// `application/x-protobuf`: binary protobuf.
    Protobuf,
    /// `application/json`: OTLP/JSON (hex ids, integer enums, camelCase, 64-bit ints as strings).
    Json,
}

impl OtlpFormat {
    /// The format named by a `Content-Type` header; an error names the accepted types.
    pub fn from_content_type(content_type: Option<&str>) -> Result<OtlpFormat, IngestError> {
        let media = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(OtlpFormat::Protobuf),
            "application/json" => Ok(OtlpFormat::Json),
            "" => Err(body_error(
                "Content-Type",
                "missing; send Content-Type: application/x-protobuf (binary OTLP) or application/json (OTLP/JSON)",
            )),
            other => Err(body_error(
                "Content-Type",
                format!(
                    "{} is not an OTLP encoding; send application/x-protobuf or application/json",
                    crate::json::quote_short(other)
                ),
            )),
        }
    }

    /// The `Content-Type` of answers in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OtlpFormat::Protobuf => "application/x-protobuf",
            OtlpFormat::Json => "application/json",
        }
    }
}

/// Why a body could not even be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The decompressed body is larger than the limit (HTTP 413).
    TooLarge { limit: usize },
    /// Anything else (HTTP 400).
    Invalid(IngestError),
}

impl From<IngestError> for BodyError {
    fn from(e: IngestError) -> Self {
        BodyError::Invalid(e)
    }
}

fn body_error(path: &str, reason: impl Into<String>) -> IngestError {
    let mut p = Problems::new(Scope::Otlp);
    p.push(None, path, reason);
    p.into_error()
}

/// Undoes `Content-Encoding` (`gzip` or `identity`/none), never producing more than `limit`
/// bytes: a gzip bomb stops at the limit with [`BodyError::TooLarge`].
pub fn decode_content_encoding(
    body: &[u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let enc = content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match enc.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            let mut dec = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
            dec.read_to_end(&mut out).map_err(|e| {
                body_error(
                    "body",
                    format!(
                        "the body is not valid gzip ({e}); send it uncompressed or gzip it whole"
                    ),
                )
            })?;
            if out.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(out)
        }
        other => Err(body_error(
            "Content-Encoding",
            format!(
                "{} is not supported; send the body uncompressed or with Content-Encoding: gzip",
                crate::json::quote_short(other)
            ),
        )
        .into()),
    }
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    format: OtlpFormat,
    what: &str,
) -> Result<T, IngestError> {
    match format {
        OtlpFormat::Protobuf => T::decode(body).map_err(|e| {
            body_error(
                "body",
                format!(
                    "not a valid protobuf {what}: {e}; check that the exporter uses OTLP/HTTP protobuf \
                     (or send application/json)"
                ),
            )
        }),
        OtlpFormat::Json => {
            let body = crate::json::strip_bom(body);
            let syntax = |e: serde_json::Error| {
                body_error(
                    "body",
                    format!(
                        "not a valid OTLP/JSON {what} at line {}, column {}: {}; OTLP/JSON uses hex \
                         trace/span ids, integer enums and camelCase keys",
                        e.line(),
                        e.column(),
                        crate::json::syntax_message(&e)
                    ),
                )
            };
            let mut value: serde_json::Value = serde_json::from_slice(body).map_err(syntax)?;
            default_values(&mut value, 0);
            serde_json::from_value(value).map_err(|e| {
                body_error(
                    "body",
                    format!(
                        "not a valid OTLP/JSON {what}: {e}; OTLP/JSON uses hex trace/span ids (32 and 16 \
                         hex characters), integer enums (\"kind\": 3) and camelCase keys"
                    ),
                )
            })
        }
    }
}

/// Real exporters send an empty `arrayValue`/`kvlistValue` as `{}` (proto3 JSON omits empty
/// repeated fields); `opentelemetry-proto`'s serde needs `values`, so it is filled in as `[]`.
/// Depth is bounded (serde_json refuses nesting deeper than 128 anyway).
fn default_values(v: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    if depth > 256 {
        return;
    }
    match v {
        Value::Object(m) => {
            for key in ["arrayValue", "kvlistValue"] {
                if let Some(Value::Object(inner)) = m.get_mut(key) {
                    inner
                        .entry("values")
                        .or_insert_with(|| Value::Array(Vec::new()));
                }
            }
            for x in m.values_mut() {
                default_values(x, depth + 1);
            }
        }
        Value::Array(a) => {
            for x in a {
                default_values(x, depth + 1);
            }
        }
        _ => {}
    }
}

/// Decodes an `ExportTraceServiceRequest` (already decompressed).
pub fn decode_traces(
    body: &[u8],
    format: OtlpFormat,
) -> Result<ExportTraceServiceRequest, IngestError> {
    decode(body, format, "ExportTraceServiceRequest")
}

/// Decodes an `ExportLogsServiceRequest` (already decompressed).
pub fn decode_logs(
    body: &[u8],
    format: OtlpFormat,
) -> Result<ExportLogsServiceRequest, IngestError> {
    decode(body, format, "ExportLogsServiceRequest")
}

fn encode<T: Message>(msg: &T) -> Vec<u8> {
    msg.encode_to_vec()
}

/// OTLP/JSON partial success, written by hand: `opentelemetry-proto`'s serde writes the int64
/// count as a number, OTLP/JSON wants a decimal string.
fn json_partial(count_key: &str, rejected: usize, message: &str) -> Vec<u8> {
    if rejected == 0 && message.is_empty() {
        return b"{}".to_vec();
    }
    let mut inner = serde_json::Map::new();
    inner.insert(count_key.into(), rejected.to_string().into());
    inner.insert("errorMessage".into(), message.into());
    serde_json::json!({ "partialSuccess": inner })
        .to_string()
        .into_bytes()
}

/// The `ExportTraceServiceResponse` body; `partialSuccess` only when something was rejected.
pub fn trace_response(format: OtlpFormat, rejected: usize, message: &str) -> Vec<u8> {
    if format == OtlpFormat::Json {
        return json_partial("rejectedSpans", rejected, message);
    }
    let resp = ExportTraceServiceResponse {
        partial_success: (rejected > 0 || !message.is_empty()).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: message.to_owned(),
        }),
    };
    encode(&resp)
}

/// The `ExportLogsServiceResponse` body; `partialSuccess` only when something was rejected.
pub fn logs_response(format: OtlpFormat, rejected: usize, message: &str) -> Vec<u8> {
    if format == OtlpFormat::Json {
        return json_partial("rejectedLogRecords", rejected, message);
    }
    let resp = ExportLogsServiceResponse {
        partial_success: (rejected > 0 || !message.is_empty()).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected as i64,
            error_message: message.to_owned(),
        }),
    };
    encode(&resp)
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer in protobuf.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An OTLP/HTTP error body (`google.rpc.Status`) in protobuf; `grpc_code` is the gRPC status
/// code (3 invalid argument, 8 resource exhausted, 14 unavailable, 16 unauthenticated).
pub fn status_protobuf(grpc_code: i32, message: &str) -> Vec<u8> {
    RpcStatus {
        code: grpc_code,
        message: message.to_owned(),
    }
    .encode_to_vec()
}

/// Joins up to `max` messages into one partial-success message, with "(and N more)".
pub(crate) fn join_messages(msgs: &[String], max: usize) -> String {
    let mut s = msgs
        .iter()
        .take(max)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if msgs.len() > max {
        s.push_str(&format!(" (and {} more)", msgs.len() - max));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = e.write_all(data);
        e.finish().unwrap_or_default()
    }

    #[test]
    fn content_types() {
        assert_eq!(
            OtlpFormat::from_content_type(Some("application/x-protobuf")),
            Ok(OtlpFormat::Protobuf)
        );
        assert_eq!(
            OtlpFormat::from_content_type(Some("Application/JSON; charset=utf-8")),
            Ok(OtlpFormat::Json)
        );
        let e = OtlpFormat::from_content_type(Some("text/plain")).err();
        assert!(
            e.is_some_and(|e| e.to_string().contains("application/x-protobuf")),
            "names the accepted types"
        );
        assert!(OtlpFormat::from_content_type(None).is_err());
    }

    #[test]
    fn gzip_roundtrip_and_bomb() {
        let data = vec![b'a'; 10_000];
        let z = gzip(&data);
        assert_eq!(
            decode_content_encoding(&z, Some("gzip"), 10_000).ok(),
            Some(data.clone())
        );
        assert_eq!(
            decode_content_encoding(&z, Some("gzip"), 9_999),
            Err(BodyError::TooLarge { limit: 9_999 })
        );
        assert!(matches!(
            decode_content_encoding(b"not gzip", Some("gzip"), 100),
            Err(BodyError::Invalid(_))
        ));
        assert!(matches!(
            decode_content_encoding(b"x", Some("br"), 100),
            Err(BodyError::Invalid(_))
        ));
        assert_eq!(
            decode_content_encoding(b"abc", None, 2),
            Err(BodyError::TooLarge { limit: 2 })
        );
    }

    #[test]
    fn responses() {
        let r = trace_response(OtlpFormat::Json, 0, "");
        assert_eq!(r, b"{}");
        let r = trace_response(OtlpFormat::Json, 2, "bad");
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap_or_default();
        assert_eq!(v["partialSuccess"]["rejectedSpans"], "2");
        assert_eq!(v["partialSuccess"]["errorMessage"], "bad");
        let r = logs_response(OtlpFormat::Protobuf, 1, "x");
        let d = ExportLogsServiceResponse::decode(r.as_slice()).ok();
        assert_eq!(
            d.and_then(|d| d.partial_success)
                .map(|p| p.rejected_log_records),
            Some(1)
        );
    }
}
