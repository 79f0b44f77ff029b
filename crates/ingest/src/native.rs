//! The native batch format of `POST /v1/ingest`: NDJSON, a JSON array of records, or one record.
//! Field names are the `requests` column names; see `docs/ingest.md`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use loupe_model::{RequestRecord, Usage};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{IngestError, Problems, Scope};
use crate::json::{
    self, as_decimal, as_integer, body_string, check_time_window, describe, edit_distance,
    join_key, syntax_message, to_snake_case, utf8_reason,
};
use crate::{IngestContext, finish_record};

/// Fields a native record may carry.
const FIELDS: &[&str] = &[
    "request_id",
    "created_at",
    "completed_at",
    "latency_ms",
    "ttft_ms",
    "provider",
    "model",
    "response_model",
    "path",
    "status",
    "error_type",
    "error_message",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "user_id",
    "session_id",
    "session_path",
    "session_name",
    "properties",
    "cache_hit",
    "stream",
    "trace_id",
    "span_id",
    "upstream_headers",
    "attempts",
    "attempt",
    "fallback_index",
    "cost_saved_usd",
    "request_body",
    "response_body",
];

/// Names other tools use for a field (snake_case) → the field.
const ALIASES: &[(&str, &str)] = &[
    ("id", "request_id"),
    ("input_tokens", "prompt_tokens"),
    ("output_tokens", "completion_tokens"),
    ("cached_tokens", "cache_read_tokens"),
    ("timestamp", "created_at"),
    ("start_time", "created_at"),
    ("end_time", "completed_at"),
    ("duration_ms", "latency_ms"),
    ("cost", "cost_usd"),
    ("metadata", "properties"),
    ("tags", "properties"),
    ("user", "user_id"),
];

const TOKEN_FIELDS: &[&str] = &[
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
];

/// Parses a `/v1/ingest` body into records, all or nothing.
///
/// The body is NDJSON (one record object per line, blank lines ignored), a JSON array of record
/// objects, or one record object. `Content-Type: application/x-ndjson` (also
/// `application/ndjson`, `application/jsonl`, `application/x-jsonlines`) forces NDJSON; with any
/// other or no content type the format is detected: a body starting with `[` is an array, one
/// starting with `{` is a single object unless its first line is a complete `{…}` and more lines
/// follow (then NDJSON).
///
/// If any record is invalid, no record is returned and the error lists the problems of every
/// invalid record (capped at [`crate::MAX_PROBLEMS`]). An explicit empty array `[]` gives an empty
/// vector; an empty body is an error.
pub fn parse_native(
    body: &[u8],
    content_type: Option<&str>,
    ctx: &IngestContext,
) -> Result<Vec<RequestRecord>, IngestError> {
    let body = json::strip_bom(body);
    let mut probs = Problems::new(Scope::Batch);
    let Some(first) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        probs.push(
            None,
            "body",
            "the body is empty; send at least one record (see docs/ingest.md)",
        );
        return Err(probs.into_error());
    };
    let records =
        if is_ndjson_type(content_type) || (body[first] == b'{' && looks_like_ndjson(body)) {
            parse_ndjson(body, ctx, &mut probs)
        } else {
            parse_json(body, ctx, &mut probs)
        };
    probs.finish(records)
}

fn is_ndjson_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        media.as_str(),
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonl"
            | "application/jsonlines"
            | "application/x-jsonlines"
    )
}

/// Non-blank lines with their 1-based line numbers, `\r\n` tolerated.
fn lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
}

/// True when the first non-blank line is a complete `{…}` and another non-blank line follows.
fn looks_like_ndjson(body: &[u8]) -> bool {
    let mut it = lines(body);
    let Some((_, first)) = it.next() else {
        return false;
    };
    let t = first.trim_ascii();
    t.starts_with(b"{") && t.ends_with(b"}") && it.next().is_some()
}

fn too_many_records(n: usize, ctx: &IngestContext, probs: &mut Problems) -> bool {
    let max = ctx.limits.max_records;
    if n > max {
        probs.push(
            None,
            "body",
            format!(
                "the batch has {n} records; at most {max} are accepted per request (ingest.max_records); split \
                 it into smaller batches"
            ),
        );
        return true;
    }
    false
}

