//! OTLP receiver: OTLP/HTTP `POST /v1/traces` and `POST /v1/logs`, and OTLP/gRPC
//! ([`serve_grpc`]) on `otlp.grpc_listen` (see docs/otlp.md). Thin: decoding
//! and mapping live in `loupe_ingest::otlp`; this module authenticates, reads and decompresses
//! the body, joins event logs to their span's record, writes records durably and answers in
//! the request's encoding.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use loupe_ingest::IngestContext;
use loupe_ingest::otlp::{self, BodyError, EventJoin, OtlpFormat};
use loupe_model::{ErrorKind, RequestRecord};
use loupe_storage::journal::Journal;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde::{Deserialize, Serialize};

use crate::app::{Shared, authenticate, context};
use crate::error::{ApiError, status_of};

/// The standard OTLP/gRPC port, on loopback.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:4317";

/// Config section `otlp`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// Address of the OTLP/gRPC receiver; `""` turns it off. When the default address
    /// (127.0.0.1:4317) is taken, Loupe logs a warning and runs without gRPC; any other address
    /// that cannot be bound is an error.
    pub grpc_listen: String,
    /// How long event logs (`gen_ai.user.message`, `gen_ai.choice`, …) wait for their span
    /// to arrive and be joined into its record. Waiting events are journaled to disk
    /// (`<data_dir>/otlp/join.jsonl`) before they are acknowledged, so a restart keeps them.
    pub join_window_secs: u64,
    /// At most this many spans' event logs wait at once (oldest dropped first).
    pub join_max_spans: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            grpc_listen: DEFAULT_GRPC_LISTEN.to_owned(),
            join_window_secs: 60,
            join_max_spans: 10_000,
        }
    }
}

/// Receiver state shared by the handlers.
#[derive(Debug)]
pub struct OtlpState {
    /// The journal first, then the join: whoever writes the journal holds its lock while it
    /// updates the join, so a journal rewrite always sees every entry written before it.
    journal: Mutex<Journal>,
    join: Mutex<EventJoin>,
}

/// Journal lines past which it is rewritten with only the live entries (times the live count).
const JOURNAL_SLACK: usize = 4;
const JOURNAL_MIN_LINES: usize = 10_000;

impl OtlpState {
    /// Opens the event-log journal under `data_dir` and rebuilds the join from it.
    pub fn open(cfg: &OtlpConfig, data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join("otlp").join("join.jsonl");
        let (mut journal, entries) =
            Journal::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut join = EventJoin::new(
            cfg.join_max_spans,
            Duration::from_secs(cfg.join_window_secs),
        );
        let bad = join.restore(&entries, chrono::Utc::now());
        if bad > 0 {
            tracing::warn!(entries = bad, path = %path.display(), "ignored unreadable OTLP join journal entries");
        }
        if join.waiting() > 0 {
            tracing::info!(
                spans = join.waiting(),
                "event logs still waiting for their span"
            );
        }
        journal
            .rewrite(&join.live_entries())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(OtlpState {
            journal: Mutex::new(journal),
            join: Mutex::new(join),
        })
    }

    /// Spans whose event logs wait for them, and event log records dropped because their span
    /// did not come in time (for `/metrics`).
    pub fn join_stats(&self) -> (usize, u64) {
        self.join
            .lock()
            .map(|j| (j.waiting(), j.expired_events()))
            .unwrap_or((0, 0))
    }
}

fn poisoned() -> ApiError {
    ApiError::new(
        ErrorKind::Internal,
        "OTLP join state is unavailable (a worker panicked)",
    )
}

/// Runs `f` on the blocking pool (journal writes `fsync`).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("OTLP worker failed: {e}")))?
}

/// gRPC status code for an error kind (the `code` of the protobuf `google.rpc.Status` body).
fn grpc_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::InvalidInput => 3,
        ErrorKind::PayloadTooLarge | ErrorKind::RateLimited => 8,
        ErrorKind::Unauthenticated => 16,
        ErrorKind::Forbidden => 7,
        ErrorKind::NotFound => 5,
        ErrorKind::Unavailable => 14,
        ErrorKind::Timeout => 4,
        _ => 13,
    }
}

/// An error in the request's encoding: protobuf `google.rpc.Status`, else Loupe's JSON error.
fn error(format: Option<OtlpFormat>, e: ApiError) -> Response {
    if format != Some(OtlpFormat::Protobuf) {
        return e.into_response();
    }
    let mut resp = (
        status_of(e.kind),
        [(header::CONTENT_TYPE, OtlpFormat::Protobuf.content_type())],
        otlp::status_protobuf(grpc_code(e.kind), &e.message),
    )
        .into_response();
    if let Some(s) = e.retry_after_secs
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn answer(format: OtlpFormat, body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

/// Auth, content type, size limit and `Content-Encoding`: the decompressed body.
async fn read(
    st: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<(OtlpFormat, String, IngestContext, Vec<u8>), (Option<OtlpFormat>, ApiError)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = OtlpFormat::from_content_type(ct).map_err(|e| (None, ApiError::from(e)))?;
    let f = Some(format);
    let org = authenticate(st, headers).map_err(|e| (f, e))?;
    let limit = st.max_body_bytes;
    let too_large = |limit: usize| {
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the body is larger than {limit} bytes after decompression (server.max_body_bytes); \
                 lower the exporter's batch size (OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or raise the limit"
            ),
        )
    };
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| (f, too_large(limit)))?;
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let bytes = otlp::decode_content_encoding(&raw, enc, limit).map_err(|e| match e {
        BodyError::TooLarge { limit } => (f, too_large(limit)),
        BodyError::Invalid(e) => (f, ApiError::from(e)),
    })?;
    let ctx = context(st, org.clone());
    Ok((format, org, ctx, bytes))
}

