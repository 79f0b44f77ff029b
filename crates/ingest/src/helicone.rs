//! Helicone's async-log body (`HeliconeAsyncLogRequest`), accepted on `POST /custom/v1/log`,
//! `/oai/v1/log`, `/anthropic/v1/log` and `/googleapis/v1/log` so that Helicone clients only
//! change the base URL. See `docs/ingest.md` for the mapping.

use std::collections::BTreeMap;

use loupe_model::{RequestRecord, Usage};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{IngestError, Problems, Scope};
use crate::json::{self, as_integer, body_string, describe, join_key, type_name};
use crate::native::provider_from_model;
use crate::{IngestContext, finish_record};

/// Which async-log endpoint a body arrived on; it fixes the provider except for `Custom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeliconeRoute {
    /// `POST /custom/v1/log`: provider from the body's `provider`, the URL host or the model.
    Custom,
    /// `POST /oai/v1/log`: provider `openai`.
    OpenAi,
    /// `POST /anthropic/v1/log`: provider `anthropic`.
    Anthropic,
    /// `POST /googleapis/v1/log`: provider `gemini`.
    Google,
}

impl HeliconeRoute {
    /// Every route, for building the router.
    pub const ALL: [HeliconeRoute; 4] = [
        HeliconeRoute::Custom,
        HeliconeRoute::OpenAi,
        HeliconeRoute::Anthropic,
        HeliconeRoute::Google,
    ];

    /// The HTTP path Helicone clients post to.
    pub fn path(self) -> &'static str {
        match self {
            HeliconeRoute::Custom => "/custom/v1/log",
            HeliconeRoute::OpenAi => "/oai/v1/log",
            HeliconeRoute::Anthropic => "/anthropic/v1/log",
            HeliconeRoute::Google => "/googleapis/v1/log",
        }
    }

    /// The route of an HTTP path, if it is one of the four.
    pub fn from_path(path: &str) -> Option<Self> {
        HeliconeRoute::ALL.into_iter().find(|r| r.path() == path)
    }
}

const EXPECTED_REQUEST: &str = r#"{"url": "https://api.openai.com/v1/chat/completions", "json": {…request body…}, "meta": {"Helicone-User-Id": "…"}}"#;
const EXPECTED_RESPONSE: &str = r#"{"status": 200, "headers": {}, "json": {…response body…}} (or "textBody": "…" instead of "json")"#;
const EXPECTED_TIMING: &str = r#"{"startTime": {"seconds": 1735689600, "milliseconds": 120}, "endTime": {"seconds": 1735689601, "milliseconds": 480}, "timeToFirstToken": 210}"#;

/// At most this many bytes of a plain-text error body become `error_message`.
const MAX_ERROR_MESSAGE: usize = 1024;

/// Parses one Helicone async-log body into a record.
///
/// Validation follows Helicone's worker (`validateAsyncLogModel`): `providerRequest.url` a
/// string, `providerRequest.meta` an object, `providerRequest.json` present, `providerResponse`
/// `status` a number and `headers` an object, the four `timing` numbers present, start ≤ end.
/// Unlike the worker, every problem is reported, not only the first, and times must lie between
/// 2000-01-01 and now + 1 day. Unknown top-level fields are ignored.
///
/// Only the `meta` keys mapped in `docs/ingest.md` are read (case-insensitive, `Loupe-` works
/// like `Helicone-`); `providerResponse.headers` and every other meta key (`Authorization`,
/// `Helicone-Auth`, provider API keys) are never stored, nor is the query string of the URL.
pub fn parse_helicone_log(
    body: &[u8],
    route: HeliconeRoute,
    ctx: &IngestContext,
) -> Result<RequestRecord, IngestError> {
    let mut probs = Problems::new(Scope::HeliconeLog);
    let root = match json::parse_value(json::strip_bom(body)) {
        Ok(v) => v,
        Err(reason) => {
            probs.push(None, "body", reason);
            return Err(probs.into_error());
        }
    };
    let Value::Object(root) = root else {
        probs.push(
            None,
            "body",
            format!(
                "expected a JSON object {{\"providerRequest\": …, \"providerResponse\": …, \"timing\": …}}, found {}",
                describe(&root)
            ),
        );
        return Err(probs.into_error());
    };
    let mut v = Validator {
        probs: &mut probs,
        ctx,
    };
    let parsed = v.body(&root);
    match parsed {
        Some(p) if probs.is_empty() => Ok(build(p, route, ctx)),
        _ => Err(probs.into_error()),
    }
}