fn parse_ndjson(body: &[u8], ctx: &IngestContext, probs: &mut Problems) -> Vec<RequestRecord> {
    if too_many_records(lines(body).count(), ctx, probs) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (n, line) in lines(body) {
        let loc = Loc::Line(n);
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                probs.push(
                    loc.index(),
                    loc.whole(),
                    format!("the line is {}", utf8_reason(line, &e, false)),
                );
                continue;
            }
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(obj)) => out.extend(record(&obj, loc, ctx, probs)),
            Ok(other) => probs.push(
                loc.index(),
                loc.whole(),
                format!(
                    "expected a record object (NDJSON is one JSON object per line), found {}{}",
                    describe(&other),
                    if other.is_array() {
                        "; to send a JSON array use Content-Type: application/json"
                    } else {
                        ""
                    }
                ),
            ),
            Err(e) => probs.push(
                loc.index(),
                loc.whole(),
                format!(
                    "malformed JSON at column {}: {}",
                    e.column(),
                    syntax_message(&e)
                ),
            ),
        }
    }
    out
}

fn parse_json(body: &[u8], ctx: &IngestContext, probs: &mut Problems) -> Vec<RequestRecord> {
    let value = match json::parse_value(body) {
        Ok(v) => v,
        Err(reason) => {
            let hint = if reason.contains("trailing characters") {
                "; to send one record per line use NDJSON with Content-Type: application/x-ndjson"
            } else {
                ""
            };
            probs.push(None, "body", format!("{reason}{hint}"));
            return Vec::new();
        }
    };
    match value {
        Value::Array(items) => {
            if too_many_records(items.len(), ctx, probs) {
                return Vec::new();
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let loc = Loc::Index(i);
                match item {
                    Value::Object(obj) => out.extend(record(obj, loc, ctx, probs)),
                    other => probs.push(
                        loc.index(),
                        loc.whole(),
                        format!("expected a record object, found {}", describe(other)),
                    ),
                }
            }
            out
        }
        Value::Object(obj) => record(&obj, Loc::Single, ctx, probs).into_iter().collect(),
        other => {
            probs.push(
                None,
                "body",
                format!(
                    "expected a record object, an array of record objects, or NDJSON, found {}",
                    describe(&other)
                ),
            );
            Vec::new()
        }
    }
}

/// Where a record sits in the body.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Single,
    Index(usize),
    Line(usize),
}

impl Loc {
    fn index(self) -> Option<usize> {
        match self {
            Loc::Single => None,
            Loc::Index(i) | Loc::Line(i) => Some(i),
        }
    }
    /// The path of the record itself.
    fn whole(self) -> String {
        match self {
            Loc::Single => "body".to_owned(),
            Loc::Index(i) => format!("records[{i}]"),
            Loc::Line(n) => format!("line {n}"),
        }
    }
    /// The path of a field of the record.
    fn field(self, name: &str) -> String {
        match self {
            Loc::Single => join_key("", name),
            Loc::Index(i) => join_key(&format!("records[{i}]"), name),
            Loc::Line(n) => join_key(&format!("line {n}, "), name),
        }
    }
}

/// Marker: the problem was already reported.
struct Reported;

/// `Ok(None)`: absent or `null`; `Err`: present but invalid (reported).
type Got<T> = Result<Option<T>, Reported>;

struct Reader<'a, 'p> {
    obj: &'a Map<String, Value>,
    loc: Loc,
    ctx: &'a IngestContext,
    probs: &'p mut Problems,
    before: usize,
}

