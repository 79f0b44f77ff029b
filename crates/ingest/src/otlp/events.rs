//! OpenLLMetry event logs (`gen_ai.system.message`, `gen_ai.user.message`,
//! `gen_ai.assistant.message`, `gen_ai.tool.message`, `gen_ai.choice`) and their join to the
//! span's record by trace and span id.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use loupe_model::RequestRecord;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Map, Value, json};

use super::attrs::{self, by_key};
use super::spans::check_id;
use crate::IngestContext;
use crate::error::{IngestError, Problems, Scope};

/// The messages event logs carried for one span, in the OTel message format
/// (`{role, parts: […]}`; outputs add `finish_reason`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenAiEvents {
    /// System, user, assistant and tool messages sent (in the order they were logged).
    pub input: Vec<Value>,
    /// Choices, by choice index.
    pub output: Vec<(i64, Value)>,
}

impl GenAiEvents {
    fn merge(&mut self, other: GenAiEvents) {
        self.input.extend(other.input);
        self.output.extend(other.output);
        self.output.sort_by_key(|(i, _)| *i);
    }
}

/// Trace id and span id (lower-case hex) → the events of that span.
pub type SpanKey = (String, String);

/// What an `ExportLogsServiceRequest` turned into.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogsOutcome {
    /// GenAI events by span, in order of first appearance.
    pub events: Vec<(SpanKey, GenAiEvents)>,
    /// Log records that are not GenAI events (Loupe does not store them).
    pub other_logs: usize,
    /// GenAI events that cannot be joined (no trace/span id), and why.
    pub rejected: usize,
    pub reasons: Vec<String>,
}

impl LogsOutcome {
    /// Number of GenAI event log records in `events`.
    pub fn event_count(&self) -> usize {
        self.events
            .iter()
            .map(|(_, e)| e.input.len() + e.output.len())
            .sum()
    }
}

const EVENTS: &[&str] = &[
    "gen_ai.system.message",
    "gen_ai.user.message",
    "gen_ai.assistant.message",
    "gen_ai.tool.message",
    "gen_ai.choice",
];

