//! Fallbacks: what to try, in order, when a call fails.
//!
//! * `Helicone-Fallbacks` (Helicone's gateway form): a JSON array of
//!   `{"target-url", "headers", "onCodes", "bodyKeyOverride"?}`, tried in order; entry 0 is the
//!   first call. An entry's answer whose status is in its `onCodes` (a number or
//!   `{"from", "to"}`) moves on to the next entry, as does a failure to get an answer at all.
//! * `Loupe-Fallback-Models: gpt-4o-mini,anthropic/claude-haiku-4-5` (or the route's
//!   `fallbacks` in config): the model asked for first (index 0), then each model (index 1, …),
//!   routed like any model (so translation to Anthropic applies). A call moves on after a 429,
//!   a 5xx or a failure to get an answer, once its retries are spent.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::GatewayError;
use crate::config::GatewayConfig;
use crate::proxy::meta_header;

/// Most entries a fallback list may have.
const MAX_FALLBACKS: usize = 10;

/// One thing to try.
#[derive(Debug, Clone, Default)]
pub(crate) struct Candidate {
    /// The model to ask for (`None`: the body's).
    pub model: Option<String>,
    /// A `Helicone-Fallbacks` entry's `target-url`.
    pub target_url: Option<String>,
    /// Headers of a `Helicone-Fallbacks` entry, sent to its target (its provider key included).
    pub headers: HeaderMap,
    /// Statuses after which the next entry is tried (`Helicone-Fallbacks`); `None`: 429 and 5xx.
    pub on_codes: Option<Vec<(u16, u16)>>,
    /// Top-level body keys replaced for this entry.
    pub body_override: Option<Map<String, Value>>,
}

impl Candidate {
    /// Whether an answer with `status` moves on to the next candidate.
    pub fn falls_back_on(&self, status: u16) -> bool {
        match &self.on_codes {
            Some(codes) => codes.iter().any(|(a, b)| (*a..=*b).contains(&status)),
            None => crate::retry::retryable_status(status),
        }
    }
}

/// The candidates of a call, first to last; one (the call as sent) when there are no fallbacks.
pub(crate) fn plan(
    h: &HeaderMap,
    cfg: &GatewayConfig,
    model: &str,
) -> Result<Vec<Candidate>, GatewayError> {
    if let Some(v) = meta_header(h, "fallbacks") {
        return parse_helicone(v);
    }
    // Present but empty: no fallbacks, whatever the config says.
    let given = ["helicone-fallback-models", "loupe-fallback-models"]
        .iter()
        .find_map(|n| h.get(*n))
        .map(|v| v.to_str().unwrap_or_default());
    let models: Vec<String> = match given {
        Some(v) => v
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        None => cfg
            .routes
            .get(model)
            .map(|r| r.fallbacks.clone())
            .unwrap_or_default(),
    };
    if models.len() > MAX_FALLBACKS {
        return Err(GatewayError::BadRequest(format!(
            "Loupe-Fallback-Models lists {} models; at most {MAX_FALLBACKS} are allowed",
            models.len()
        )));
    }
    let mut out = vec![Candidate::default()];
    out.extend(models.into_iter().map(|m| Candidate {
        model: Some(m),
        ..Candidate::default()
    }));
    Ok(out)
}

fn bad(msg: impl std::fmt::Display) -> GatewayError {
    GatewayError::BadRequest(format!(
        "Helicone-Fallbacks: {msg}; expected a JSON array of {{\"target-url\": \"https://…\", \"headers\": {{…}}, \"onCodes\": [429, {{\"from\": 500, \"to\": 599}}], \"bodyKeyOverride\": {{…}}}}"
    ))
}

