//! Spans → request records (see `docs/otlp.md` for the table).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use loupe_model::{RequestRecord, SpanRecord, Usage};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::attrs::{self, by_key};
use crate::error::{IngestError, Problems, Scope};
use crate::json::check_time_window;
use crate::{IngestContext, finish_record};

/// The UUIDv5 namespace of OTLP request ids: `request_id = UUIDv5(OTLP_NAMESPACE,
/// "<trace_id hex>:<span_id hex>")`, so a re-sent span gets the same id and is deduplicated.
pub const OTLP_NAMESPACE: Uuid = Uuid::from_u128(0x6c6f_7570_652d_4f54_8c50_7370_616e_7331);

/// The deterministic request id of the span `trace_id`/`span_id` (lower-case hex).
pub fn request_id_for(trace_id: &str, span_id: &str) -> Uuid {
    Uuid::new_v5(
        &OTLP_NAMESPACE,
        format!(
            "{}:{}",
            trace_id.to_ascii_lowercase(),
            span_id.to_ascii_lowercase()
        )
        .as_bytes(),
    )
}

/// What an `ExportTraceServiceRequest` turned into.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracesOutcome {
    /// One record per GenAI (LLM call) span, in input order.
    pub records: Vec<RequestRecord>,
    /// Every span that can be stored (the LLM calls too, linked to their record by
    /// `request_id`), in input order: the `spans` table.
    pub spans: Vec<SpanRecord>,
    /// Spans that are not LLM calls (workflow, task, agent, tool, HTTP, …).
    pub other_spans: usize,
    /// Spans that could not be stored, and why (at most [`crate::MAX_PROBLEMS`] reasons).
    pub rejected: usize,
    pub reasons: Vec<String>,
}

impl TracesOutcome {
    /// The partial-success message ("" when nothing was rejected).
    pub fn message(&self) -> String {
        let mut s = super::join_messages(&self.reasons, crate::MAX_PROBLEMS);
        if self.rejected > self.reasons.len() && self.reasons.len() >= crate::MAX_PROBLEMS {
            s.push_str(&format!(" ({} spans rejected in all)", self.rejected));
        }
        s
    }
}

/// Attributes read into columns (or the bodies); every other span attribute is kept as a
/// property under its own name.
const KNOWN: &[&str] = &[
    "gen_ai.operation.name",
    "llm.request.type",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "gen_ai.usage.total_tokens",
    "llm.usage.total_tokens",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "gen_ai.tool.definitions",
    "gen_ai.response.time_to_first_chunk",
    "gen_ai.request.stream",
    "gen_ai.is_streaming",
    "llm.is_streaming",
    "gen_ai.conversation.id",
    "user.id",
    "enduser.id",
    "http.response.status_code",
    "http.status_code",
    "error.type",
];

const ASSOCIATION: &str = "traceloop.association.properties.";

/// Operations that are LLM calls.
const INFERENCE_OPS: &[&str] = &[
    "chat",
    "text_completion",
    "completion",
    "generate_content",
    "embeddings",
    "embedding",
    "rerank",
];