/// What the validator extracted from a body.
struct Parsed<'a> {
    url: &'a str,
    req_json: &'a Value,
    meta: Meta,
    status: i32,
    resp_json: Option<&'a Value>,
    text_body: Option<&'a str>,
    resp_headers: Option<&'a Map<String, Value>>,
    start_us: i64,
    end_us: i64,
    ttft_ms: Option<i64>,
    provider: Option<&'a str>,
}

/// The `meta` headers Loupe understands.
#[derive(Debug, Default)]
struct Meta {
    properties: BTreeMap<String, String>,
    /// Normalised name (`user-id`, …) → (original key, value).
    fields: BTreeMap<&'static str, (String, String)>,
}

impl Meta {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

/// Meta header names (after the `Helicone-`/`Loupe-` prefix, lower-case) mapped to a column.
const META_FIELDS: &[&str] = &[
    "user-id",
    "session-id",
    "session-path",
    "session-name",
    "request-id",
    "model-override",
    "omit-request",
    "omit-response",
];

struct Validator<'p, 'c> {
    probs: &'p mut Problems,
    ctx: &'c IngestContext,
}

impl Validator<'_, '_> {
    fn report(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.probs.push(None, path, reason);
    }

    /// A required object member; `null` counts as missing.
    fn object<'a>(
        &mut self,
        parent: &'a Map<String, Value>,
        path: &str,
        key: &str,
        expected: &str,
    ) -> Option<&'a Map<String, Value>> {
        let full = join_key(path, key);
        match parent.get(key) {
            None | Some(Value::Null) => {
                self.report(full, format!("missing; expected {expected}"));
                None
            }
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                self.report(
                    full,
                    format!("expected an object {expected}, found {}", describe(other)),
                );
                None
            }
        }
    }

    fn body<'a>(&mut self, root: &'a Map<String, Value>) -> Option<Parsed<'a>> {
        let req = self.object(root, "", "providerRequest", EXPECTED_REQUEST);
        let resp = self.object(root, "", "providerResponse", EXPECTED_RESPONSE);
        let timing = self.object(root, "", "timing", EXPECTED_TIMING);

        let provider = match root.get("provider") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                self.report(
                    "provider",
                    format!(
                        "expected a string such as \"OPENAI\" or \"ANTHROPIC\", found {}",
                        describe(other)
                    ),
                );
                None
            }
        };

        let (url, req_json, meta) = match req {
            Some(req) => self.request(req),
            None => (None, None, None),
        };
        let (status, resp_json, text_body) = match resp {
            Some(resp) => self.response(resp),
            None => (None, None, None),
        };
        let resp_headers = resp
            .and_then(|r| r.get("headers"))
            .and_then(Value::as_object);
        let times = timing.and_then(|t| self.timing(t));

        let meta = meta?;
        // Bodies are checked against the size limit here, where problems can still be reported.
        if !meta.flag("omit-request") {
            self.check_body_len(
                "providerRequest.json",
                req_json.and_then(body_string).as_deref(),
            );
        }
        if !meta.flag("omit-response") {
            let stored = match resp_json {
                Some(j) => ("providerResponse.json", body_string(j)),
                None => ("providerResponse.textBody", text_body.map(str::to_owned)),
            };
            self.check_body_len(stored.0, stored.1.as_deref());
        }
        let (start_us, end_us, ttft_ms) = times?;
        Some(Parsed {
            url: url?,
            req_json: req_json?,
            meta,
            status: status?,
            resp_json,
            text_body,
            resp_headers,
            start_us,
            end_us,
            ttft_ms,
            provider,
        })
    }

    fn check_body_len(&mut self, path: &str, body: Option<&str>) {
        let max = self.ctx.limits.max_body_field_len;
        if let Some(b) = body
            && b.len() > max
        {
            self.report(
                path,
                format!(
                    "{} bytes; at most {max} are stored per body (ingest.max_body_field_len); raise the limit or \
                     set meta \"Helicone-Omit-Request\"/\"Helicone-Omit-Response\": \"true\" to log without it",
                    b.len()
                ),
            );
        }
    }

    fn request<'a>(
        &mut self,
        req: &'a Map<String, Value>,
    ) -> (Option<&'a str>, Option<&'a Value>, Option<Meta>) {
        let url = match req.get("url") {
            Some(Value::String(s)) => Some(s.as_str()),
            None => {
                self.report(
                    "providerRequest.url",
                    "missing; expected a string: the provider URL called, or a name such as \"custom-model-nopath\"",
                );
                None
            }
            Some(other) => {
                self.report(
                    "providerRequest.url",
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        };
        let json = match req.get("json") {
            Some(v) => Some(v),
            None => {
                self.report(
                    "providerRequest.json",
                    "missing; expected the request body sent to the provider (any JSON value)",
                );
                None
            }
        };
        let meta = match req.get("meta") {
            None => {
                self.report(
                    "providerRequest.meta",
                    "missing; expected an object of Helicone headers such as {\"Helicone-User-Id\": \"u_42\"} \
                     (may be {})",
                );
                None
            }
            Some(Value::Null) => Some(Meta::default()),
            Some(Value::Object(m)) => self.meta(m),
            Some(other) => {
                self.report(
                    "providerRequest.meta",
                    format!("expected an object of strings, found {}", describe(other)),
                );
                None
            }
        };
        (url, json, meta)
    }

    fn meta(&mut self, m: &Map<String, Value>) -> Option<Meta> {
        let before = self.probs.count();
        let limits = self.ctx.limits;
        let mut meta = Meta::default();
        // Property name → the original meta key that set it (to name both in a conflict).
        let mut prop_keys: BTreeMap<String, &str> = BTreeMap::new();
        for (key, value) in m {
            let path = join_key("providerRequest.meta", key);
            let lower = key.to_ascii_lowercase();
            let name_at = if lower.starts_with("helicone-") {
                "helicone-".len()
            } else if lower.starts_with("loupe-") {
                "loupe-".len()
            } else {
                // Not ours (Authorization, Helicone-Auth, Content-Type…): never stored.
                continue;
            };
            let name = &lower[name_at..];
            let Value::String(value) = value else {
                // Values may be secrets: name the type only.
                self.report(
                    path,
                    format!(
                        "meta values must be strings (they are HTTP header values), found {}",
                        type_name(value)
                    ),
                );
                continue;
            };
            if let Some(prop) = name.strip_prefix("property-") {
                if prop.is_empty() {
                    self.report(
                        path,
                        "the property name after the \"Property-\" prefix is empty",
                    );
                    continue;
                }
                // Header names are case-insensitive; like Helicone and Loupe's gateway (HTTP
                // header names arrive lower-case), property names are stored lower-case.
                let prop = prop.to_owned();
                if prop.len() > limits.max_property_key_len {
                    self.report(
                        path,
                        format!(
                            "the property name is {} bytes; at most {} are allowed (ingest.max_property_key_len)",
                            prop.len(),
                            limits.max_property_key_len
                        ),
                    );
                    continue;
                }
                if value.len() > limits.max_property_value_len {
                    self.report(
                        path,
                        format!(
                            "the value is {} bytes; at most {} are allowed (ingest.max_property_value_len)",
                            value.len(),
                            limits.max_property_value_len
                        ),
                    );
                    continue;
                }
                match meta.properties.get(&prop) {
                    Some(old) if old != value => {
                        let other = prop_keys.get(&prop).copied().unwrap_or_default();
                        self.report(
                            path,
                            format!(
                                "sets property {} like meta key {} but to a different value; meta keys are \
                                 case-insensitive and Loupe- equals Helicone-, send one of them",
                                json::quote_short(&prop),
                                json::quote_short(other)
                            ),
                        );
                    }
                    Some(_) => {}
                    None => {
                        prop_keys.insert(prop.clone(), key);
                        meta.properties.insert(prop, value.clone());
                    }
                }
                continue;
            }
            let Some(field) = META_FIELDS.iter().copied().find(|f| *f == name) else {
                continue;
            };
            match meta.fields.get(field) {
                Some((other, old)) if old != value => {
                    let other = other.clone();
                    self.report(
                        path,
                        format!(
                            "conflicts with meta key {}: both set Helicone-{} to different values; meta keys are \
                             case-insensitive and Loupe- equals Helicone-, send one of them",
                            json::quote_short(&other),
                            title_case(field)
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    meta.fields.insert(field, (key.clone(), value.clone()));
                }
            }
        }
        if meta.properties.len() > limits.max_properties {
            self.report(
                "providerRequest.meta",
                format!(
                    "{} Helicone-Property-* keys; at most {} properties are allowed per record (ingest.max_properties)",
                    meta.properties.len(),
                    limits.max_properties
                ),
            );
        }
        (self.probs.count() == before).then_some(meta)
    }

    fn response<'a>(
        &mut self,
        resp: &'a Map<String, Value>,
    ) -> (Option<i32>, Option<&'a Value>, Option<&'a str>) {
        let status = match resp.get("status") {
            None | Some(Value::Null) => {
                self.report(
                    "providerResponse.status",
                    "missing; expected the provider's HTTP status as a number",
                );
                None
            }
            Some(v) => match as_integer(v) {
                Some(Ok(s)) if (0..=999).contains(&s) => Some(s as i32),
                Some(_) => {
                    self.report(
                        "providerResponse.status",
                        format!(
                            "expected an HTTP status code between 0 and 999, found {}",
                            describe(v)
                        ),
                    );
                    None
                }
                None => {
                    self.report(
                        "providerResponse.status",
                        format!("expected a number, found {}", describe(v)),
                    );
                    None
                }
            },
        };
        match resp.get("headers") {
            // The worker's `typeof headers === "object"` accepts null. Rate-limit headers are kept.
            Some(Value::Object(_)) | Some(Value::Null) => {}
            None => self.report(
                "providerResponse.headers",
                "missing; expected an object of the provider's response headers (may be {}; only rate-limit headers, retry-after and the request id are kept)",
            ),
            Some(other) => self.report(
                "providerResponse.headers",
                format!("expected an object, found {}", type_name(other)),
            ),
        }
        let json = resp.get("json").filter(|v| !v.is_null());
        let text = match resp.get("textBody") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                self.report(
                    "providerResponse.textBody",
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        };
        (status, json, text)
    }

    /// (start µs, end µs, ttft ms).
    fn timing(&mut self, t: &Map<String, Value>) -> Option<(i64, i64, Option<i64>)> {
        let start = self.time_point(t, "startTime");
        let end = self.time_point(t, "endTime");
        let (start, end) = (start?, end?);
        if start > end {
            self.report(
                "timing.endTime",
                format!(
                    "the end ({}) is before the start ({}); startTime cannot be greater than endTime",
                    fmt_us(end),
                    fmt_us(start)
                ),
            );
            return None;
        }
        let latency_ms = ms_round(end - start);
        let ttft = match t.get("timeToFirstToken") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Number(n)) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                let start_ms = start as f64 / 1000.0;
                let end_ms = end as f64 / 1000.0;
                if !f.is_finite() || f < 0.0 {
                    self.report(
                        "timing.timeToFirstToken",
                        format!("expected milliseconds ≥ 0, found {}", describe(v)),
                    );
                    return None;
                }
                // Some clients send the absolute time of the first token (epoch ms).
                let ms = if f > latency_ms as f64 && f >= start_ms && f <= end_ms + 1.0 {
                    f - start_ms
                } else {
                    f
                };
                let ms = ms.round() as i64;
                if ms > latency_ms {
                    self.report(
                        "timing.timeToFirstToken",
                        format!(
                            "the time to first token ({ms} ms) is longer than the request ({latency_ms} ms from \
                             startTime to endTime); it is a duration in milliseconds"
                        ),
                    );
                    return None;
                }
                Some(ms)
            }
            Some(other) => {
                self.report(
                    "timing.timeToFirstToken",
                    format!(
                        "expected a number of milliseconds, found {}",
                        describe(other)
                    ),
                );
                return None;
            }
        };
        Some((start, end, ttft))
    }

    /// `{seconds, milliseconds}` → microseconds since the epoch, in the accepted window.
    fn time_point(&mut self, t: &Map<String, Value>, key: &str) -> Option<i64> {
        let path = format!("timing.{key}");
        let obj = self.object(
            t,
            "timing",
            key,
            r#"{"seconds": <unix seconds>, "milliseconds": <0-999>}"#,
        )?;
        let mut num = |field: &str| -> Option<f64> {
            let p = format!("{path}.{field}");
            match obj.get(field) {
                Some(Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()).or_else(|| {
                    self.report(p.clone(), "not a finite number");
                    None
                }),
                None | Some(Value::Null) => {
                    self.report(p, "missing; expected a number");
                    None
                }
                Some(other) => {
                    self.report(p, format!("expected a number, found {}", describe(other)));
                    None
                }
            }
        };
        let seconds = num("seconds");
        let millis = num("milliseconds");
        let (seconds, millis) = (seconds?, millis?);
        let us = (seconds * 1_000_000.0 + millis * 1000.0).round();
        let time = if us.abs() < 9.0e18 {
            json::from_micros(us as i64)
        } else {
            None
        };
        let Some(time) = time else {
            self.report(
                path,
                "not a valid time: seconds must be Unix seconds and milliseconds 0-999",
            );
            return None;
        };
        if let Err(why) = json::check_time_window(time, self.ctx.now) {
            self.report(path, format!("{why}; seconds must be Unix seconds"));
            return None;
        }
        Some(us as i64)
    }
}