fn parse_helicone(v: &str) -> Result<Vec<Candidate>, GatewayError> {
    let parsed: Value = serde_json::from_str(v).map_err(|e| bad(format!("not JSON ({e})")))?;
    let Value::Array(entries) = parsed else {
        return Err(bad("not an array"));
    };
    if entries.is_empty() {
        return Err(bad("the array is empty"));
    }
    if entries.len() > MAX_FALLBACKS + 1 {
        return Err(bad(format!(
            "{} entries; at most {} are allowed",
            entries.len(),
            MAX_FALLBACKS + 1
        )));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let Value::Object(o) = e else {
            return Err(bad(format!("entry {i} is not an object")));
        };
        let url = o
            .get("target-url")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("entry {i} lacks \"target-url\" (a string)")))?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(bad(format!(
                "entry {i}: \"target-url\" '{url}' is not an http(s) URL"
            )));
        }
        let Some(Value::Object(hs)) = o.get("headers") else {
            return Err(bad(format!("entry {i} lacks \"headers\" (an object)")));
        };
        let mut headers = HeaderMap::new();
        for (k, v) in hs {
            let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| bad(format!("entry {i}: '{k}' is not a header name")))?;
            let value = v
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "entry {i}: header '{k}' must have a string value (header values are strings)"
                    ))
                })?;
            headers.insert(name, value);
        }
        let Some(Value::Array(codes)) = o.get("onCodes") else {
            return Err(bad(format!("entry {i} lacks \"onCodes\" (an array)")));
        };
        let mut on_codes = Vec::with_capacity(codes.len());
        for c in codes {
            let code = |v: Option<&Value>| {
                v.and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| (100..=599).contains(n))
            };
            let range = match c {
                Value::Number(_) => code(Some(c)).map(|n| (n, n)),
                Value::Object(r) => match (code(r.get("from")), code(r.get("to"))) {
                    (Some(a), Some(b)) if a <= b => Some((a, b)),
                    _ => None,
                },
                _ => None,
            };
            on_codes.push(range.ok_or_else(|| {
                bad(format!(
                    "entry {i}: onCodes item {c} is neither a status (100–599) nor {{\"from\", \"to\"}}"
                ))
            })?);
        }
        let body_override = match o.get("bodyKeyOverride") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err(bad(format!("entry {i}: bodyKeyOverride must be an object"))),
        };
        out.push(Candidate {
            model: body_override
                .as_ref()
                .and_then(|m| m.get("model"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            target_url: Some(url.trim_end_matches('/').to_owned()),
            headers,
            on_codes: Some(on_codes),
            body_override,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &'static str, v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, HeaderValue::from_str(v).expect("value"));
        m
    }

    #[test]
    fn simple_form_and_config() {
        let cfg = GatewayConfig::default();
        let p = plan(
            &h(
                "loupe-fallback-models",
                "gpt-4o-mini, anthropic/claude-haiku-4-5",
            ),
            &cfg,
            "gpt-4o",
        )
        .expect("ok");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].model, None);
        assert_eq!(p[2].model.as_deref(), Some("anthropic/claude-haiku-4-5"));
        assert!(p[1].falls_back_on(429) && p[1].falls_back_on(503) && !p[1].falls_back_on(400));
        let mut cfg = GatewayConfig::default();
        cfg.routes.insert(
            "gpt-4o".into(),
            crate::config::RouteConfig {
                fallbacks: vec!["gpt-4o-mini".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            plan(&HeaderMap::new(), &cfg, "gpt-4o").expect("ok").len(),
            2
        );
        assert_eq!(plan(&HeaderMap::new(), &cfg, "other").expect("ok").len(), 1);
    }

    #[test]
    fn helicone_form() {
        let cfg = GatewayConfig::default();
        let p = plan(
            &h(
                "helicone-fallbacks",
                r#"[{"target-url":"https://api.openai.com","headers":{"Authorization":"Bearer sk-1"},"onCodes":[429,{"from":500,"to":599}]}, {"target-url":"https://b.example/","headers":{},"onCodes":[],"bodyKeyOverride":{"model":"m2"}}]"#,
            ),
            &cfg,
            "gpt-4o",
        )
        .expect("ok");
        assert_eq!(p.len(), 2);
        assert!(p[0].falls_back_on(429) && p[0].falls_back_on(502) && !p[0].falls_back_on(400));
        assert_eq!(p[1].target_url.as_deref(), Some("https://b.example"));
        assert_eq!(p[1].model.as_deref(), Some("m2"));
        assert!(p[0].headers.contains_key("authorization"));
        for (v, needle) in [
            ("{", "not JSON"),
            ("{}", "not an array"),
            ("[]", "empty"),
            (r#"[{"headers":{},"onCodes":[]}]"#, "lacks \"target-url\""),
            (
                r#"[{"target-url":"ftp://x","headers":{},"onCodes":[]}]"#,
                "not an http",
            ),
            (
                r#"[{"target-url":"http://x","onCodes":[]}]"#,
                "lacks \"headers\"",
            ),
            (
                r#"[{"target-url":"http://x","headers":{}}]"#,
                "lacks \"onCodes\"",
            ),
            (
                r#"[{"target-url":"http://x","headers":{"a":1},"onCodes":[]}]"#,
                "string value",
            ),
            (
                r#"[{"target-url":"http://x","headers":{},"onCodes":["x"]}]"#,
                "onCodes item",
            ),
            (
                r#"[{"target-url":"http://x","headers":{},"onCodes":[{"from":500,"to":400}]}]"#,
                "onCodes item",
            ),
        ] {
            let e = plan(&h("helicone-fallbacks", v), &cfg, "m").expect_err(v);
            assert!(e.to_string().contains(needle), "{v}: {e}");
        }
    }
}
