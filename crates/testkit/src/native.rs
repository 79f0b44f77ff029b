//! Loupe's native ingest format (`POST /v1/ingest`, see `docs/ingest.md`).

use std::borrow::Borrow;
use std::io::{self, BufWriter, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use loupe_model::RequestRecord;
use serde_json::{Map, Value};

fn time(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn put_opt(obj: &mut Map<String, Value>, key: &str, v: &Option<String>) {
    if let Some(s) = v {
        obj.insert(key.to_owned(), Value::String(s.clone()));
    }
}

/// One record as a native ingest object.
///
/// Field names are the `RequestRecord` field names (= column names). `created_at` and
/// `completed_at` are RFC 3339 UTC with microseconds, `cost_usd` is a decimal string. `None`
/// fields and empty `properties` are left out. `org_id`, `source` and `price_known` are left out
/// too: the server sets them and rejects records that carry them (a sent `cost_usd` makes
/// `price_known` true; an unpriced model has no `cost_usd`, so the server derives `false`).
pub fn record_to_native_json(rec: &RequestRecord) -> Value {
    let mut o = Map::new();
    o.insert(
        "request_id".to_owned(),
        Value::String(rec.request_id.to_string()),
    );
    o.insert("created_at".to_owned(), time(rec.created_at));
    o.insert("completed_at".to_owned(), time(rec.completed_at));
    o.insert("latency_ms".to_owned(), rec.latency_ms.into());
    if let Some(t) = rec.ttft_ms {
        o.insert("ttft_ms".to_owned(), t.into());
    }
    o.insert("provider".to_owned(), Value::String(rec.provider.clone()));
    o.insert("model".to_owned(), Value::String(rec.model.clone()));
    put_opt(&mut o, "response_model", &rec.response_model);
    o.insert("path".to_owned(), Value::String(rec.path.clone()));
    o.insert("status".to_owned(), rec.status.into());
    put_opt(&mut o, "error_type", &rec.error_type);
    put_opt(&mut o, "error_message", &rec.error_message);
    o.insert("prompt_tokens".to_owned(), rec.prompt_tokens.into());
    o.insert("completion_tokens".to_owned(), rec.completion_tokens.into());
    o.insert("cache_read_tokens".to_owned(), rec.cache_read_tokens.into());
    o.insert(
        "cache_write_tokens".to_owned(),
        rec.cache_write_tokens.into(),
    );
    o.insert("reasoning_tokens".to_owned(), rec.reasoning_tokens.into());
    o.insert("total_tokens".to_owned(), rec.total_tokens.into());
    if let Some(c) = rec.cost_usd {
        o.insert("cost_usd".to_owned(), Value::String(c.to_string()));
    }
    put_opt(&mut o, "user_id", &rec.user_id);
    put_opt(&mut o, "session_id", &rec.session_id);
    put_opt(&mut o, "session_path", &rec.session_path);
    put_opt(&mut o, "session_name", &rec.session_name);
    if !rec.properties.is_empty() {
        let props = rec
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        o.insert("properties".to_owned(), Value::Object(props));
    }
    o.insert("cache_hit".to_owned(), rec.cache_hit.into());
    o.insert("stream".to_owned(), rec.stream.into());
    put_opt(&mut o, "trace_id", &rec.trace_id);
    put_opt(&mut o, "span_id", &rec.span_id);
    if !rec.upstream_headers.is_empty() {
        let h = rec
            .upstream_headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        o.insert("upstream_headers".to_owned(), Value::Object(h));
    }
    if !rec.attempts.is_empty()
        && let Ok(v) = serde_json::to_value(&rec.attempts)
    {
        o.insert("attempts".to_owned(), v);
    }
    if let Some(a) = rec.attempt {
        o.insert("attempt".to_owned(), a.into());
    }
    if let Some(i) = rec.fallback_index {
        o.insert("fallback_index".to_owned(), i.into());
    }
    if let Some(c) = rec.cost_saved_usd {
        o.insert("cost_saved_usd".to_owned(), Value::String(c.to_string()));
    }
    put_opt(&mut o, "request_body", &rec.request_body);
    put_opt(&mut o, "response_body", &rec.response_body);
    Value::Object(o)
}

/// Writes records as NDJSON (one [`record_to_native_json`] object per line, `\n`-terminated),
/// buffered, and flushes. Returns how many records were written.
///
/// Takes records or references to them, so `write_ndjson(&records, …)` and streaming straight
/// from a generator, `write_ndjson(generator, …)`, both work.
pub fn write_ndjson<I, W>(records: I, out: W) -> io::Result<u64>
where
    I: IntoIterator,
    I::Item: Borrow<RequestRecord>,
    W: Write,
{
    let mut w = BufWriter::with_capacity(1 << 16, out);
    let mut n = 0u64;
    for rec in records {
        serde_json::to_writer(&mut w, &record_to_native_json(rec.borrow()))?;
        w.write_all(b"\n")?;
        n += 1;
    }
    w.flush()?;
    Ok(n)
}
