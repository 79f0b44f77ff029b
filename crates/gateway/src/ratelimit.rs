//! Rate limits: Helicone's `Helicone-RateLimit-Policy: quota;w=seconds;u=request|cents;s=user|<property>`
//! and configured policies (`[[gateway.rate_limit.policies]]`, per org or per key).
//!
//! Each policy counts in a fixed window of `w` seconds that starts with the first call counted
//! (per org, policy and segment value). `u=request`: a call is admitted and counted at once,
//! atomically, so concurrent calls never exceed the quota. `u=cents`: a call is admitted while
//! the window's spend is below the quota; its real cost is charged when the answer is complete
//! (so the spend may pass the quota, and later calls are refused). Counters live behind
//! [`RateLimitStore`]; [`MemoryRateLimits`] keeps them in process (one node). Timing uses
//! tokio's clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::config::{FailureMode, RateLimitConfig};
use crate::proxy::meta_header;

/// What a policy counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Request,
    Cents,
}

/// Who shares a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Everyone in the org.
    Global,
    /// Per `Helicone-User-Id`.
    User,
    /// Per value of property `<name>` (lower case).
    Property(String),
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub quota: f64,
    pub window: Duration,
    pub unit: Unit,
    pub segment: Segment,
}

const MIN_WINDOW: u64 = 60;
const MAX_WINDOW: u64 = 31_536_000;

impl Policy {
    /// Helicone's grammar `^(\d+);w=(\d+)(?:;u=(request|cents))?(?:;s=([\w-]+))?$`
    /// (case-insensitive; a decimal quota is allowed for cents), `w` from 60 to 31 536 000.
    pub fn parse(s: &str) -> Result<Policy, String> {
        let s = s.trim();
        let mut parts = s.split(';');
        let quota_s = parts.next().unwrap_or_default().trim();
        let quota: f64 = if !quota_s.is_empty()
            && quota_s.chars().all(|c| c.is_ascii_digit() || c == '.')
            && quota_s.chars().filter(|c| *c == '.').count() <= 1
            && !quota_s.starts_with('.')
            && !quota_s.ends_with('.')
        {
            quota_s.parse().map_err(|_| format!("quota '{quota_s}'"))?
        } else {
            return Err(format!(
                "the quota '{quota_s}' must be a non-negative number (e.g. '1000;w=3600')"
            ));
        };
        let rest: Vec<&str> = parts.collect();
        let mut i = 0;
        let mut take = |key: &str| -> Option<String> {
            let p = rest.get(i)?;
            let (k, v) = p.split_once('=')?;
            if k.trim().eq_ignore_ascii_case(key) {
                i += 1;
                Some(v.trim().to_owned())
            } else {
                None
            }
        };
        let w = take("w").ok_or("'w=<seconds>' must follow the quota (e.g. '1000;w=3600')")?;
        let window: u64 = w
            .parse()
            .ok()
            .filter(|_| w.chars().all(|c| c.is_ascii_digit()))
            .ok_or_else(|| format!("w '{w}' must be a whole number of seconds"))?;
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
            return Err(format!(
                "w={window}: the window must be from {MIN_WINDOW} to {MAX_WINDOW} seconds"
            ));
        }
        let unit = match take("u") {
            None => Unit::Request,
            Some(u) if u.eq_ignore_ascii_case("request") => Unit::Request,
            Some(u) if u.eq_ignore_ascii_case("cents") => Unit::Cents,
            Some(u) => return Err(format!("u '{u}' must be 'request' or 'cents'")),
        };
        let segment = match take("s") {
            None => Segment::Global,
            Some(s)
                if s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-') =>
            {
                return Err(format!(
                    "s '{s}' must be 'user' or a property name (letters, digits, '_', '-')"
                ));
            }
            Some(s) if s.eq_ignore_ascii_case("user") => Segment::User,
            Some(s) => Segment::Property(s.to_ascii_lowercase()),
        };
        if i < rest.len() {
            return Err(format!(
                "unexpected '{}': the form is quota;w=seconds[;u=request|cents][;s=user|<property>], in that order",
                rest[i]
            ));
        }
        if unit == Unit::Request && quota.fract() != 0.0 {
            return Err(format!(
                "quota '{quota_s}' must be a whole number of requests"
            ));
        }
        Ok(Policy {
            quota,
            window: Duration::from_secs(window),
            unit,
            segment,
        })
    }

    /// Re-serialized as Helicone does: `u=`/`s=` left out when they are the defaults.
    pub fn to_header(&self) -> String {
        let mut s = format!("{};w={}", fmt_num(self.quota), self.window.as_secs());
        if self.unit == Unit::Cents {
            s.push_str(";u=cents");
        }
        match &self.segment {
            Segment::Global => {}
            Segment::User => s.push_str(";s=user"),
            Segment::Property(p) => {
                s.push_str(";s=");
                s.push_str(p);
            }
        }
        s
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The state of one counter after a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Counted so far in the window (after this call, if it was counted).
    pub used: f64,
    /// Until the window ends.
    pub reset_in: Duration,
}