/// Maps every span of `req`. Ids of the wrong length (or all zero) refuse the whole body;
/// see the module docs.
pub fn map_traces(
    req: &ExportTraceServiceRequest,
    ctx: &IngestContext,
) -> Result<TracesOutcome, IngestError> {
    let mut probs = Problems::new(Scope::Otlp);
    for (i, rs) in req.resource_spans.iter().enumerate() {
        for (j, ss) in rs.scope_spans.iter().enumerate() {
            for (k, span) in ss.spans.iter().enumerate() {
                let at = format!("resourceSpans[{i}].scopeSpans[{j}].spans[{k}]");
                check_id(&mut probs, &at, "traceId", &span.trace_id, 16, false);
                check_id(&mut probs, &at, "spanId", &span.span_id, 8, false);
                check_id(
                    &mut probs,
                    &at,
                    "parentSpanId",
                    &span.parent_span_id,
                    8,
                    true,
                );
            }
        }
    }
    if !probs.is_empty() {
        return Err(probs.into_error());
    }
    let mut out = TracesOutcome::default();
    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| by_key(&r.attributes))
            .unwrap_or_default();
        let resource_json = attrs_json(rs.resource.iter().flat_map(|r| r.attributes.iter()));
        for ss in &rs.scope_spans {
            let scope = ss
                .scope
                .as_ref()
                .map(|s| s.name.as_str())
                .filter(|n| !n.is_empty());
            for span in &ss.spans {
                let mapped = span_record(span, &resource, ctx).and_then(|rec| {
                    let row = span_row(span, &resource, &resource_json, scope, rec.as_ref(), ctx)?;
                    Ok((rec, row))
                });
                match mapped {
                    Ok((rec, row)) => {
                        match rec {
                            Some(r) => out.records.push(r),
                            None => out.other_spans += 1,
                        }
                        out.spans.push(row);
                    }
                    Err(why) => {
                        out.rejected += 1;
                        if out.reasons.len() < crate::MAX_PROBLEMS {
                            out.reasons.push(format!(
                                "span {} ({}): {why}",
                                hex::encode(&span.span_id),
                                span.name
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn check_id(
    probs: &mut Problems,
    at: &str,
    field: &str,
    id: &[u8],
    len: usize,
    optional: bool,
) {
    if optional && id.is_empty() {
        return;
    }
    if id.len() != len {
        probs.push(
            None,
            format!("{at}.{field}"),
            format!(
                "expected {len} bytes ({} hex characters in OTLP/JSON), found {} bytes",
                len * 2,
                id.len()
            ),
        );
    } else if id.iter().all(|b| *b == 0) {
        probs.push(
            None,
            format!("{at}.{field}"),
            "an all-zero id is invalid (W3C Trace Context)",
        );
    }
}

/// Nanoseconds since the epoch → time; 0 means "not set".
pub(crate) fn from_nanos(n: u64) -> Option<DateTime<Utc>> {
    if n == 0 {
        return None;
    }
    let secs = i64::try_from(n / 1_000_000_000).ok()?;
    DateTime::from_timestamp(secs, (n % 1_000_000_000) as u32)
}

/// A span's times: its start as sent, then start (else end, else now), end (defaulting to the
/// start) and the duration in whole milliseconds; an error when they are out of order or outside
/// the accepted window.
type SpanTimes = (Option<DateTime<Utc>>, DateTime<Utc>, DateTime<Utc>, i64);

fn span_times(span: &Span, ctx: &IngestContext) -> Result<SpanTimes, String> {
    let start = from_nanos(span.start_time_unix_nano);
    let end = from_nanos(span.end_time_unix_nano);
    let created = start.or(end).unwrap_or(ctx.now);
    let completed = match (start, end) {
        (Some(s), Some(e)) if e < s => {
            return Err(format!(
                "endTimeUnixNano ({}) is before startTimeUnixNano ({})",
                span.end_time_unix_nano, span.start_time_unix_nano
            ));
        }
        (_, Some(e)) => e,
        _ => created,
    };
    check_time_window(created, ctx.now).map_err(|w| format!("startTimeUnixNano: {w}"))?;
    check_time_window(completed, ctx.now).map_err(|w| format!("endTimeUnixNano: {w}"))?;
    let us = (completed - created).num_microseconds().unwrap_or(0);
    Ok((start, created, completed, (us + 500) / 1000))
}

/// Loupe's provider id for an OTel `gen_ai.provider.name` / `gen_ai.system` value.
fn provider_id(raw: &str) -> String {
    let p = raw.trim().to_ascii_lowercase();
    match p.as_str() {
        "az.ai.openai" | "azure.ai.openai" | "azure_openai" => "azure",
        "azure.ai.inference" | "az.ai.inference" => "azure_ai",
        "aws.bedrock" | "aws_bedrock" => "bedrock",
        "gcp.gemini" | "gcp.gen_ai" | "google" | "google_genai" => "gemini",
        "gcp.vertex_ai" | "vertexai" | "vertex_ai" => "vertex_ai",
        "mistral_ai" | "mistralai" => "mistral",
        "x_ai" | "xai" => "xai",
        "ibm.watsonx.ai" | "watsonx" => "watsonx",
        _ => return if p.is_empty() { "unknown".into() } else { p },
    }
    .to_owned()
}

type Attrs<'a> = BTreeMap<&'a str, &'a AnyValue>;

fn first_str<'a>(a: &Attrs<'a>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| a.get(k).and_then(|v| attrs::as_str(v)))
        .filter(|s| !s.trim().is_empty())
}

fn first_i64(a: &Attrs<'_>, keys: &[&str]) -> Option<i64> {
    keys.iter()
        .find_map(|k| a.get(k).and_then(|v| attrs::as_i64(v)))
}

/// One span: `Ok(None)` when it is not an LLM call, `Err(reason)` when it is but cannot be
/// stored.
fn span_record(
    span: &Span,
    resource: &Attrs<'_>,
    ctx: &IngestContext,
) -> Result<Option<RequestRecord>, String> {
    let a = by_key(&span.attributes);
    let op = first_str(&a, &["gen_ai.operation.name", "llm.request.type"]);
    let provider_raw = first_str(&a, &["gen_ai.provider.name", "gen_ai.system"]);
    let req_model = first_str(&a, &["gen_ai.request.model"]);
    let resp_model = first_str(&a, &["gen_ai.response.model"]);
    let is_llm = match op {
        Some(op) => INFERENCE_OPS.contains(&op.to_ascii_lowercase().as_str()),
        None => provider_raw.is_some() && (req_model.is_some() || resp_model.is_some()),
    };
    if !is_llm {
        return Ok(None);
    }
    let limits = ctx.limits;
    let trace_id = hex::encode(&span.trace_id);
    let span_id = hex::encode(&span.span_id);

    let (start, created, completed, latency_ms) = span_times(span, ctx)?;

    let stream = [
        "gen_ai.request.stream",
        "gen_ai.is_streaming",
        "llm.is_streaming",
    ]
    .iter()
    .find_map(|k| a.get(k).and_then(|v| attrs::as_bool(v)))
    .unwrap_or(false);
    let ttft_ms = ttft(span, &a, start).map(|t| t.clamp(0, latency_ms));

    let provider = provider_raw
        .map(provider_id)
        .unwrap_or_else(|| crate::native::provider_from_model(req_model.unwrap_or("")));
    let model = req_model.or(resp_model).unwrap_or("unknown").to_owned();

    // Status: the HTTP status if the instrumentation recorded it, else 500 for a failed span.
    let failed = span.status.as_ref().is_some_and(|s| s.code == 2);
    let http_status = first_i64(&a, &["http.response.status_code", "http.status_code"])
        .filter(|s| (0..=999).contains(s));
    let status = match http_status {
        Some(s) => s as i32,
        None if failed => 500,
        None => 200,
    };
    let error_type = first_str(&a, &["error.type"]).map(str::to_owned);
    let error_message = span
        .status
        .as_ref()
        .filter(|s| s.code == 2 && !s.message.is_empty())
        .map(|s| s.message.clone());

    // Usage: current names first, then the deprecated/legacy ones.
    let input = first_i64(
        &a,
        &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"],
    );
    let output = first_i64(
        &a,
        &[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
        ],
    );
    let cache_read = first_i64(
        &a,
        &[
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
        ],
    );
    let cache_write = first_i64(
        &a,
        &[
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
        ],
    );
    let reasoning = first_i64(
        &a,
        &[
            "gen_ai.usage.reasoning.output_tokens",
            "gen_ai.usage.reasoning_tokens",
        ],
    );
    let total = first_i64(&a, &["gen_ai.usage.total_tokens", "llm.usage.total_tokens"]);
    let tokens_given = input.is_some() || output.is_some() || total.is_some();
    for (name, v) in [
        ("input", input),
        ("output", output),
        ("cache_read", cache_read),
        ("cache_creation", cache_write),
        ("reasoning", reasoning),
        ("total", total),
    ] {
        if v.is_some_and(|v| v < 0) {
            return Err(format!(
                "gen_ai.usage {name} tokens is negative ({})",
                v.unwrap_or(0)
            ));
        }
    }
    let (cr, cw, rs) = (
        cache_read.unwrap_or(0),
        cache_write.unwrap_or(0),
        reasoning.unwrap_or(0),
    );
    let mut p = input.unwrap_or(0);
    let mut c = output.unwrap_or(0);
    // Cached tokens are part of the input (the convention); an instrumentation that reports
    // them apart (Anthropic style) sends an input smaller than the cached part: add them.
    if cr.saturating_add(cw) > p {
        p = p.saturating_add(cr).saturating_add(cw);
    }
    if rs > c {
        c = c.saturating_add(rs);
    }
    let total = total.unwrap_or_else(|| p.saturating_add(c));
    let usage = Usage {
        prompt_tokens: p,
        completion_tokens: c,
        cache_read_tokens: cr,
        cache_write_tokens: cw,
        cache_write_1h_tokens: 0,
        reasoning_tokens: rs,
        total_tokens: total,
    };
    let (cost_usd, price_known) = if !tokens_given && status < 400 {
        (None, false)
    } else {
        let cost = ctx.prices.cost(&provider, &model, &usage);
        let known = cost.usd.is_some();
        (cost.usd, known)
    };

    // User, session and properties.
    let Association {
        user_id,
        session_id,
        session_path,
        session_name,
        properties: mut props,
    } = association(&a, limits)?;
    // Unknown attributes are kept as properties while they fit the limits.
    let extra = a
        .iter()
        .filter(|(k, _)| !is_mapped(k))
        .chain(resource.get("service.name").map(|v| (&"service.name", v)));
    for (k, v) in extra {
        if props.len() >= limits.max_properties {
            break;
        }
        if props.contains_key(*k) || k.len() > limits.max_property_key_len {
            continue;
        }
        if let Some(value) = attrs::to_property(v)
            && value.len() <= limits.max_property_value_len
        {
            props.insert((*k).to_owned(), value);
        }
    }

    // Bodies.
    let request_body = request_body(&a);
    let response_body = response_body(&a, resp_model);
    for (name, body) in [
        ("request body", &request_body),
        ("response body", &response_body),
    ] {
        if let Some(b) = body
            && b.len() > limits.max_body_field_len
        {
            return Err(format!(
                "the {name} is {} bytes; at most {} are stored (ingest.max_body_field_len)",
                b.len(),
                limits.max_body_field_len
            ));
        }
    }

    let mut rec = RequestRecord::new(request_id_for(&trace_id, &span_id), "", created);
    rec.completed_at = completed;
    rec.latency_ms = latency_ms;
    rec.ttft_ms = ttft_ms;
    rec.provider = provider;
    rec.model = model;
    rec.response_model = resp_model.map(str::to_owned);
    rec.status = status;
    rec.error_type = error_type;
    rec.error_message = error_message;
    rec.prompt_tokens = p;
    rec.completion_tokens = c;
    rec.cache_read_tokens = cr;
    rec.cache_write_tokens = cw;
    rec.reasoning_tokens = rs;
    rec.total_tokens = total;
    rec.cost_usd = cost_usd;
    rec.price_known = price_known;
    rec.user_id = user_id;
    rec.session_id = session_id;
    rec.session_path = session_path;
    rec.session_name = session_name;
    rec.properties = props;
    rec.stream = stream;
    rec.trace_id = Some(trace_id);
    rec.span_id = Some(span_id);
    rec.request_body = request_body;
    rec.response_body = response_body;
    let mut rec = finish_record(rec, ctx);
    rec.source = loupe_model::Source::Otlp;
    Ok(Some(rec))
}

/// User, session and properties from Traceloop association properties (and the GenAI
/// conversation / user attributes), mapped exactly as the gateway maps its headers.
struct Association {
    user_id: Option<String>,
    session_id: Option<String>,
    session_path: Option<String>,
    session_name: Option<String>,
    properties: BTreeMap<String, String>,
}

fn association(a: &Attrs<'_>, limits: crate::IngestLimits) -> Result<Association, String> {
    let mut user_id = None;
    let mut session = [None, None, None]; // id, path, name
    let mut props: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in a {
        let Some(key) = k.strip_prefix(ASSOCIATION) else {
            continue;
        };
        let Some(value) = attrs::to_property(v) else {
            continue;
        };
        if value.len() > limits.max_property_value_len {
            return Err(format!(
                "{k} is {} bytes; at most {} are allowed (ingest.max_property_value_len)",
                value.len(),
                limits.max_property_value_len
            ));
        }
        let lower = key.to_ascii_lowercase();
        let name = lower
            .strip_prefix("helicone-")
            .or_else(|| lower.strip_prefix("loupe-"));
        match name {
            Some("user-id") => user_id = Some(value),
            Some("session-id") => session[0] = Some(value),
            Some("session-path") => session[1] = Some(value),
            Some("session-name") => session[2] = Some(value),
            Some(n) => {
                if let Some(prop) = n.strip_prefix("property-").filter(|p| !p.is_empty()) {
                    check_key(prop, k, limits)?;
                    props.insert(prop.to_owned(), value);
                }
                // Other Helicone-* keys (auth, cache, omit…) are not stored, as in the gateway.
            }
            None if key.is_empty() => {}
            None => {
                check_key(key, k, limits)?;
                props.insert(key.to_owned(), value);
            }
        }
    }
    if props.len() > limits.max_properties {
        return Err(format!(
            "{} association properties; at most {} are allowed (ingest.max_properties)",
            props.len(),
            limits.max_properties
        ));
    }
    let user_id = user_id.or_else(|| first_str(a, &["user.id", "enduser.id"]).map(str::to_owned));
    let [session_id, session_path, session_name] = session;
    let session_id =
        session_id.or_else(|| first_str(a, &["gen_ai.conversation.id"]).map(str::to_owned));
    Ok(Association {
        user_id,
        session_id,
        session_path,
        session_name,
        properties: props,
    })
}

/// Attributes that hold an LLM call's prompts and completions: on an LLM span they are already
/// the request record's bodies, so the span row does not store them twice.
fn is_body_attribute(key: &str) -> bool {
    matches!(
        key,
        "gen_ai.input.messages"
            | "gen_ai.output.messages"
            | "gen_ai.system_instructions"
            | "gen_ai.tool.definitions"
    ) || key.starts_with("gen_ai.prompt.")
        || key.starts_with("gen_ai.completion.")
}

/// Key/value attributes as one JSON object (OTel values as JSON values; a repeated key keeps
/// its last value, as OTel specifies).
fn attrs_json<'a>(
    kvs: impl Iterator<Item = &'a opentelemetry_proto::tonic::common::v1::KeyValue>,
) -> String {
    let mut m = Map::new();
    for kv in kvs {
        if let Some(v) = &kv.value {
            m.insert(kv.key.clone(), attrs::to_json(v));
        }
    }
    Value::Object(m).to_string()
}

const SPAN_KINDS: &[&str] = &[
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

/// The `spans` row of a span (`rec`: its request record when it is an LLM call).
fn span_row(
    span: &Span,
    resource: &Attrs<'_>,
    resource_json: &str,
    scope: Option<&str>,
    rec: Option<&RequestRecord>,
    ctx: &IngestContext,
) -> Result<SpanRecord, String> {
    let limits = ctx.limits;
    let trace_id = hex::encode(&span.trace_id);
    let span_id = hex::encode(&span.span_id);
    let (_, created, completed, duration_ms) = span_times(span, ctx)?;
    let a = by_key(&span.attributes);
    let assoc = association(&a, limits)?;
    let attributes = attrs_json(
        span.attributes
            .iter()
            .filter(|kv| rec.is_none() || !is_body_attribute(&kv.key)),
    );
    let events = (!span.events.is_empty()).then(|| {
        Value::Array(
            span.events
                .iter()
                .map(|e| {
                    json!({
                        "name": e.name,
                        "time": from_nanos(e.time_unix_nano).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
                        "attributes": serde_json::from_str::<Value>(&attrs_json(e.attributes.iter())).unwrap_or(Value::Null),
                    })
                })
                .collect(),
        )
        .to_string()
    });
    let links = (!span.links.is_empty()).then(|| {
        Value::Array(
            span.links
                .iter()
                .map(|l| {
                    json!({
                        "trace_id": hex::encode(&l.trace_id),
                        "span_id": hex::encode(&l.span_id),
                        "attributes": serde_json::from_str::<Value>(&attrs_json(l.attributes.iter())).unwrap_or(Value::Null),
                    })
                })
                .collect(),
        )
        .to_string()
    });
    for (name, v) in [
        ("attributes", Some(&attributes)),
        ("events", events.as_ref()),
        ("links", links.as_ref()),
    ] {
        if let Some(v) = v
            && v.len() > limits.max_body_field_len
        {
            return Err(format!(
                "the span's {name} are {} bytes as JSON; at most {} are stored (ingest.max_body_field_len)",
                v.len(),
                limits.max_body_field_len
            ));
        }
    }
    let (status, status_message) = match span.status.as_ref() {
        Some(st) => (
            match st.code {
                1 => "ok",
                2 => "error",
                _ => "unset",
            },
            Some(st.message.clone()).filter(|m| !m.is_empty()),
        ),
        None => ("unset", None),
    };
    let uid = request_id_for(&trace_id, &span_id);
    Ok(SpanRecord {
        span_uid: uid,
        org_id: ctx.org_id.clone(),
        parent_span_id: (!span.parent_span_id.is_empty())
            .then(|| hex::encode(&span.parent_span_id)),
        trace_id,
        span_id,
        created_at: created,
        completed_at: completed,
        duration_ms,
        name: span.name.clone(),
        kind: SPAN_KINDS
            .get(usize::try_from(span.kind).unwrap_or(0))
            .copied()
            .unwrap_or("unspecified")
            .to_owned(),
        status: status.to_owned(),
        status_message,
        service_name: resource
            .get("service.name")
            .and_then(|v| attrs::to_property(v)),
        scope_name: scope.map(str::to_owned),
        request_id: rec.map(|r| r.request_id),
        user_id: rec.and_then(|r| r.user_id.clone()).or(assoc.user_id),
        session_id: rec.and_then(|r| r.session_id.clone()).or(assoc.session_id),
        session_path: rec
            .and_then(|r| r.session_path.clone())
            .or(assoc.session_path),
        session_name: rec
            .and_then(|r| r.session_name.clone())
            .or(assoc.session_name),
        properties: assoc.properties,
        attributes,
        resource: resource_json.to_owned(),
        events,
        links,
    })
}

fn check_key(key: &str, attr: &str, limits: crate::IngestLimits) -> Result<(), String> {
    if key.len() > limits.max_property_key_len {
        return Err(format!(
            "{attr}: the property name is {} bytes; at most {} are allowed (ingest.max_property_key_len)",
            key.len(),
            limits.max_property_key_len
        ));
    }
    Ok(())
}

fn is_mapped(key: &str) -> bool {
    KNOWN.contains(&key)
        || key.starts_with(ASSOCIATION)
        || key.starts_with("gen_ai.prompt.")
        || key.starts_with("gen_ai.completion.")
}

/// Time to first token: `gen_ai.response.time_to_first_chunk` (seconds), else the first
/// streamed-chunk span event (`gen_ai.content.completion.chunk`, legacy `llm.…`).
fn ttft(span: &Span, a: &Attrs<'_>, start: Option<DateTime<Utc>>) -> Option<i64> {
    if let Some(s) = a
        .get("gen_ai.response.time_to_first_chunk")
        .and_then(|v| attrs::as_f64(v))
        && (0.0..1.0e9).contains(&s)
    {
        return Some((s * 1000.0).round() as i64);
    }
    let start = start?;
    let first = span
        .events
        .iter()
        .filter(|e| e.name.ends_with(".completion.chunk"))
        .filter_map(|e| from_nanos(e.time_unix_nano))
        .min()?;
    let us = (first - start).num_microseconds()?;
    (us >= 0).then_some((us + 500) / 1000)
}

/// Legacy flat attributes `<prefix>.{i}.<field>` grouped by index.
fn indexed<'a>(a: &Attrs<'a>, prefix: &'a str) -> BTreeMap<u32, BTreeMap<&'a str, &'a AnyValue>> {
    let mut out: BTreeMap<u32, BTreeMap<&str, &AnyValue>> = BTreeMap::new();
    for (k, v) in a.range(prefix..) {
        let Some(rest) = k.strip_prefix(prefix) else {
            break;
        };
        let Some((i, field)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(i) = i.parse::<u32>() {
            out.entry(i).or_default().insert(field, v);
        }
    }
    out
}

/// Legacy OpenLLMetry messages (`gen_ai.prompt.{i}.*`, `gen_ai.completion.{i}.*`) in the OTel
/// message format: `{role, parts: [{type: text|tool_call|tool_call_response, …}], finish_reason?}`.
fn legacy_messages(a: &Attrs<'_>, prefix: &str, output: bool) -> Option<Value> {
    let groups = indexed(a, prefix);
    if groups.is_empty() {
        return None;
    }
    let mut msgs = Vec::with_capacity(groups.len());
    for fields in groups.values() {
        let get = |f: &str| fields.get(f).and_then(|v| attrs::to_property(v));
        let role =
            get("role").unwrap_or_else(|| if output { "assistant" } else { "user" }.to_owned());
        let mut parts = Vec::new();
        if let Some(content) = get("content").filter(|c| !c.is_empty()) {
            match get("tool_call_id") {
                Some(id) if role == "tool" => parts.push(json!({
                    "type": "tool_call_response", "id": id, "response": content
                })),
                _ => parts.push(json!({"type": "text", "content": content})),
            }
        }
        let calls = indexed(fields, "tool_calls.");
        for call in calls.values() {
            let mut part = Map::new();
            part.insert("type".into(), json!("tool_call"));
            if let Some(id) = call.get("id").and_then(|v| attrs::to_property(v)) {
                part.insert("id".into(), json!(id));
            }
            if let Some(name) = call.get("name").and_then(|v| attrs::to_property(v)) {
                part.insert("name".into(), json!(name));
            }
            if let Some(args) = call.get("arguments") {
                part.insert("arguments".into(), attrs::structured(args));
            }
            parts.push(Value::Object(part));
        }
        let mut m = Map::new();
        m.insert("role".into(), json!(role));
        m.insert("parts".into(), Value::Array(parts));
        if output && let Some(fr) = get("finish_reason") {
            m.insert("finish_reason".into(), json!(fr));
        }
        msgs.push(Value::Object(m));
    }
    Some(Value::Array(msgs))
}

fn request_body(a: &Attrs<'_>) -> Option<String> {
    let mut body = Map::new();
    let messages = a
        .get("gen_ai.input.messages")
        .map(|v| attrs::structured(v))
        .or_else(|| legacy_messages(a, "gen_ai.prompt.", false));
    if let Some(m) = messages {
        body.insert("messages".into(), m);
    }
    if let Some(v) = a.get("gen_ai.system_instructions") {
        body.insert("system_instructions".into(), attrs::structured(v));
    }
    if let Some(v) = a.get("gen_ai.tool.definitions") {
        body.insert("tool_definitions".into(), attrs::structured(v));
    }
    (!body.is_empty()).then(|| Value::Object(body).to_string())
}

fn response_body(a: &Attrs<'_>, resp_model: Option<&str>) -> Option<String> {
    let mut body = Map::new();
    if let Some(id) = first_str(a, &["gen_ai.response.id"]) {
        body.insert("id".into(), json!(id));
    }
    if let Some(m) = resp_model {
        body.insert("model".into(), json!(m));
    }
    if let Some(fr) = a.get("gen_ai.response.finish_reasons") {
        body.insert("finish_reasons".into(), attrs::to_json(fr));
    }
    let messages = a
        .get("gen_ai.output.messages")
        .map(|v| attrs::structured(v))
        .or_else(|| legacy_messages(a, "gen_ai.completion.", true));
    if let Some(m) = messages {
        body.insert("messages".into(), m);
    }
    (!body.is_empty()).then(|| Value::Object(body).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers() {
        assert_eq!(provider_id("az.ai.openai"), "azure");
        assert_eq!(provider_id("OpenAI"), "openai");
        assert_eq!(provider_id("gcp.gemini"), "gemini");
        assert_eq!(provider_id(""), "unknown");
    }

    #[test]
    fn request_ids_are_deterministic() {
        let a = request_id_for("CAD7573A32225DED0FE64C26013705F0", "c347d585cdbed6ea");
        let b = request_id_for("cad7573a32225ded0fe64c26013705f0", "c347d585cdbed6ea");
        assert_eq!(a, b);
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(
            a,
            request_id_for("cad7573a32225ded0fe64c26013705f0", "c347d585cdbed6eb")
        );
    }

    #[test]
    fn nanos() {
        assert_eq!(from_nanos(0), None);
        assert!(from_nanos(u64::MAX).is_some());
    }
}