/// `user-id` → `User-Id`.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn ms_round(us: i64) -> i64 {
    (us + 500).div_euclid(1000)
}

fn fmt_us(us: i64) -> String {
    json::from_micros(us)
        .map(json::rfc3339)
        .unwrap_or_else(|| us.to_string())
}

/// `true` for the UUIDs Helicone accepts as `Helicone-Request-Id` (versions 1-5, RFC variant).
fn helicone_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            14 => (b'1'..=b'5').contains(c),
            19 => matches!(c.to_ascii_lowercase(), b'8' | b'9' | b'a' | b'b'),
            _ => c.is_ascii_hexdigit(),
        })
}

/// Host (lower-case, no port or credentials) and path (no query or fragment) of `url`; a URL
/// that is not absolute has no host and is its own path.
fn split_url(url: &str) -> (Option<String>, String) {
    let cut_query = |s: &str| s.split(['?', '#']).next().unwrap_or("").to_owned();
    let Some((scheme, rest)) = url.split_once("://") else {
        return (None, cut_query(url));
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return (None, cut_query(url));
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if host_port.starts_with('[') {
        host_port
            .split(']')
            .next()
            .map(|h| format!("{h}]"))
            .unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or("").to_owned()
    };
    let path = cut_query(tail);
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let host = host.to_ascii_lowercase();
    ((!host.is_empty()).then_some(host), path)
}

fn host_is(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|h| h.ends_with('.'))
}