impl<'a> Reader<'a, '_> {
    fn bad(&self) -> bool {
        self.probs.count() > self.before
    }

    fn report(&mut self, field: &str, reason: impl Into<String>) -> Reported {
        let path = self.loc.field(field);
        self.probs.push(self.loc.index(), path, reason);
        Reported
    }

    fn report_at(&mut self, path: String, reason: impl Into<String>) {
        self.probs.push(self.loc.index(), path, reason);
    }

    /// The value of a field; `null` counts as absent.
    fn value(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn string(&mut self, name: &str) -> Got<&'a str> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.report(
                name,
                format!("expected a string, found {}", describe(other)),
            )),
        }
    }

    fn boolean(&mut self, name: &str) -> Got<bool> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.report(
                name,
                format!("expected true or false, found {}", describe(other)),
            )),
        }
    }

    /// An integer in `min..=max`; `what` describes the accepted range ("an integer ≥ 0").
    fn int(&mut self, name: &str, min: i64, max: i64, what: &str) -> Got<i64> {
        let Some(v) = self.value(name) else {
            return Ok(None);
        };
        match as_integer(v) {
            Some(Ok(i)) if (min..=max).contains(&i) => Ok(Some(i)),
            Some(Ok(_)) => {
                Err(self.report(name, format!("expected {what}, found {}", describe(v))))
            }
            Some(Err(why)) => Err(self.report(
                name,
                format!("expected {what}, found {} which {why}", describe(v)),
            )),
            None => Err(self.report(name, format!("expected {what}, found {}", describe(v)))),
        }
    }

    fn count(&mut self, name: &str) -> Got<i64> {
        self.int(name, 0, i64::MAX, "an integer ≥ 0")
    }

    /// An RFC 3339 string or integer microseconds since the epoch, in the accepted window,
    /// truncated to microseconds.
    fn time(&mut self, name: &str) -> Got<DateTime<Utc>> {
        let Some(v) = self.value(name) else {
            return Ok(None);
        };
        let t = match v {
            Value::String(s) => match DateTime::parse_from_rfc3339(s.trim()) {
                Ok(t) => t.with_timezone(&Utc),
                Err(e) => {
                    return Err(self.report(
                        name,
                        format!(
                            "expected an RFC 3339 time such as \"2025-01-01T12:00:00.123Z\" or integer \
                             microseconds since the Unix epoch, found {} ({e})",
                            describe(v)
                        ),
                    ));
                }
            },
            Value::Number(_) => match as_integer(v) {
                Some(Ok(us)) => match json::from_micros(us) {
                    // In range, or out of range without a likelier unit: the window check below
                    // words the problem.
                    Some(t)
                        if check_time_window(t, self.ctx.now).is_ok()
                            || unit_hint(us).is_empty() =>
                    {
                        t
                    }
                    _ => {
                        return Err(self.report(
                            name,
                            format!(
                                "{} is not a valid time: integers are microseconds since the Unix epoch{}",
                                describe(v),
                                unit_hint(us)
                            ),
                        ));
                    }
                },
                _ => {
                    return Err(self.report(
                        name,
                        format!(
                            "expected integer microseconds since the Unix epoch, found {}",
                            describe(v)
                        ),
                    ));
                }
            },
            other => {
                return Err(self.report(
                    name,
                    format!(
                        "expected an RFC 3339 time string or integer microseconds since the Unix epoch, found {}",
                        describe(other)
                    ),
                ));
            }
        };
        if let Err(why) = check_time_window(t, self.ctx.now) {
            return Err(self.report(name, why));
        }
        Ok(Some(t.trunc_subsecs(6)))
    }
}

/// A guess at the unit of an integer time that is not microseconds.
fn unit_hint(v: i64) -> &'static str {
    match v.unsigned_abs() {
        1_000_000_000..=99_999_999_999 => " (this looks like seconds; multiply by 1000000)",
        1_000_000_000_000..=99_999_999_999_999 => {
            " (this looks like milliseconds; multiply by 1000)"
        }
        1_000_000_000_000_000_000..=u64::MAX => " (this looks like nanoseconds; divide by 1000)",
        _ => "",
    }
}

