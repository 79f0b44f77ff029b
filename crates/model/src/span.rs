//! The `spans` table: every OpenTelemetry span Loupe receives (workflows, tasks, agents, tools,
//! HTTP calls and the LLM calls themselves), so a trace or session can be shown as a tree. An LLM
//! span is also a request record; `request_id` links the two (the request's id is derived from
//! the trace and span ids, so the link holds without a lookup).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Int64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ModelError;
use crate::schema::{PARTITION_COLUMN, day_of, map_names, properties_type, ts};

/// One span as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// UUIDv5 of `<trace_id>:<span_id>`: the span's identity for deduplication (an exporter
    /// that re-sends a batch stores nothing twice).
    pub span_uid: Uuid,
    pub org_id: String,
    /// Lower-case hex, 32 characters.
    pub trace_id: String,
    /// Lower-case hex, 16 characters.
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    /// Start of the span (`startTimeUnixNano`; the end or the receive time when it is missing).
    pub created_at: DateTime<Utc>,
    /// End of the span (`endTimeUnixNano`; the start when it is missing).
    pub completed_at: DateTime<Utc>,
    /// `completed_at - created_at`, rounded to the millisecond.
    pub duration_ms: i64,
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`.
    pub kind: String,
    /// `unset`, `ok` or `error`.
    pub status: String,
    pub status_message: Option<String>,
    /// The resource's `service.name`.
    pub service_name: Option<String>,
    /// The instrumentation scope (`opentelemetry.instrumentation.openai.v1`, …).
    pub scope_name: Option<String>,
    /// The request record of this span when it is an LLM call.
    pub request_id: Option<Uuid>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub session_path: Option<String>,
    pub session_name: Option<String>,
    /// Traceloop association properties (Helicone-Property-* mapped as the gateway maps them).
    pub properties: BTreeMap<String, String>,
    /// Every span attribute, as a JSON object (OTel values as JSON values).
    pub attributes: String,
    /// The resource's attributes, as a JSON object.
    pub resource: String,
    /// Span events (`[{name, time, attributes}]`), `None` when there are none.
    pub events: Option<String>,
    /// Span links (`[{trace_id, span_id, attributes}]`), `None` when there are none.
    pub links: Option<String>,
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    let f = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    Arc::new(Schema::new(vec![
        f("span_uid", Utf8, false),
        f("org_id", Utf8, false),
        f("trace_id", Utf8, false),
        f("span_id", Utf8, false),
        f("parent_span_id", Utf8, true),
        f("created_at", ts(), false),
        f("completed_at", ts(), false),
        f("duration_ms", Int64, false),
        f("name", Utf8, false),
        f("kind", Utf8, false),
        f("status", Utf8, false),
        f("status_message", Utf8, true),
        f("service_name", Utf8, true),
        f("scope_name", Utf8, true),
        f("request_id", Utf8, true),
        f("is_llm", Boolean, false),
        f("user_id", Utf8, true),
        f("session_id", Utf8, true),
        f("session_path", Utf8, true),
        f("session_name", Utf8, true),
        f("properties", properties_type(), false),
        f("attributes", Utf8, false),
        f("resource", Utf8, false),
        f("events", Utf8, true),
        f("links", Utf8, true),
        f(PARTITION_COLUMN, Date32, false),
    ]))
});

/// The schema of the `spans` table as written (the partition column `day` is last).
pub fn spans_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// Builds one record batch (schema [`spans_schema`]) from spans.
pub fn spans_to_batch(spans: &[SpanRecord]) -> Result<RecordBatch, ModelError> {
    let n = spans.len();
    let strs = || StringBuilder::with_capacity(n, n * 16);
    let (mut uid, mut org, mut trace, mut span, mut parent) =
        (strs(), strs(), strs(), strs(), strs());
    let mut created = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut completed = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut duration = Int64Builder::with_capacity(n);
    let (mut name, mut kind, mut status, mut status_message) = (strs(), strs(), strs(), strs());
    let (mut service, mut scope, mut request_id) = (strs(), strs(), strs());
    let mut is_llm = BooleanBuilder::with_capacity(n);
    let (mut user, mut session_id, mut session_path, mut session_name) =
        (strs(), strs(), strs(), strs());
    let mut properties = MapBuilder::new(
        Some(map_names()),
        StringBuilder::new(),
        StringBuilder::new(),
    )
    .with_keys_field(Arc::new(Field::new("key", DataType::Utf8, false)))
    .with_values_field(Arc::new(Field::new("value", DataType::Utf8, true)));
    let (mut attributes, mut resource, mut events, mut links) = (strs(), strs(), strs(), strs());
    let mut day = Date32Builder::with_capacity(n);
    let mut buf = Uuid::encode_buffer();
    for s in spans {
        uid.append_value(s.span_uid.hyphenated().encode_lower(&mut buf));
        org.append_value(&s.org_id);
        trace.append_value(&s.trace_id);
        span.append_value(&s.span_id);
        parent.append_option(s.parent_span_id.as_deref());
        created.append_value(s.created_at.timestamp_micros());
        completed.append_value(s.completed_at.timestamp_micros());
        duration.append_value(s.duration_ms);
        name.append_value(&s.name);
        kind.append_value(&s.kind);
        status.append_value(&s.status);
        status_message.append_option(s.status_message.as_deref());
        service.append_option(s.service_name.as_deref());
        scope.append_option(s.scope_name.as_deref());
        match s.request_id {
            Some(id) => request_id.append_value(id.hyphenated().encode_lower(&mut buf)),
            None => request_id.append_null(),
        }
        is_llm.append_value(s.request_id.is_some());
        user.append_option(s.user_id.as_deref());
        session_id.append_option(s.session_id.as_deref());
        session_path.append_option(s.session_path.as_deref());
        session_name.append_option(s.session_name.as_deref());
        for (k, v) in &s.properties {
            properties.keys().append_value(k);
            properties.values().append_value(v);
        }
        properties.append(true)?;
        attributes.append_value(&s.attributes);
        resource.append_value(&s.resource);
        events.append_option(s.events.as_deref());
        links.append_option(s.links.as_deref());
        day.append_value(day_of(s.created_at));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(uid.finish()),
        Arc::new(org.finish()),
        Arc::new(trace.finish()),
        Arc::new(span.finish()),
        Arc::new(parent.finish()),
        Arc::new(created.finish()),
        Arc::new(completed.finish()),
        Arc::new(duration.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(status.finish()),
        Arc::new(status_message.finish()),
        Arc::new(service.finish()),
        Arc::new(scope.finish()),
        Arc::new(request_id.finish()),
        Arc::new(is_llm.finish()),
        Arc::new(user.finish()),
        Arc::new(session_id.finish()),
        Arc::new(session_path.finish()),
        Arc::new(session_name.finish()),
        Arc::new(properties.finish()),
        Arc::new(attributes.finish()),
        Arc::new(resource.finish()),
        Arc::new(events.finish()),
        Arc::new(links.finish()),
        Arc::new(day.finish()),
    ];
    Ok(RecordBatch::try_new(spans_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    fn span(i: u8, llm: bool) -> SpanRecord {
        let t = DateTime::from_timestamp(1_760_000_000 + i64::from(i), 0).unwrap_or_default();
        SpanRecord {
            span_uid: Uuid::from_u128(u128::from(i)),
            org_id: "o".into(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: format!("b7ad6b71692033{i:02x}"),
            parent_span_id: (i > 0).then(|| "b7ad6b7169203300".into()),
            created_at: t,
            completed_at: t,
            duration_ms: 0,
            name: "openai.chat".into(),
            kind: "client".into(),
            status: "unset".into(),
            status_message: None,
            service_name: Some("svc".into()),
            scope_name: None,
            request_id: llm.then(|| Uuid::from_u128(7)),
            user_id: None,
            session_id: Some("s1".into()),
            session_path: None,
            session_name: None,
            properties: BTreeMap::from([("env".into(), "prod".into())]),
            attributes: "{}".into(),
            resource: "{}".into(),
            events: None,
            links: None,
        }
    }

    #[test]
    fn batch_matches_schema_and_marks_llm_spans() {
        let b = spans_to_batch(&[span(0, false), span(1, true)]).expect("test");
        assert_eq!(b.schema(), spans_schema());
        assert_eq!(b.num_rows(), 2);
        let llm = b.column_by_name("is_llm").expect("test").as_boolean();
        assert!(!llm.value(0) && llm.value(1));
        let parent = b.column_by_name("parent_span_id").expect("test");
        assert!(parent.is_null(0) && !parent.is_null(1));
        let day = b
            .column_by_name("day")
            .expect("test")
            .as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(day.value(0), day_of(span(0, false).created_at));
    }
}