fn provider_from_host(host: &str) -> Option<&'static str> {
    if host_is(host, "openai.azure.com") {
        Some("azure")
    } else if host_is(host, "openai.com") {
        Some("openai")
    } else if host_is(host, "anthropic.com") {
        Some("anthropic")
    } else if host_is(host, "googleapis.com") {
        Some("gemini")
    } else {
        None
    }
}

/// Loupe's provider id for Helicone's provider names.
fn map_provider_name(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    match p.as_str() {
        "google" => "gemini".to_owned(),
        _ => p,
    }
}

/// The model in a Gemini path `…/models/{model}:generateContent`.
fn gemini_model(path: &str) -> Option<&str> {
    let (_, after) = path.split_once("/models/")?;
    let (model, _) = after.split_once(':')?;
    (!model.is_empty() && !model.contains('/')).then_some(model)
}

fn str_field<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
    v?.get(key)?.as_str().filter(|s| !s.is_empty())
}

/// (error_type, error_message) from a provider error body.
fn error_info(json: Option<&Value>, text: Option<&str>) -> (Option<String>, Option<String>) {
    fn from_json(v: &Value) -> Option<(Option<String>, Option<String>)> {
        let v = match v {
            Value::Array(items) => items.first()?,
            other => other,
        };
        match v.get("error") {
            Some(Value::String(s)) => Some((None, Some(s.clone()))),
            Some(Value::Object(e)) => {
                let s = |k: &str| {
                    e.get(k)
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                };
                Some((
                    s("type").or_else(|| s("status")).or_else(|| s("code")),
                    s("message"),
                ))
            }
            _ => v
                .get("message")
                .and_then(Value::as_str)
                .map(|m| (None, Some(m.to_owned()))),
        }
    }
    if let Some(info) = json.and_then(from_json) {
        return info;
    }
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return (None, None);
    };
    if let Some(info) = serde_json::from_str::<Value>(text)
        .ok()
        .as_ref()
        .and_then(from_json)
    {
        return info;
    }
    let mut end = text.len().min(MAX_ERROR_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (None, Some(text[..end].to_owned()))
}