fn unknown_field_reason(key: &str) -> String {
    let snake = to_snake_case(key);
    match snake.as_str() {
        "org_id" | "organization_id" => {
            return "org_id comes from the API key; remove it (records are stored under the key's organisation)"
                .to_owned();
        }
        "source" => {
            return "source is set by Loupe (\"async\" for /v1/ingest); remove it".to_owned();
        }
        "price_known" => {
            return "price_known is derived: it is true when cost_usd is given or the model has a price; remove it"
                .to_owned();
        }
        _ => {}
    }
    let hint = if FIELDS.contains(&snake.as_str()) {
        Some(snake.as_str())
    } else if let Some((_, f)) = ALIASES.iter().find(|(alias, _)| *alias == snake) {
        Some(*f)
    } else if let [only] = FIELDS
        .iter()
        .filter(|f| {
            f.strip_prefix(snake.as_str())
                .is_some_and(|rest| rest.starts_with('_'))
        })
        .collect::<Vec<_>>()[..]
    {
        Some(*only)
    } else {
        // Only names within 2 of a field's length can be within edit distance 2 (this also
        // keeps the cost bounded for absurdly long keys).
        FIELDS
            .iter()
            .filter(|f| key.len().abs_diff(f.len()) <= 2)
            .map(|f| (edit_distance(key, f), *f))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, f)| f)
    };
    match hint {
        Some(h) => format!(
            "unknown field; did you mean \"{h}\"? (field names are the column names, in snake_case)"
        ),
        None => "unknown field; the accepted fields are listed in docs/ingest.md".to_owned(),
    }
}