/// Where counters live. In process: [`MemoryRateLimits`]; a shared store (Redis: `INCRBYFLOAT`
/// + `PEXPIRE` in one Lua script per key) makes the limits hold across gateway nodes.
pub trait RateLimitStore: Send + Sync + 'static {
    /// Checks the counter `key` (a window of `window`) against `quota` and adds `cost` when
    /// admitted. `cost = 0` (cents before the call): admitted while the count is below `quota`.
    fn acquire(
        &self,
        key: String,
        window: Duration,
        quota: f64,
        cost: f64,
    ) -> BoxFuture<'static, Result<Decision, String>>;
    /// Adds `amount` to the counter `key` (the cost of a call, after it), admitted or not.
    fn charge(
        &self,
        key: String,
        window: Duration,
        amount: f64,
    ) -> BoxFuture<'static, Result<(), String>>;
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    len: Duration,
    used: f64,
}

/// In-process counters: one mutex-guarded map (every check is a few nanoseconds of work, so
/// one lock keeps admissions exact), swept of ended windows as it grows.
#[derive(Debug, Clone, Default)]
pub struct MemoryRateLimits {
    inner: Arc<Mutex<HashMap<String, Window>>>,
}

/// Sweep ended windows once the map holds this many counters.
const SWEEP_AT: usize = 100_000;

impl MemoryRateLimits {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_window<T>(
        &self,
        key: String,
        window: Duration,
        f: impl FnOnce(&mut Window, Instant) -> T,
    ) -> Result<T, String> {
        let now = Instant::now();
        let mut m = self
            .inner
            .lock()
            .map_err(|_| "rate-limit counters are poisoned".to_owned())?;
        if m.len() >= SWEEP_AT {
            m.retain(|_, w| now < w.start + w.len);
        }
        let w = m.entry(key).or_insert(Window {
            start: now,
            len: window,
            used: 0.0,
        });
        if now >= w.start + w.len {
            *w = Window {
                start: now,
                len: window,
                used: 0.0,
            };
        }
        Ok(f(w, now))
    }
}

impl RateLimitStore for MemoryRateLimits {
    fn acquire(
        &self,
        key: String,
        window: Duration,
        quota: f64,
        cost: f64,
    ) -> BoxFuture<'static, Result<Decision, String>> {
        let r = self.with_window(key, window, |w, now| {
            let allowed = if cost > 0.0 {
                w.used + cost <= quota
            } else {
                w.used < quota
            };
            if allowed {
                w.used += cost;
            }
            Decision {
                allowed,
                used: w.used,
                reset_in: (w.start + w.len).saturating_duration_since(now),
            }
        });
        Box::pin(std::future::ready(r))
    }

    fn charge(
        &self,
        key: String,
        window: Duration,
        amount: f64,
    ) -> BoxFuture<'static, Result<(), String>> {
        let r = self.with_window(key, window, |w, _| w.used += amount);
        Box::pin(std::future::ready(r))
    }
}

/// The policies that apply to a call.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    pub policy: Policy,
    pub key: String,
}

/// The outcome of the checks: headers to add, cents counters to charge after the call.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub cents: Vec<Applied>,
}

/// Why a call may not go on.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Over the limit: 429 with these headers and `Retry-After`.
    Limited {
        message: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        retry_after: Duration,
    },
    /// Fail-closed: a bad policy header.
    BadPolicy(String),
    /// Fail-closed: the store failed.
    StoreFailed(String),
}