fn looks_like_sse(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("data:") || t.starts_with("event:") || text.contains("\ndata:")
}

fn usage_of(json: Option<&Value>, text: Option<&str>) -> Option<Usage> {
    if let Some((u, _)) = json.and_then(Usage::from_response_json) {
        return Some(u);
    }
    let text = text?;
    if looks_like_sse(text) {
        return Usage::from_sse(text).map(|(u, _)| u);
    }
    let v: Value = serde_json::from_str(text).ok()?;
    Usage::from_response_json(&v).map(|(u, _)| u)
}

fn build(p: Parsed<'_>, route: HeliconeRoute, ctx: &IngestContext) -> RequestRecord {
    let meta = &p.meta;
    let request_id = match meta.get("request-id").map(str::trim) {
        Some(s) if helicone_uuid(s) => Uuid::parse_str(s).unwrap_or_else(|_| Uuid::new_v4()),
        _ => Uuid::new_v4(),
    };
    let created_at = json::from_micros(p.start_us).unwrap_or_else(json::min_time);
    let completed_at = json::from_micros(p.end_us).unwrap_or(created_at);
    let (host, path) = split_url(p.url);

    let req_json = Some(p.req_json);
    let model = meta
        .get("model-override")
        .or_else(|| str_field(req_json, "model"))
        .or_else(|| str_field(p.resp_json, "model"))
        .or_else(|| gemini_model(&path))
        .unwrap_or("unknown")
        .to_owned();
    let provider = match route {
        HeliconeRoute::OpenAi => "openai".to_owned(),
        HeliconeRoute::Anthropic => "anthropic".to_owned(),
        HeliconeRoute::Google => "gemini".to_owned(),
        HeliconeRoute::Custom => match p.provider.filter(|s| !s.trim().is_empty()) {
            Some(name) => map_provider_name(name),
            None => match host.as_deref().and_then(provider_from_host) {
                Some(h) => h.to_owned(),
                None => match provider_from_model(&model).as_str() {
                    "unknown" => "custom".to_owned(),
                    other => other.to_owned(),
                },
            },
        },
    };

    let usage = usage_of(p.resp_json, p.text_body);
    let (cost_usd, price_known) = match usage {
        // A successful call whose usage we cannot read has an unknown cost, not a zero one.
        None if p.status < 400 => (None, false),
        _ => {
            let cost = ctx
                .prices
                .cost(&provider, &model, &usage.unwrap_or_default());
            let known = cost.usd.is_some();
            (cost.usd, known)
        }
    };
    let usage = usage.unwrap_or_default();
    let (error_type, error_message) = if p.status >= 400 {
        error_info(p.resp_json, p.text_body)
    } else {
        (None, None)
    };

    let mut r = RequestRecord::new(request_id, ctx.org_id.clone(), created_at);
    r.completed_at = completed_at;
    r.latency_ms = ms_round(p.end_us - p.start_us);
    r.ttft_ms = p.ttft_ms;
    r.stream = p.req_json.get("stream") == Some(&Value::Bool(true))
        || path.contains(":streamGenerateContent");
    r.provider = provider;
    r.model = model;
    r.response_model = str_field(p.resp_json, "model")
        .or_else(|| str_field(p.resp_json, "modelVersion"))
        .map(str::to_owned);
    r.path = path;
    r.status = p.status;
    r.error_type = error_type;
    r.error_message = error_message;
    r.prompt_tokens = usage.prompt_tokens;
    r.completion_tokens = usage.completion_tokens;
    r.cache_read_tokens = usage.cache_read_tokens;
    r.cache_write_tokens = usage
        .cache_write_tokens
        .saturating_add(usage.cache_write_1h_tokens);
    r.reasoning_tokens = usage.reasoning_tokens;
    r.total_tokens = usage.total_tokens;
    r.cost_usd = cost_usd;
    r.price_known = price_known;
    r.user_id = meta
        .get("user-id")
        .or_else(|| str_field(req_json, "user"))
        .map(str::to_owned);
    r.session_id = meta.get("session-id").map(str::to_owned);
    r.session_path = meta.get("session-path").map(str::to_owned);
    r.session_name = meta.get("session-name").map(str::to_owned);
    r.properties = meta.properties.clone();
    if let Some(h) = p.resp_headers {
        for (k, v) in h {
            let name = k.to_ascii_lowercase();
            if let (true, Some(v)) = (loupe_model::keep_upstream_header(&name), v.as_str()) {
                r.upstream_headers.insert(name, v.to_owned());
            }
        }
    }
    r.request_body = if meta.flag("omit-request") {
        None
    } else {
        body_string(p.req_json)
    };
    r.response_body = if meta.flag("omit-response") {
        None
    } else {
        match p.resp_json {
            Some(j) => body_string(j),
            None => p.text_body.map(str::to_owned),
        }
    };
    finish_record(r, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helicone_uuid_regex() {
        assert!(helicone_uuid("0b7f3c1e-5d2a-4c1b-9f7e-2a6d1c9e8b10"));
        assert!(helicone_uuid("0B7F3C1E-5D2A-4C1B-9F7E-2A6D1C9E8B10"));
        // version 7 and version 0 are not in Helicone's regex
        assert!(!helicone_uuid("0b7f3c1e-5d2a-7c1b-9f7e-2a6d1c9e8b10"));
        assert!(!helicone_uuid("0b7f3c1e-5d2a-0c1b-9f7e-2a6d1c9e8b10"));
        // variant must be 8, 9, a or b
        assert!(!helicone_uuid("0b7f3c1e-5d2a-4c1b-cf7e-2a6d1c9e8b10"));
        assert!(!helicone_uuid("0b7f3c1e5d2a4c1b9f7e2a6d1c9e8b10"));
        assert!(!helicone_uuid("not-a-uuid"));
    }

    #[test]
    fn urls() {
        assert_eq!(
            split_url("https://api.openai.com/v1/chat/completions"),
            (Some("api.openai.com".into()), "/v1/chat/completions".into())
        );
        assert_eq!(
            split_url(
                "https://u:p@Generativelanguage.googleapis.com:443/v1beta/models/gemini-2.5-flash:generateContent?key=SECRET"
            ),
            (
                Some("generativelanguage.googleapis.com".into()),
                "/v1beta/models/gemini-2.5-flash:generateContent".into()
            )
        );
        assert_eq!(
            split_url("custom-model-nopath"),
            (None, "custom-model-nopath".into())
        );
        assert_eq!(split_url("/v1/x?key=SECRET"), (None, "/v1/x".into()));
        assert_eq!(
            split_url("https://example.com"),
            (Some("example.com".into()), "/".into())
        );
        assert_eq!(split_url("1://x/y"), (None, "1://x/y".into()));
    }

    #[test]
    fn hosts() {
        assert_eq!(provider_from_host("api.openai.com"), Some("openai"));
        assert_eq!(provider_from_host("myres.openai.azure.com"), Some("azure"));
        assert_eq!(provider_from_host("api.anthropic.com"), Some("anthropic"));
        assert_eq!(
            provider_from_host("generativelanguage.googleapis.com"),
            Some("gemini")
        );
        assert_eq!(provider_from_host("notopenai.com"), None);
        assert_eq!(provider_from_host("example.com"), None);
    }

    #[test]
    fn gemini_models() {
        assert_eq!(
            gemini_model("/v1beta/models/gemini-2.5-flash:generateContent"),
            Some("gemini-2.5-flash")
        );
        assert_eq!(
            gemini_model("/v1/projects/p/locations/l/publishers/google/models/gemini-2.0:x"),
            Some("gemini-2.0")
        );
        assert_eq!(gemini_model("/v1beta/models"), None);
    }

    #[test]
    fn error_bodies() {
        let openai = serde_json::json!({"error": {"message": "slow down", "type": "tokens", "code": "rate_limit_exceeded"}});
        assert_eq!(
            error_info(Some(&openai), None),
            (Some("tokens".into()), Some("slow down".into()))
        );
        let openai_null_type =
            serde_json::json!({"error": {"message": "m", "type": null, "code": "invalid_api_key"}});
        assert_eq!(
            error_info(Some(&openai_null_type), None).0.as_deref(),
            Some("invalid_api_key")
        );
        let gemini = serde_json::json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}});
        assert_eq!(
            error_info(Some(&gemini), None),
            (Some("RESOURCE_EXHAUSTED".into()), Some("quota".into()))
        );
        assert_eq!(
            error_info(None, Some("  upstream timeout ")),
            (None, Some("upstream timeout".into()))
        );
        let long = "é".repeat(2000);
        assert!(
            error_info(None, Some(&long))
                .1
                .is_some_and(|m| m.len() <= MAX_ERROR_MESSAGE)
        );
        assert_eq!(
            error_info(
                None,
                Some(r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#)
            ),
            (Some("overloaded_error".into()), Some("busy".into()))
        );
    }
}