/// Validates one record object; `None` if it had problems (all reported).
fn record(
    obj: &Map<String, Value>,
    loc: Loc,
    ctx: &IngestContext,
    probs: &mut Problems,
) -> Option<RequestRecord> {
    let before = probs.count();
    let mut r = Reader {
        obj,
        loc,
        ctx,
        probs,
        before,
    };

    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            let path = loc.field(key);
            r.report_at(path, unknown_field_reason(key));
        }
    }

    let request_id = match r.string("request_id") {
        Ok(None) => Some(Uuid::new_v4()),
        Ok(Some(s)) => match Uuid::parse_str(s.trim()) {
            Ok(u) if u.is_nil() => {
                r.report(
                    "request_id",
                    "the nil UUID cannot identify a request; send a unique UUID or omit it",
                );
                None
            }
            Ok(u) => Some(u),
            Err(_) => {
                r.report(
                    "request_id",
                    format!(
                        "expected a UUID such as \"0b7f3c1e-5d2a-4c1b-9f7e-2a6d1c9e8b10\", found {}",
                        json::quote_short(s)
                    ),
                );
                None
            }
        },
        Err(Reported) => None,
    };

    let created_at = match r.time("created_at") {
        Ok(Some(t)) => Some(t),
        Ok(None) => {
            r.report(
                "created_at",
                "missing; every record needs the time the request started (RFC 3339 string or integer \
                 microseconds)",
            );
            None
        }
        Err(Reported) => None,
    };
    let completed_at = r.time("completed_at");
    let latency_ms = r.count("latency_ms");
    let ttft_ms = r.count("ttft_ms");

    let model = match r.string("model") {
        Ok(Some(m)) if !m.trim().is_empty() => Some(m.to_owned()),
        Ok(Some(_)) => {
            r.report(
                "model",
                "must not be empty; send the model name, e.g. \"gpt-4o-mini\"",
            );
            None
        }
        Ok(None) => {
            r.report(
                "model",
                "missing; every record needs the model name, e.g. \"gpt-4o-mini\"",
            );
            None
        }
        Err(Reported) => None,
    };
    let provider = match r.string("provider") {
        Ok(Some(p)) if p.trim().is_empty() => {
            r.report(
                "provider",
                "must not be empty; omit it to derive it from the model",
            );
            None
        }
        Ok(p) => p.map(|p| p.trim().to_ascii_lowercase()),
        Err(Reported) => None,
    };

    let response_model = r.string("response_model");
    let path = r.string("path");
    let status = r.int("status", 0, 999, "an HTTP status code between 0 and 999");
    let error_type = r.string("error_type");
    let error_message = r.string("error_message");

    let prompt = r.count("prompt_tokens");
    let completion = r.count("completion_tokens");
    let cache_read = r.count("cache_read_tokens");
    let cache_write = r.count("cache_write_tokens");
    let reasoning = r.count("reasoning_tokens");
    let total = r.count("total_tokens");

    let cost_usd = match r.value("cost_usd") {
        None => Ok(None),
        Some(v) => match as_decimal(v) {
            Ok(d) if d.is_sign_negative() && !d.is_zero() => {
                Err(r.report("cost_usd", format!("must be ≥ 0, found {}", describe(v))))
            }
            Ok(d) => Ok(Some(d)),
            Err(why) => Err(r.report("cost_usd", why)),
        },
    };

    let user_id = r.string("user_id");
    let session_id = r.string("session_id");
    let session_path = r.string("session_path");
    let session_name = r.string("session_name");
    let properties = string_map(&mut r, "properties");
    let upstream_headers = string_map(&mut r, "upstream_headers");
    let attempts = attempts_field(&mut r);
    let attempt = r.int("attempt", 1, i64::from(i32::MAX), "an integer ≥ 1");
    let fallback_index = r.int("fallback_index", 0, i64::from(i32::MAX), "an integer ≥ 0");
    let cost_saved_usd = match r.value("cost_saved_usd") {
        None => Ok(None),
        Some(v) => match as_decimal(v) {
            Ok(d) if d.is_sign_negative() && !d.is_zero() => Err(r.report(
                "cost_saved_usd",
                format!("must be ≥ 0, found {}", describe(v)),
            )),
            Ok(d) => Ok(Some(d)),
            Err(why) => Err(r.report("cost_saved_usd", why)),
        },
    };
    let cache_hit = r.boolean("cache_hit");
    let stream = r.boolean("stream");
    let trace_id = hex_id(&mut r, "trace_id", 32);
    let span_id = hex_id(&mut r, "span_id", 16);
    let request_body = body_field(&mut r, "request_body");
    let response_body = body_field(&mut r, "response_body");

    // Times: derive the missing one of completed_at / latency_ms.
    let mut timing = None;
    if let (Some(created), Ok(completed), Ok(latency)) = (created_at, &completed_at, &latency_ms) {
        timing = derive_timing(&mut r, created, *completed, *latency);
    }
    if let (Some((_, latency)), Ok(Some(ttft))) = (timing, &ttft_ms)
        && *ttft > latency
    {
        r.report(
            "ttft_ms",
            format!(
                "the time to first token ({ttft} ms) is longer than the request ({latency} ms)"
            ),
        );
    }

    // Token counts: OpenAI semantics, cached and reasoning tokens are subsets.
    let p = prompt.as_ref().ok().copied().flatten().unwrap_or(0);
    let c = completion.as_ref().ok().copied().flatten().unwrap_or(0);
    let cr = cache_read.as_ref().ok().copied().flatten().unwrap_or(0);
    let cw = cache_write.as_ref().ok().copied().flatten().unwrap_or(0);
    let rs = reasoning.as_ref().ok().copied().flatten().unwrap_or(0);
    let prompt_ok = prompt.is_ok() && cache_read.is_ok() && cache_write.is_ok();
    if prompt_ok && cr.checked_add(cw).is_none_or(|cached| cached > p) {
        r.report(
            if cw > 0 { "cache_write_tokens" } else { "cache_read_tokens" },
            format!(
                "cache_read_tokens + cache_write_tokens ({cr} + {cw}) exceed prompt_tokens ({p}); prompt_tokens \
                 must include cached tokens (for Anthropic: input_tokens + cache_read_input_tokens + \
                 cache_creation_input_tokens)"
            ),
        );
    }
    if completion.is_ok() && reasoning.is_ok() && rs > c {
        r.report(
            "reasoning_tokens",
            format!(
                "reasoning_tokens ({rs}) exceed completion_tokens ({c}); completion_tokens must include reasoning \
                 tokens (for Gemini: candidatesTokenCount + thoughtsTokenCount)"
            ),
        );
    }
    let total = match total {
        Ok(Some(t)) => Some(t),
        Ok(None) => match p.checked_add(c) {
            Some(t) => Some(t),
            None => {
                r.report(
                    "total_tokens",
                    "prompt_tokens + completion_tokens is too large for a 64-bit integer",
                );
                None
            }
        },
        Err(Reported) => None,
    };

    if r.bad() {
        return None;
    }
    let (request_id, created_at, model, (completed_at, latency_ms), total) =
        (request_id?, created_at?, model?, timing?, total?);

    let provider = provider.unwrap_or_else(|| provider_from_model(&model));
    let status = status.ok().flatten().unwrap_or(200) as i32;
    let usage = Usage {
        prompt_tokens: p,
        completion_tokens: c,
        cache_read_tokens: cr,
        cache_write_tokens: cw,
        cache_write_1h_tokens: 0,
        reasoning_tokens: rs,
        total_tokens: total,
    };
    let tokens_given = TOKEN_FIELDS
        .iter()
        .any(|f| obj.get(*f).is_some_and(|v| !v.is_null()));
    let (cost_usd, price_known) = match cost_usd.ok().flatten() {
        Some(d) => (Some(d), true),
        // A successful call whose usage we do not know has an unknown cost, not a zero one.
        None if !tokens_given && status < 400 => (None, false),
        None => {
            let cost = ctx.prices.cost(&provider, &model, &usage);
            let known = cost.usd.is_some();
            (cost.usd, known)
        }
    };

    let mut rec = RequestRecord::new(request_id, ctx.org_id.clone(), created_at);
    rec.completed_at = completed_at;
    rec.latency_ms = latency_ms;
    rec.ttft_ms = ttft_ms.ok().flatten();
    rec.provider = provider;
    rec.model = model;
    rec.response_model = response_model.ok().flatten().map(str::to_owned);
    rec.path = path.ok().flatten().unwrap_or("").to_owned();
    rec.status = status;
    rec.error_type = error_type.ok().flatten().map(str::to_owned);
    rec.error_message = error_message.ok().flatten().map(str::to_owned);
    rec.prompt_tokens = p;
    rec.completion_tokens = c;
    rec.cache_read_tokens = cr;
    rec.cache_write_tokens = cw;
    rec.reasoning_tokens = rs;
    rec.total_tokens = total;
    rec.cost_usd = cost_usd;
    rec.price_known = price_known;
    rec.user_id = user_id.ok().flatten().map(str::to_owned);
    rec.session_id = session_id.ok().flatten().map(str::to_owned);
    rec.session_path = session_path.ok().flatten().map(str::to_owned);
    rec.session_name = session_name.ok().flatten().map(str::to_owned);
    rec.properties = properties.ok().flatten().unwrap_or_default();
    rec.cache_hit = cache_hit.ok().flatten().unwrap_or(false);
    rec.stream = stream.ok().flatten().unwrap_or(false);
    rec.trace_id = trace_id.ok().flatten();
    rec.span_id = span_id.ok().flatten();
    rec.upstream_headers = upstream_headers.ok().flatten().unwrap_or_default();
    rec.attempts = attempts.ok().flatten().unwrap_or_default();
    rec.attempt = attempt.ok().flatten().and_then(|a| i32::try_from(a).ok());
    rec.fallback_index = fallback_index
        .ok()
        .flatten()
        .and_then(|a| i32::try_from(a).ok());
    rec.cost_saved_usd = cost_saved_usd.ok().flatten();
    rec.request_body = request_body.ok().flatten();
    rec.response_body = response_body.ok().flatten();
    Some(finish_record(rec, ctx))
}