impl Refusal {
    /// The answer: 429 in the caller's API shape with the policy's headers and `Retry-After`,
    /// or the fail-closed errors (400 bad policy, 503 store failed).
    pub(crate) fn into_response(
        self,
        anthropic: bool,
    ) -> Result<axum::response::Response, crate::GatewayError> {
        match self {
            Refusal::Limited {
                message,
                headers,
                retry_after,
            } => {
                let mut r = crate::GatewayError::RateLimited(message).into_response_for(anthropic);
                for (n, v) in headers {
                    r.headers_mut().insert(n, v);
                }
                r.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs_f64().ceil().max(1.0) as u64),
                );
                Ok(r)
            }
            Refusal::BadPolicy(m) => Err(crate::GatewayError::BadRequest(m)),
            Refusal::StoreFailed(m) => Err(crate::GatewayError::Unavailable(format!(
                "the rate limiter failed ({m}) and gateway.rate_limit.failure_mode is 'closed'; try again"
            ))),
        }
    }
}

/// The caller of a call, for segments and per-key policies.
pub(crate) struct Who<'a> {
    pub org: &'a str,
    pub user_id: Option<&'a str>,
    pub properties: &'a std::collections::BTreeMap<String, String>,
    /// Hex SHA-256 of the Loupe key used, when one was.
    pub key_sha256: Option<String>,
}

/// Checks every policy of the call (header first, then configured ones).
pub(crate) async fn admit(
    store: &dyn RateLimitStore,
    cfg: &RateLimitConfig,
    h: &HeaderMap,
    who: &Who<'_>,
) -> Result<Admission, Refusal> {
    let closed = cfg.failure_mode == FailureMode::Closed;
    let mut policies: Vec<Policy> = Vec::new();
    if let Some(v) = meta_header(h, "ratelimit-policy") {
        match Policy::parse(v) {
            Ok(p) => policies.push(p),
            Err(why) if closed => {
                return Err(Refusal::BadPolicy(format!(
                    "Helicone-RateLimit-Policy '{v}': {why}"
                )));
            }
            Err(why) => {
                tracing::debug!(%why, "invalid Helicone-RateLimit-Policy ignored (fail-open)");
            }
        }
    }
    for c in &cfg.policies {
        if (!c.org.is_empty() && c.org != who.org)
            || (!c.key_sha256.is_empty()
                && who
                    .key_sha256
                    .as_deref()
                    .is_none_or(|k| !k.eq_ignore_ascii_case(&c.key_sha256)))
        {
            continue;
        }
        // Validated at start-up.
        if let Ok(p) = Policy::parse(&c.policy) {
            policies.push(p);
        }
    }
    let mut out = Admission::default();
    let mut reported = false;
    for policy in policies {
        let seg = match &policy.segment {
            Segment::Global => String::new(),
            Segment::User => who.user_id.unwrap_or_default().to_owned(),
            Segment::Property(p) => who.properties.get(p).cloned().unwrap_or_default(),
        };
        let key = format!("{}\u{1f}{}\u{1f}{seg}", who.org, policy.to_header());
        let cost = if policy.unit == Unit::Request {
            1.0
        } else {
            0.0
        };
        let d = match store
            .acquire(key.clone(), policy.window, policy.quota, cost)
            .await
        {
            Ok(d) => d,
            Err(e) if closed => return Err(Refusal::StoreFailed(e)),
            Err(e) => {
                tracing::warn!(error = %e, "rate-limit store failed; call let through (fail-open)");
                continue;
            }
        };
        let headers = headers_of(&policy, &d);
        if !d.allowed {
            return Err(Refusal::Limited {
                message: format!(
                    "rate limit exceeded: policy '{}' allows {} {} per {} s{}; retry after {} s",
                    policy.to_header(),
                    fmt_num(policy.quota),
                    if policy.unit == Unit::Cents {
                        "cents"
                    } else {
                        "requests"
                    },
                    policy.window.as_secs(),
                    match &policy.segment {
                        Segment::Global => String::new(),
                        Segment::User => " per user".into(),
                        Segment::Property(p) => format!(" per value of property '{p}'"),
                    },
                    d.reset_in.as_secs().max(1)
                ),
                headers,
                retry_after: d.reset_in,
            });
        }
        if !reported {
            out.headers = headers;
            reported = true;
        }
        if policy.unit == Unit::Cents {
            out.cents.push(Applied { policy, key });
        }
    }
    Ok(out)
}