/// What an export request came to: how many items were rejected, and why.
struct Outcome {
    rejected: usize,
    message: String,
}

/// Maps, joins and durably stores the spans of one export request (HTTP or gRPC): LLM calls
/// as request records, every span as a `spans` row.
async fn ingest_traces(
    st: &Shared,
    org: &str,
    ctx: IngestContext,
    req: ExportTraceServiceRequest,
) -> Result<Outcome, ApiError> {
    let worker_ctx = ctx.clone();
    let mut out = tokio::task::spawn_blocking(move || otlp::map_traces(&req, &worker_ctx))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("OTLP worker failed: {e}")))??;
    // Join event logs that arrived before their span.
    let now = chrono::Utc::now();
    if let Ok(mut join) = st.otlp.join.lock() {
        for r in &mut out.records {
            if let (Some(t), Some(s)) = (&r.trace_id, &r.span_id)
                && let Some(ev) = join.get(org, t, s, now)
            {
                otlp::apply_events(r, &ev, &ctx);
            }
        }
    }
    let keys: Vec<(String, String)> = out.records.iter().filter_map(span_key).collect();
    let records = std::mem::take(&mut out.records);
    let spans = std::mem::take(&mut out.spans);
    // Both durable before the answer; a failure of either fails the export, and the exporter's
    // retry stores nothing twice (ids are derived from trace and span ids).
    let write_records = async {
        if !records.is_empty() {
            st.storage.append(records).await?;
        }
        Ok::<_, loupe_storage::StorageError>(())
    };
    let write_spans = async {
        if !spans.is_empty() {
            st.spans.append_spans(spans).await?;
        }
        Ok::<_, loupe_storage::StorageError>(())
    };
    tokio::try_join!(write_records, write_spans).map_err(loupe_model::SinkError::from)?;
    if !keys.is_empty() {
        let otlp = st.clone();
        let org = org.to_owned();
        // Best effort (no fsync): a lost `done` mark only lets late events wait until expiry.
        blocking(move || {
            let mut journal = otlp.otlp.journal.lock().map_err(|_| poisoned())?;
            let mut join = otlp.otlp.join.lock().map_err(|_| poisoned())?;
            let entries: Vec<serde_json::Value> = keys
                .iter()
                .map(|(t, s)| EventJoin::done_entry(&org, t, s, now))
                .collect();
            if let Err(e) = journal.append(&entries, false) {
                tracing::warn!(error = %e, "OTLP join journal write failed");
            }
            for (t, s) in &keys {
                join.stored(&org, t, s, now);
            }
            compact_journal(&mut journal, &join);
            Ok(())
        })
        .await?;
    }
    Ok(Outcome {
        rejected: out.rejected,
        message: out.message(),
    })
}

/// Rewrites the journal with the live entries once it is mostly dead lines.
fn compact_journal(journal: &mut Journal, join: &EventJoin) {
    let live = join.live_entries();
    if journal.lines() > (live.len() * JOURNAL_SLACK).max(JOURNAL_MIN_LINES)
        && let Err(e) = journal.rewrite(&live)
    {
        tracing::warn!(error = %e, "OTLP join journal rewrite failed");
    }
}

fn span_key(r: &RequestRecord) -> Option<(String, String)> {
    Some((r.trace_id.clone()?, r.span_id.clone()?))
}