/// Most failed attempts a record may list.
const MAX_ATTEMPTS: usize = 64;

/// `attempts`: an array of `{attempt, fallback_index, provider, model, status, error_type?,
/// error?, latency_ms, backoff_ms?}` (the gateway's failed attempts).
fn attempts_field(r: &mut Reader<'_, '_>) -> Got<Vec<loupe_model::Attempt>> {
    let Some(v) = r.value("attempts") else {
        return Ok(None);
    };
    let Value::Array(items) = v else {
        return Err(r.report(
            "attempts",
            format!(
                "expected an array of attempt objects, found {}",
                describe(v)
            ),
        ));
    };
    if items.len() > MAX_ATTEMPTS {
        return Err(r.report(
            "attempts",
            format!(
                "{} attempts; at most {MAX_ATTEMPTS} are allowed per record",
                items.len()
            ),
        ));
    }
    let base = r.loc.field("attempts");
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match serde_json::from_value::<loupe_model::Attempt>(item.clone()) {
            Ok(a) => out.push(a),
            Err(e) => {
                r.report_at(
                    format!("{base}[{i}]"),
                    format!(
                        "{e}; an attempt is {{\"attempt\": 1, \"fallback_index\": 0, \"provider\": \"openai\", \"model\": \"gpt-4o\", \"status\": 429, \"error_type\": null, \"error\": null, \"latency_ms\": 12, \"backoff_ms\": 1000}}"
                    ),
                );
                ok = false;
            }
        }
    }
    if ok { Ok(Some(out)) } else { Err(Reported) }
}