fn headers_of(p: &Policy, d: &Decision) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(4);
    let mut add = |n: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            out.push((HeaderName::from_static(n), v));
        }
    };
    add("helicone-ratelimit-limit", fmt_num(p.quota));
    add(
        "helicone-ratelimit-remaining",
        fmt_num((p.quota - d.used).max(0.0).floor()),
    );
    add("helicone-ratelimit-policy", p.to_header());
    let reset = d.reset_in.as_secs_f64().ceil() as u64;
    if reset > 0 {
        add("helicone-ratelimit-reset", reset.to_string());
    }
    out
}

/// Charges the cost of a finished call to its cents policies.
pub(crate) fn charge_cents(
    store: &Arc<dyn RateLimitStore>,
    applied: &[Applied],
    cost_usd: Option<rust_decimal::Decimal>,
) {
    use rust_decimal::prelude::ToPrimitive;
    let Some(cents) = cost_usd.and_then(|c| (c * rust_decimal::Decimal::ONE_HUNDRED).to_f64())
    else {
        return;
    };
    if cents <= 0.0 {
        return;
    }
    for a in applied {
        crate::run_soon(store.charge(a.key.clone(), a.policy.window, cents));
    }
}

/// Start-up check of the configured policies.
pub(crate) fn validate(cfg: &RateLimitConfig) -> Result<(), String> {
    for (i, p) in cfg.policies.iter().enumerate() {
        Policy::parse(&p.policy).map_err(|why| {
            format!(
                "gateway.rate_limit.policies[{i}].policy '{}': {why}",
                p.policy
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_like_helicone() {
        let p = Policy::parse("1000;w=3600").expect("ok");
        assert_eq!(
            (p.quota, p.window.as_secs(), p.unit, p.segment.clone()),
            (1000.0, 3600, Unit::Request, Segment::Global)
        );
        assert_eq!(p.to_header(), "1000;w=3600");
        let p = Policy::parse("500000;W=86400;s=user").expect("ok");
        assert_eq!(p.segment, Segment::User);
        assert_eq!(p.to_header(), "500000;w=86400;s=user");
        let p = Policy::parse("300;w=1800;s=Organization").expect("ok");
        assert_eq!(p.segment, Segment::Property("organization".into()));
        let p = Policy::parse("10;w=1000;u=cents;s=user").expect("ok");
        assert_eq!(p.unit, Unit::Cents);
        assert_eq!(p.to_header(), "10;w=1000;u=cents;s=user");
        let p = Policy::parse("2.5;w=60;u=CENTS").expect("ok");
        assert_eq!(p.quota, 2.5);
        assert_eq!(
            Policy::parse("1;w=60;u=request").expect("ok").to_header(),
            "1;w=60"
        );
        for (bad, needle) in [
            ("", "quota"),
            ("-1;w=60", "quota"),
            ("abc;w=60", "quota"),
            ("10", "'w=<seconds>'"),
            ("10;w=59", "from 60 to 31536000"),
            ("10;w=31536001", "from 60 to 31536000"),
            ("10;w=6x", "whole number"),
            ("10;w=60;u=tokens", "'request' or 'cents'"),
            ("10;w=60;s=a.b", "property name"),
            ("10;w=60;s=user;u=cents", "in that order"),
            ("1.5;w=60", "whole number of requests"),
            ("10;w=60;x=1", "unexpected"),
        ] {
            let e = Policy::parse(bad).expect_err(bad);
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn windows_count_exactly_and_reset() {
        let s = MemoryRateLimits::new();
        let w = Duration::from_secs(60);
        for i in 0..3 {
            let d = s.acquire("k".into(), w, 3.0, 1.0).await.expect("ok");
            assert!(d.allowed, "{i}");
        }
        let d = s.acquire("k".into(), w, 3.0, 1.0).await.expect("ok");
        assert!(!d.allowed);
        assert_eq!(d.reset_in, w);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(
            !s.acquire("k".into(), w, 3.0, 1.0)
                .await
                .expect("ok")
                .allowed
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            s.acquire("k".into(), w, 3.0, 1.0)
                .await
                .expect("ok")
                .allowed
        );
        // Cents: admitted while below the quota, charged afterwards, may go past it.
        assert!(
            s.acquire("c".into(), w, 10.0, 0.0)
                .await
                .expect("ok")
                .allowed
        );
        s.charge("c".into(), w, 12.5).await.expect("ok");
        let d = s.acquire("c".into(), w, 10.0, 0.0).await.expect("ok");
        assert!(!d.allowed);
        assert_eq!(d.used, 12.5);
    }
}