/// Reads the GenAI event logs of one export request and offers them to the join.
async fn ingest_logs(
    st: &Shared,
    org: &str,
    ctx: IngestContext,
    req: ExportLogsServiceRequest,
) -> Result<Outcome, ApiError> {
    let out = tokio::task::spawn_blocking(move || otlp::map_logs(&req, &ctx))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("OTLP worker failed: {e}")))??;
    let now = chrono::Utc::now();
    let mut reasons = out.reasons.clone();
    let mut rejected = out.rejected;
    let otlp = st.clone();
    let org = org.to_owned();
    let events = out.events;
    // Journal (fsync) the events that will wait, then offer them: acknowledged means durable.
    let late = blocking(move || {
        let mut journal = otlp.otlp.journal.lock().map_err(|_| poisoned())?;
        let mut join = otlp.otlp.join.lock().map_err(|_| poisoned())?;
        let (waiting, late): (Vec<_>, Vec<_>) = events
            .into_iter()
            .partition(|(key, _)| join.accepts(&org, key, now));
        let entries: Vec<serde_json::Value> = waiting
            .iter()
            .map(|(key, ev)| EventJoin::wait_entry(&org, key, ev, now))
            .collect();
        journal.append(&entries, true).map_err(|e| ApiError {
            retry_after_secs: Some(1),
            ..ApiError::new(
                ErrorKind::Unavailable,
                format!("cannot make event logs durable: {e}; retry"),
            )
        })?;
        for (key, ev) in waiting {
            join.offer(&org, key, ev, now);
        }
        compact_journal(&mut journal, &join);
        Ok(late
            .into_iter()
            .map(|(key, ev)| (key.1, ev.input.len() + ev.output.len()))
            .collect::<Vec<_>>())
    })
    .await?;
    for (span, n) in late {
        rejected += n;
        reasons.push(format!(
            "{n} event logs of span {span} arrived after the span was stored and cannot be \
             joined to its record; export logs before (or with) traces, e.g. flush the \
             LoggerProvider first"
        ));
    }
    if out.other_logs > 0 {
        rejected += out.other_logs;
        reasons.push(format!(
            "{} log records are not GenAI events and were not stored: Loupe reads only \
             gen_ai.* event logs",
            out.other_logs
        ));
    }
    Ok(Outcome {
        rejected,
        message: reasons.join("; "),
    })
}

async fn decode_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, loupe_ingest::IngestError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("OTLP worker failed: {e}")))?
        .map_err(ApiError::from)
}

/// `POST /v1/traces`.
pub async fn traces(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let (format, org, ctx, bytes) = match read(&st, &headers, body).await {
        Ok(x) => x,
        Err((f, e)) => return error(f, e),
    };
    let result = async {
        let req = decode_blocking(move || otlp::decode_traces(&bytes, format)).await?;
        ingest_traces(&st, &org, ctx, req).await
    }
    .await;
    match result {
        Ok(o) => answer(format, otlp::trace_response(format, o.rejected, &o.message)),
        Err(e) => error(Some(format), e),
    }
}

/// `POST /v1/logs`.
pub async fn logs(State(st): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let (format, org, ctx, bytes) = match read(&st, &headers, body).await {
        Ok(x) => x,
        Err((f, e)) => return error(f, e),
    };
    let result = async {
        let req = decode_blocking(move || otlp::decode_logs(&bytes, format)).await?;
        ingest_logs(&st, &org, ctx, req).await
    }
    .await;
    match result {
        Ok(o) => answer(format, otlp::logs_response(format, o.rejected, &o.message)),
        Err(e) => error(Some(format), e),
    }
}

/// The OTLP/gRPC services (`opentelemetry.proto.collector.trace.v1.TraceService/Export`,
/// `…logs.v1.LogsService/Export`) over the same state as the HTTP routes.
#[derive(Clone)]
pub struct Grpc {
    st: Shared,
}

fn grpc_status(e: ApiError) -> tonic::Status {
    use tonic::Code;
    let code = match e.kind {
        ErrorKind::InvalidInput => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::PayloadTooLarge | ErrorKind::RateLimited => Code::ResourceExhausted,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        _ => Code::Internal,
    };
    tonic::Status::new(code, e.message)
}

impl Grpc {
    fn begin<T>(&self, req: &tonic::Request<T>) -> Result<(String, IngestContext), tonic::Status> {
        let headers = req.metadata().clone().into_headers();
        let org = authenticate(&self.st, &headers).map_err(grpc_status)?;
        let ctx = context(&self.st, org.clone());
        Ok((org, ctx))
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let (org, ctx) = self.begin(&request)?;
        let o = ingest_traces(&self.st, &org, ctx, request.into_inner())
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: (o.rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: o.rejected as i64,
                error_message: o.message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let (org, ctx) = self.begin(&request)?;
        let o = ingest_logs(&self.st, &org, ctx, request.into_inner())
            .await
            .map_err(grpc_status)?;
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: (o.rejected > 0).then_some(ExportLogsPartialSuccess {
                rejected_log_records: o.rejected as i64,
                error_message: o.message,
            }),
        }))
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves. Messages are limited to
/// `server.max_body_bytes` (after decompression); gzip is accepted.
pub async fn serve_grpc(
    st: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    use tonic::codec::CompressionEncoding;
    let max = st.max_body_bytes;
    let g = Grpc { st };
    let traces = TraceServiceServer::new(g.clone())
        .max_decoding_message_size(max)
        .accept_compressed(CompressionEncoding::Gzip);
    let logs = LogsServiceServer::new(g)
        .max_decoding_message_size(max)
        .accept_compressed(CompressionEncoding::Gzip);
    tonic::transport::Server::builder()
        .add_service(traces)
        .add_service(logs)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .map_err(|e| format!("OTLP/gRPC server error: {e}"))
}