/// Completes (completed_at, latency) from what was given; reports contradictions.
/// Returns (completed_at, latency_ms).
fn derive_timing(
    r: &mut Reader<'_, '_>,
    created: DateTime<Utc>,
    completed: Option<DateTime<Utc>>,
    latency: Option<i64>,
) -> Option<(DateTime<Utc>, i64)> {
    match (completed, latency) {
        (Some(done), given) => {
            if done < created {
                r.report(
                    "completed_at",
                    format!(
                        "completed_at ({}) is before created_at ({})",
                        json::rfc3339(done),
                        json::rfc3339(created)
                    ),
                );
                return None;
            }
            let diff_us = (done - created).num_microseconds()?;
            match given {
                Some(l)
                    if l.checked_mul(1000)
                        .is_none_or(|l_us| (l_us - diff_us).abs() > 1000) =>
                {
                    r.report(
                        "latency_ms",
                        format!(
                            "latency_ms ({l}) disagrees with completed_at - created_at ({:.3} ms) by more than 1 ms; \
                             send only one of them",
                            diff_us as f64 / 1000.0
                        ),
                    );
                    None
                }
                Some(l) => Some((done, l)),
                None => Some((done, (diff_us + 500) / 1000)),
            }
        }
        (None, Some(l)) => {
            let done = Duration::try_milliseconds(l).and_then(|d| created.checked_add_signed(d));
            match done {
                Some(done) if check_time_window(done, r.ctx.now).is_ok() => Some((done, l)),
                _ => {
                    r.report(
                        "latency_ms",
                        format!("created_at + latency_ms ({l}) is more than one day in the future; check the unit (milliseconds)"),
                    );
                    None
                }
            }
        }
        (None, None) => Some((created, 0)),
    }
}

/// A string → string map field (`properties`, `upstream_headers`), bounded by the property limits.
fn string_map(r: &mut Reader<'_, '_>, field: &str) -> Got<BTreeMap<String, String>> {
    let (noun, nouns) = if field == "properties" {
        ("property", "properties")
    } else {
        ("header", "headers")
    };
    let Some(v) = r.value(field) else {
        return Ok(None);
    };
    let Value::Object(map) = v else {
        return Err(r.report(
            field,
            format!("expected an object of string values, found {}", describe(v)),
        ));
    };
    let limits = r.ctx.limits;
    if map.len() > limits.max_properties {
        return Err(r.report(
            field,
            format!(
                "{} {nouns}; at most {} are allowed per record (ingest.max_properties)",
                map.len(),
                limits.max_properties
            ),
        ));
    }
    let base = r.loc.field(field);
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in map {
        let path = join_key(&base, k);
        if k.is_empty() {
            r.report_at(path, format!("{noun} names must not be empty"));
            ok = false;
        } else if k.len() > limits.max_property_key_len {
            r.report_at(
                path,
                format!(
                    "the {noun} name is {} bytes; at most {} are allowed (ingest.max_property_key_len)",
                    k.len(),
                    limits.max_property_key_len
                ),
            );
            ok = false;
        }
        match v {
            Value::String(s) if s.len() > limits.max_property_value_len => {
                r.report_at(
                    join_key(&base, k),
                    format!(
                        "the value is {} bytes; at most {} are allowed (ingest.max_property_value_len)",
                        s.len(),
                        limits.max_property_value_len
                    ),
                );
                ok = false;
            }
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            other => {
                r.report_at(
                    join_key(&base, k),
                    format!(
                        "{noun} {} must be a string, found {}; send numbers and booleans as strings",
                        json::quote_short(k),
                        describe(other)
                    ),
                );
                ok = false;
            }
        }
    }
    if ok { Ok(Some(out)) } else { Err(Reported) }
}