/// Reads the GenAI events of `req`. Ids of the wrong length refuse the whole body.
pub fn map_logs(
    req: &ExportLogsServiceRequest,
    _ctx: &IngestContext,
) -> Result<LogsOutcome, IngestError> {
    let mut probs = Problems::new(Scope::Otlp);
    for (i, rl) in req.resource_logs.iter().enumerate() {
        for (j, sl) in rl.scope_logs.iter().enumerate() {
            for (k, log) in sl.log_records.iter().enumerate() {
                let at = format!("resourceLogs[{i}].scopeLogs[{j}].logRecords[{k}]");
                check_id(&mut probs, &at, "traceId", &log.trace_id, 16, true);
                check_id(&mut probs, &at, "spanId", &log.span_id, 8, true);
            }
        }
    }
    if !probs.is_empty() {
        return Err(probs.into_error());
    }
    let mut out = LogsOutcome::default();
    let mut index: HashMap<SpanKey, usize> = HashMap::new();
    for rl in &req.resource_logs {
        for sl in &rl.scope_logs {
            for log in &sl.log_records {
                let a = by_key(&log.attributes);
                let name = if log.event_name.is_empty() {
                    a.get("event.name")
                        .and_then(|v| attrs::as_str(v))
                        .unwrap_or("")
                } else {
                    log.event_name.as_str()
                };
                if !EVENTS.contains(&name) {
                    out.other_logs += 1;
                    continue;
                }
                if log.trace_id.is_empty() || log.span_id.is_empty() {
                    out.rejected += 1;
                    if out.reasons.len() < crate::MAX_PROBLEMS {
                        out.reasons.push(format!(
                            "a {name} event has no traceId/spanId, so it cannot be joined to its LLM span; \
                             emit it inside the span"
                        ));
                    }
                    continue;
                }
                let key = (hex::encode(&log.trace_id), hex::encode(&log.span_id));
                let ev = event(name, log);
                match index.get(&key) {
                    Some(&i) => out.events[i].1.merge(ev),
                    None => {
                        index.insert(key.clone(), out.events.len());
                        out.events.push((key, ev));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One event log as a message.
fn event(name: &str, log: &LogRecord) -> GenAiEvents {
    let body = log.body.as_ref().map(attrs::to_json).unwrap_or(Value::Null);
    let mut ev = GenAiEvents::default();
    if name == "gen_ai.choice" {
        let idx = body.get("index").and_then(Value::as_i64).unwrap_or(0);
        let msg = body.get("message").cloned().unwrap_or(Value::Null);
        let mut m = message(&msg, "assistant");
        if let (Some(fr), Value::Object(o)) = (body.get("finish_reason"), &mut m) {
            o.insert("finish_reason".into(), fr.clone());
        }
        ev.output.push((idx, m));
    } else {
        let role = name
            .strip_prefix("gen_ai.")
            .and_then(|r| r.strip_suffix(".message"))
            .unwrap_or("user");
        ev.input.push(message(&body, role));
    }
    ev
}

/// `{content, role?, tool_calls?, id?}` (the event body) → `{role, parts}`.
fn message(body: &Value, default_role: &str) -> Value {
    let role = body
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or(default_role);
    let mut parts = Vec::new();
    match body.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(content) => {
            if role == "tool" {
                let mut p = Map::new();
                p.insert("type".into(), json!("tool_call_response"));
                if let Some(id) = body.get("id") {
                    p.insert("id".into(), id.clone());
                }
                p.insert("response".into(), content.clone());
                parts.push(Value::Object(p));
            } else {
                parts.push(json!({"type": "text", "content": content}));
            }
        }
    }
    if let Some(Value::Array(calls)) = body.get("tool_calls") {
        for call in calls {
            let f = call.get("function").unwrap_or(call);
            let mut p = Map::new();
            p.insert("type".into(), json!("tool_call"));
            if let Some(id) = call.get("id") {
                p.insert("id".into(), id.clone());
            }
            if let Some(n) = f.get("name") {
                p.insert("name".into(), n.clone());
            }
            if let Some(args) = f.get("arguments") {
                let args = match args {
                    Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| args.clone()),
                    other => other.clone(),
                };
                p.insert("arguments".into(), args);
            }
            parts.push(Value::Object(p));
        }
    }
    json!({"role": role, "parts": parts})
}

/// Adds the events' messages to the record's bodies where the span carried none
/// (`request_body.messages`, `response_body.messages`). A body that would exceed
/// `ingest.max_body_field_len` is left as it was.
pub fn apply_events(rec: &mut RequestRecord, ev: &GenAiEvents, ctx: &IngestContext) {
    let max = ctx.limits.max_body_field_len;
    if !ev.input.is_empty() {
        set_messages(&mut rec.request_body, Value::Array(ev.input.clone()), max);
    }
    if !ev.output.is_empty() {
        let out = ev.output.iter().map(|(_, m)| m.clone()).collect();
        set_messages(&mut rec.response_body, Value::Array(out), max);
    }
}

fn set_messages(body: &mut Option<String>, messages: Value, max: usize) {
    let mut obj = match body.as_deref().map(serde_json::from_str::<Value>) {
        None => Map::new(),
        Some(Ok(Value::Object(o))) => o,
        Some(_) => return,
    };
    if obj.contains_key("messages") {
        return;
    }
    obj.insert("messages".into(), messages);
    let s = Value::Object(obj).to_string();
    if s.len() <= max {
        *body = Some(s);
    }
}

type JoinKey = (String, String, String);

/// Event logs waiting for their span, and the spans recently stored, per org. Bounded: at most
/// `max_spans` entries of each kind, each kept for `window`.
///
/// The join itself is memory; its durability comes from a journal the caller keeps (see
/// [`EventJoin::wait_entry`], [`EventJoin::done_entry`], [`EventJoin::restore`] and
/// [`EventJoin::live_entries`]): events are journaled before they are acknowledged, and a
/// restart rebuilds the join from the journal.
#[derive(Debug)]
pub struct EventJoin {
    waiting: HashMap<JoinKey, (DateTime<Utc>, GenAiEvents)>,
    waiting_order: VecDeque<(DateTime<Utc>, JoinKey)>,
    stored: HashMap<JoinKey, DateTime<Utc>>,
    stored_order: VecDeque<(DateTime<Utc>, JoinKey)>,
    max_spans: usize,
    window: Duration,
    /// Event log records dropped because their span did not arrive in time (or the join was
    /// full).
    expired_events: u64,
}

impl EventJoin {
    /// A join holding at most `max_spans` spans' events (and stored-span marks) for `window`.
    pub fn new(max_spans: usize, window: std::time::Duration) -> Self {
        EventJoin {
            waiting: HashMap::new(),
            waiting_order: VecDeque::new(),
            stored: HashMap::new(),
            stored_order: VecDeque::new(),
            max_spans: max_spans.max(1),
            window: Duration::from_std(window).unwrap_or(Duration::seconds(60)),
            expired_events: 0,
        }
    }

    fn expire(&mut self, now: DateTime<Utc>) {
        let cutoff = now - self.window;
        while let Some((t, _)) = self.waiting_order.front() {
            if *t >= cutoff && self.waiting_order.len() <= self.max_spans {
                break;
            }
            if let Some((t, k)) = self.waiting_order.pop_front()
                && self.waiting.get(&k).is_some_and(|(at, _)| *at == t)
                && let Some((_, ev)) = self.waiting.remove(&k)
            {
                self.expired_events += (ev.input.len() + ev.output.len()) as u64;
            }
        }
        while let Some((t, _)) = self.stored_order.front() {
            if *t >= cutoff && self.stored_order.len() <= self.max_spans {
                break;
            }
            if let Some((t, k)) = self.stored_order.pop_front()
                && self.stored.get(&k) == Some(&t)
            {
                self.stored.remove(&k);
            }
        }
    }

    /// Whether events of this span would be joined (its record is not stored yet).
    pub fn accepts(&mut self, org: &str, key: &SpanKey, now: DateTime<Utc>) -> bool {
        self.expire(now);
        !self
            .stored
            .contains_key(&(org.to_owned(), key.0.clone(), key.1.clone()))
    }

    /// Event log records dropped so far because their span did not arrive within the window.
    pub fn expired_events(&self) -> u64 {
        self.expired_events
    }

    /// The journal entry recording that events wait for their span.
    pub fn wait_entry(org: &str, key: &SpanKey, ev: &GenAiEvents, at: DateTime<Utc>) -> Value {
        json!({"op": "wait", "org": org, "trace": key.0, "span": key.1,
               "at": at.timestamp_micros(), "events": ev})
    }

    /// The journal entry recording that a span's record is durable.
    pub fn done_entry(org: &str, trace_id: &str, span_id: &str, at: DateTime<Utc>) -> Value {
        json!({"op": "done", "org": org, "trace": trace_id, "span": span_id,
               "at": at.timestamp_micros()})
    }

    /// Rebuilds the join from journal entries (in journal order); entries older than the
    /// window are skipped. Returns how many entries were not understood (ignored).
    pub fn restore(&mut self, entries: &[Value], now: DateTime<Utc>) -> usize {
        let mut bad = 0;
        for e in entries {
            let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
            let at = e
                .get("at")
                .and_then(Value::as_i64)
                .and_then(DateTime::<Utc>::from_timestamp_micros);
            let (Some(op), Some(org), Some(trace), Some(span), Some(at)) =
                (text("op"), text("org"), text("trace"), text("span"), at)
            else {
                bad += 1;
                continue;
            };
            if at < now - self.window {
                continue;
            }
            let k = (org, trace, span);
            match op.as_str() {
                "wait" => {
                    let Some(ev) = e
                        .get("events")
                        .and_then(|v| serde_json::from_value::<GenAiEvents>(v.clone()).ok())
                    else {
                        bad += 1;
                        continue;
                    };
                    if self.stored.contains_key(&k) {
                        continue;
                    }
                    match self.waiting.get_mut(&k) {
                        Some((_, old)) => old.merge(ev),
                        None => {
                            self.waiting.insert(k.clone(), (at, ev));
                            self.waiting_order.push_back((at, k));
                        }
                    }
                }
                "done" => {
                    self.waiting.remove(&k);
                    self.stored.insert(k.clone(), at);
                    self.stored_order.push_back((at, k));
                }
                _ => bad += 1,
            }
        }
        self.expire(now);
        bad
    }

    /// Journal entries equivalent to the join's current state (to rewrite the journal).
    pub fn live_entries(&self) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.waiting.len() + self.stored.len());
        for (at, k) in &self.stored_order {
            if self.stored.get(k) == Some(at) {
                out.push(Self::done_entry(&k.0, &k.1, &k.2, *at));
            }
        }
        for (at, k) in &self.waiting_order {
            if let Some((t, ev)) = self.waiting.get(k)
                && t == at
            {
                out.push(Self::wait_entry(&k.0, &(k.1.clone(), k.2.clone()), ev, *at));
            }
        }
        out
    }

    /// Keeps events until their span arrives. `false` if the span was already stored: the
    /// events can no longer be joined.
    pub fn offer(&mut self, org: &str, key: SpanKey, ev: GenAiEvents, now: DateTime<Utc>) -> bool {
        self.expire(now);
        let k = (org.to_owned(), key.0, key.1);
        if self.stored.contains_key(&k) {
            return false;
        }
        match self.waiting.get_mut(&k) {
            Some((_, old)) => old.merge(ev),
            None => {
                self.waiting.insert(k.clone(), (now, ev));
                self.waiting_order.push_back((now, k));
            }
        }
        self.expire(now);
        true
    }

    /// The events waiting for the span `trace_id`/`span_id`, if any (left in place until
    /// [`EventJoin::stored`]).
    pub fn get(
        &mut self,
        org: &str,
        trace_id: &str,
        span_id: &str,
        now: DateTime<Utc>,
    ) -> Option<GenAiEvents> {
        self.expire(now);
        self.waiting
            .get(&(org.to_owned(), trace_id.to_owned(), span_id.to_owned()))
            .map(|(_, e)| e.clone())
    }

    /// The span's record is durable: forget its events, remember the span.
    pub fn stored(&mut self, org: &str, trace_id: &str, span_id: &str, now: DateTime<Utc>) {
        let k = (org.to_owned(), trace_id.to_owned(), span_id.to_owned());
        self.waiting.remove(&k);
        if self.stored.insert(k.clone(), now).is_none() {
            self.stored_order.push_back((now, k));
        }
        self.expire(now);
    }

    /// Spans whose events are waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_is_bounded_and_expires() {
        let t0 = Utc::now();
        let mut j = EventJoin::new(2, std::time::Duration::from_secs(10));
        let ev = GenAiEvents {
            input: vec![json!({"role": "user", "parts": []})],
            output: vec![],
        };
        for i in 0..5 {
            assert!(j.offer("o", (format!("t{i}"), "s".into()), ev.clone(), t0));
        }
        assert_eq!(j.waiting(), 2);
        assert!(j.get("o", "t4", "s", t0).is_some());
        assert!(j.get("o", "t0", "s", t0).is_none());
        assert!(j.get("other", "t4", "s", t0).is_none());
        j.stored("o", "t4", "s", t0);
        assert!(!j.offer("o", ("t4".into(), "s".into()), ev.clone(), t0));
        let later = t0 + Duration::seconds(11);
        assert!(j.get("o", "t3", "s", later).is_none());
        assert!(j.offer("o", ("t4".into(), "s".into()), ev, later));
    }

    #[test]
    fn the_join_is_rebuilt_from_its_journal_entries() {
        let t0 = Utc::now();
        let ev = GenAiEvents {
            input: vec![json!({"role": "user", "parts": [{"type": "text", "content": "hi"}]})],
            output: vec![(0, json!({"role": "assistant", "parts": []}))],
        };
        let key = |t: &str| (t.to_owned(), "s".to_owned());
        let journal = vec![
            EventJoin::wait_entry("o", &key("t1"), &ev, t0),
            EventJoin::wait_entry("o", &key("t2"), &ev, t0),
            EventJoin::done_entry("o", "t2", "s", t0),
            // Too old to matter.
            EventJoin::wait_entry("o", &key("t3"), &ev, t0 - Duration::seconds(120)),
            json!({"op": "wait"}),
        ];
        let mut j = EventJoin::new(100, std::time::Duration::from_secs(60));
        assert_eq!(j.restore(&journal, t0), 1, "one entry not understood");
        assert_eq!(j.get("o", "t1", "s", t0), Some(ev.clone()));
        assert_eq!(j.get("o", "t2", "s", t0), None, "joined before the restart");
        assert!(!j.accepts("o", &key("t2"), t0), "its span is stored");
        assert_eq!(j.get("o", "t3", "s", t0), None);
        // The live entries rebuild the same join.
        let mut k = EventJoin::new(100, std::time::Duration::from_secs(60));
        assert_eq!(k.restore(&j.live_entries(), t0), 0);
        assert_eq!(k.get("o", "t1", "s", t0), Some(ev));
        assert!(!k.accepts("o", &key("t2"), t0));
        assert_eq!(k.live_entries().len(), 2);
        // Events whose span never comes are counted when they expire.
        k.expire(t0 + Duration::seconds(61));
        assert_eq!(k.expired_events(), 2);
        assert_eq!(k.waiting(), 0);
    }

    #[test]
    fn tool_calls_become_parts() {
        let body = json!({"content": null, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]});
        let m = message(&body, "assistant");
        assert_eq!(
            m,
            json!({"role": "assistant", "parts": [{"type": "tool_call", "id": "c1",
                "name": "get_weather", "arguments": {"city": "Paris"}}]})
        );
    }
}