fn hex_id(r: &mut Reader<'_, '_>, name: &str, len: usize) -> Got<String> {
    let Some(s) = r.string(name)? else {
        return Ok(None);
    };
    let s = s.trim();
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(r.report(
            name,
            format!(
                "expected {len} hexadecimal characters, found {}",
                json::quote_short(s)
            ),
        ));
    }
    if s.bytes().all(|b| b == b'0') {
        return Err(r.report(name, "an all-zero id is invalid (W3C Trace Context)"));
    }
    Ok(Some(s.to_ascii_lowercase()))
}

fn body_field(r: &mut Reader<'_, '_>, name: &str) -> Got<String> {
    let Some(v) = r.value(name) else {
        return Ok(None);
    };
    let Some(s) = body_string(v) else {
        return Ok(None);
    };
    let max = r.ctx.limits.max_body_field_len;
    if s.len() > max {
        return Err(r.report(
            name,
            format!(
                "{} bytes; at most {max} are stored per body (ingest.max_body_field_len)",
                s.len()
            ),
        ));
    }
    Ok(Some(s))
}

/// `openai` for `openai/gpt-4o`, else `unknown`.
pub(crate) fn provider_from_model(model: &str) -> String {
    match model.split_once('/') {
        Some((p, rest)) if !p.trim().is_empty() && !rest.is_empty() => {
            p.trim().to_ascii_lowercase()
        }
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_content_types() {
        assert!(is_ndjson_type(Some("application/x-ndjson")));
        assert!(is_ndjson_type(Some("Application/JSONL; charset=utf-8")));
        assert!(!is_ndjson_type(Some("application/json")));
        assert!(!is_ndjson_type(None));
    }

    #[test]
    fn ndjson_detection() {
        assert!(looks_like_ndjson(b"{\"a\":1}\n{\"a\":2}"));
        assert!(looks_like_ndjson(b"\n  {\"a\":1}  \r\n\r\n{"));
        assert!(!looks_like_ndjson(b"{\"a\":1}\n\n"));
        assert!(!looks_like_ndjson(b"{\n  \"a\": 1\n}"));
    }

    #[test]
    fn unit_hints() {
        assert!(unit_hint(1_735_689_600).contains("seconds"));
        assert!(unit_hint(1_735_689_600_000).contains("milliseconds"));
        assert!(unit_hint(1_735_689_600_000_000_000).contains("nanoseconds"));
        assert_eq!(unit_hint(1_735_689_600_000_000), "");
        assert_eq!(unit_hint(12), "");
    }

    #[test]
    fn providers_from_models() {
        assert_eq!(provider_from_model("OpenAI/gpt-4o"), "openai");
        assert_eq!(provider_from_model("gpt-4o"), "unknown");
        assert_eq!(provider_from_model("openai/"), "unknown");
    }

    #[test]
    fn unknown_field_hints() {
        assert!(unknown_field_reason("orgId").starts_with("org_id comes from the API key"));
        assert!(unknown_field_reason("cost").contains("\"cost_usd\""));
        assert!(unknown_field_reason("inputTokens").contains("\"prompt_tokens\""));
        assert!(unknown_field_reason("latency").contains("\"latency_ms\""));
        assert!(
            unknown_field_reason("session").contains("docs/ingest.md"),
            "ambiguous prefix: no hint"
        );
        assert!(unknown_field_reason("completedAt").contains("\"completed_at\""));
        assert!(unknown_field_reason("sesion_id").contains("\"session_id\""));
        assert!(unknown_field_reason("zzzzzz").contains("docs/ingest.md"));
    }
}
