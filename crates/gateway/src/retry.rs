//! Retries: Helicone's `Helicone-Retry-*` headers (defaults 5 retries, factor 2, 1000 ms to
//! 10000 ms), config defaults per route, exponential backoff with jitter, and the provider's
//! `retry-after`. Only what is safe is retried: 429, 5xx, and Loupe's own failures to get an
//! answer (unreachable, broken before the answer, timeout) — never once a stream has started
//! reaching the client. Waits go through tokio's clock, so tests can pause it.

use std::time::Duration;

use axum::http::HeaderMap;

use crate::GatewayError;
use crate::config::{GatewayConfig, RetryConfig};
use crate::proxy::meta_header;

/// Upper bounds on what a header may ask for.
const MAX_RETRIES: u32 = 20;
const MAX_TIMEOUT_MS: u64 = 600_000;

/// The retry settings of one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub enabled: bool,
    pub num: u32,
    pub factor: f64,
    pub min_timeout: Duration,
    pub max_timeout: Duration,
}

impl From<RetryConfig> for RetryPolicy {
    fn from(c: RetryConfig) -> Self {
        RetryPolicy {
            enabled: c.enabled,
            num: c.num.min(MAX_RETRIES),
            factor: c.factor.clamp(1.0, 10.0),
            min_timeout: Duration::from_millis(c.min_timeout_ms.min(MAX_TIMEOUT_MS)),
            max_timeout: Duration::from_millis(
                c.max_timeout_ms.clamp(c.min_timeout_ms, MAX_TIMEOUT_MS),
            ),
        }
    }
}

impl RetryPolicy {
    /// Headers over the route's `retry` over `[gateway.retry]`. Helicone turns retries on only
    /// when `Helicone-Retry-Enabled` is present; `true` enables, anything else disables.
    pub fn resolve(
        h: &HeaderMap,
        cfg: &GatewayConfig,
        model: &str,
    ) -> Result<RetryPolicy, GatewayError> {
        let base = cfg
            .routes
            .get(model)
            .and_then(|r| r.retry)
            .unwrap_or(cfg.retry);
        let mut p = RetryPolicy::from(base);
        if let Some(v) = meta_header(h, "retry-enabled") {
            p.enabled = v.eq_ignore_ascii_case("true");
        }
        if let Some(n) = int_header(h, "retry-num", 0, u64::from(MAX_RETRIES))? {
            p.num = n as u32;
        }
        if let Some(v) = meta_header(h, "retry-factor") {
            let f: f64 = v.parse().ok().filter(|f: &f64| (1.0..=10.0).contains(f)).ok_or_else(|| {
                GatewayError::BadRequest(format!(
                    "Helicone-Retry-Factor '{v}' must be a number from 1 to 10 (the backoff multiplier, default 2)"
                ))
            })?;
            p.factor = f;
        }
        if let Some(ms) = int_header(h, "retry-min-timeout", 0, MAX_TIMEOUT_MS)? {
            p.min_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = int_header(h, "retry-max-timeout", 0, MAX_TIMEOUT_MS)? {
            p.max_timeout = Duration::from_millis(ms);
        }
        if p.max_timeout < p.min_timeout {
            return Err(GatewayError::BadRequest(format!(
                "Helicone-Retry-Max-Timeout ({} ms) is below Helicone-Retry-Min-Timeout ({} ms)",
                p.max_timeout.as_millis(),
                p.min_timeout.as_millis()
            )));
        }
        Ok(p)
    }

    /// Retries left after `done` retries.
    pub fn may_retry(&self, done: u32) -> bool {
        self.enabled && done < self.num
    }

    /// The wait before retry number `n` (1 = the first retry): `min_timeout × factor^(n−1)`,
    /// capped at `max_timeout`, times a jitter factor in [1, 1.2) (`jitter` in [0, 1)), capped
    /// again — never below `min_timeout`, never above `max_timeout`.
    pub fn backoff(&self, n: u32, jitter: f64) -> Duration {
        let exp = self.factor.powi(n.saturating_sub(1).min(64) as i32);
        let base = (self.min_timeout.as_secs_f64() * exp).min(self.max_timeout.as_secs_f64());
        let with_jitter = base * (1.0 + 0.2 * jitter.clamp(0.0, 1.0));
        Duration::from_secs_f64(with_jitter.min(self.max_timeout.as_secs_f64()))
    }

    /// The wait before retry `n` given the provider's answer headers: the backoff, or the
    /// provider's `retry-after(-ms)` if longer. `None`: the provider asks for a wait longer
    /// than `max_timeout`, so retrying now is pointless.
    pub fn delay(&self, n: u32, upstream: Option<&HeaderMap>) -> Option<Duration> {
        let backoff = self.backoff(n, rand::random::<f64>());
        match upstream.and_then(retry_after) {
            Some(ra) if ra > self.max_timeout => None,
            Some(ra) => Some(ra.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy)]
pub enum Failure<'a> {
    /// The provider answered with this status (and these headers).
    Status(u16, &'a HeaderMap),
    /// No answer: unreachable, broken before the answer was complete, timeout.
    NoAnswer,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wait this long, then send the same attempt again.
    Retry(Duration),
    /// Move on to the next fallback at once.
    Fallback,
    /// Give the failure back to the client.
    Answer,
}

impl RetryPolicy {
    /// After a failure, with `done` retries of this target behind it and `falls_back` saying
    /// whether a next fallback exists and this failure moves on to it: retry while the failure
    /// is retryable and retries remain (and the provider's `retry-after` is not beyond the max
    /// timeout), else fall back, else answer.
    pub fn next_step(&self, done: u32, failure: Failure<'_>, falls_back: bool) -> Step {
        let (retryable, headers) = match failure {
            Failure::Status(s, h) => (retryable_status(s), Some(h)),
            Failure::NoAnswer => (true, None),
        };
        let delay = if retryable && self.may_retry(done) {
            self.delay(done + 1, headers)
        } else {
            None
        };
        match (delay, falls_back) {
            (Some(d), _) => Step::Retry(d),
            (None, true) => Step::Fallback,
            (None, false) => Step::Answer,
        }
    }
}

fn int_header(h: &HeaderMap, name: &str, min: u64, max: u64) -> Result<Option<u64>, GatewayError> {
    let Some(v) = meta_header(h, name) else {
        return Ok(None);
    };
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(GatewayError::BadRequest(format!(
            "Helicone-{} '{v}' must be a whole number from {min} to {max}",
            title_case(name)
        ))),
    }
}

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

/// The provider's requested wait: `retry-after-ms` (ms), else `retry-after` (seconds or an
/// HTTP date).
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = get("retry-after")?;
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Statuses worth another attempt (the same call may succeed later or elsewhere).
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..=599).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn helicone_defaults_and_headers() {
        let cfg = GatewayConfig::default();
        let p = RetryPolicy::resolve(&HeaderMap::new(), &cfg, "gpt-4o").expect("ok");
        assert!(!p.enabled);
        let p = RetryPolicy::resolve(&headers(&[("helicone-retry-enabled", "true")]), &cfg, "m")
            .expect("ok");
        assert_eq!(
            (p.enabled, p.num, p.factor, p.min_timeout, p.max_timeout),
            (
                true,
                5,
                2.0,
                Duration::from_millis(1000),
                Duration::from_millis(10_000)
            )
        );
        let p = RetryPolicy::resolve(
            &headers(&[
                ("loupe-retry-enabled", "TRUE"),
                ("loupe-retry-num", "2"),
                ("helicone-retry-factor", "3"),
                ("helicone-retry-min-timeout", "10"),
                ("helicone-retry-max-timeout", "50"),
            ]),
            &cfg,
            "m",
        )
        .expect("ok");
        assert_eq!(p.num, 2);
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(10));
        assert_eq!(p.backoff(2, 0.0), Duration::from_millis(30));
        assert_eq!(p.backoff(3, 0.0), Duration::from_millis(50));
        assert_eq!(p.backoff(9, 0.99), Duration::from_millis(50));
        assert!(p.backoff(1, 0.99) < Duration::from_millis(12));
        for (k, v, needle) in [
            ("helicone-retry-num", "x", "Helicone-Retry-Num 'x'"),
            ("helicone-retry-num", "99", "from 0 to 20"),
            ("helicone-retry-factor", "0.5", "Helicone-Retry-Factor"),
            (
                "helicone-retry-min-timeout",
                "-1",
                "Helicone-Retry-Min-Timeout",
            ),
        ] {
            let e = RetryPolicy::resolve(&headers(&[(k, v)]), &cfg, "m").expect_err(k);
            assert!(e.to_string().contains(needle), "{e}");
        }
        let e = RetryPolicy::resolve(
            &headers(&[
                ("helicone-retry-min-timeout", "500"),
                ("helicone-retry-max-timeout", "100"),
            ]),
            &cfg,
            "m",
        )
        .expect_err("min > max");
        assert!(e.to_string().contains("below"), "{e}");
    }

    #[test]
    fn route_config_is_the_default_and_headers_win() {
        let mut cfg = GatewayConfig::default();
        cfg.routes.insert(
            "gpt-4o".into(),
            crate::config::RouteConfig {
                retry: Some(RetryConfig {
                    enabled: true,
                    num: 2,
                    ..RetryConfig::default()
                }),
                ..Default::default()
            },
        );
        let p = RetryPolicy::resolve(&HeaderMap::new(), &cfg, "gpt-4o").expect("ok");
        assert!(p.enabled && p.num == 2);
        let p = RetryPolicy::resolve(&HeaderMap::new(), &cfg, "gpt-4o-mini").expect("ok");
        assert!(!p.enabled);
        let p = RetryPolicy::resolve(
            &headers(&[("helicone-retry-enabled", "false")]),
            &cfg,
            "gpt-4o",
        )
        .expect("ok");
        assert!(!p.enabled);
    }

    /// The retry loop on tokio's paused clock: the waits are exactly the backoffs (and the
    /// provider's retry-after), and no wall-clock time passes.
    #[tokio::test(start_paused = true)]
    async fn waits_follow_the_policy_on_virtual_time() {
        let p = RetryPolicy {
            enabled: true,
            num: 4,
            factor: 2.0,
            min_timeout: Duration::from_millis(1000),
            max_timeout: Duration::from_millis(10_000),
        };
        let none = HeaderMap::new();
        let ra = headers(&[("retry-after", "7")]);
        let too_long = headers(&[("retry-after", "60")]);
        // 503, no answer, 429 asking for 7 s, 500, then retries are spent.
        let schedule = [
            Failure::Status(503, &none),
            Failure::NoAnswer,
            Failure::Status(429, &ra),
            Failure::Status(500, &none),
            Failure::Status(502, &none),
        ];
        let wall = std::time::Instant::now();
        let start = tokio::time::Instant::now();
        let mut waits = Vec::new();
        let mut done = 0;
        let mut last = Step::Answer;
        for f in schedule {
            last = p.next_step(done, f, false);
            match last {
                Step::Retry(d) => {
                    tokio::time::sleep(d).await;
                    waits.push(d);
                    done += 1;
                }
                _ => break,
            }
        }
        assert_eq!(last, Step::Answer, "retries spent");
        assert_eq!(waits.len(), 4);
        let bounds = [(1000, 1200), (2000, 2400), (7000, 7000), (8000, 9600)];
        for (w, (lo, hi)) in waits.iter().zip(bounds) {
            let ms = w.as_millis() as u64;
            assert!((lo..=hi).contains(&ms), "{ms} not in {lo}..={hi}");
        }
        let elapsed = start.elapsed();
        let planned: Duration = waits.iter().sum();
        // tokio's timer rounds each sleep up to the next millisecond.
        assert!(
            elapsed >= planned && elapsed - planned <= Duration::from_millis(4),
            "{elapsed:?} vs {planned:?}"
        );
        assert!(elapsed >= Duration::from_secs(18));
        assert!(
            wall.elapsed() < Duration::from_secs(5),
            "virtual time, not real"
        );
        // A 4xx is never retried (whether it falls back is the fallback's rule); with a
        // fallback, spent or refused retries move on.
        assert_eq!(
            p.next_step(0, Failure::Status(400, &none), false),
            Step::Answer
        );
        assert_eq!(
            p.next_step(0, Failure::Status(400, &none), true),
            Step::Fallback
        );
        assert_eq!(
            p.next_step(4, Failure::Status(503, &none), true),
            Step::Fallback
        );
        assert_eq!(
            p.next_step(0, Failure::Status(429, &too_long), true),
            Step::Fallback
        );
        assert_eq!(
            p.next_step(0, Failure::Status(429, &too_long), false),
            Step::Answer
        );
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_max() {
        let p = RetryPolicy {
            enabled: true,
            num: 3,
            factor: 2.0,
            min_timeout: Duration::from_millis(100),
            max_timeout: Duration::from_secs(10),
        };
        let d = p.delay(1, Some(&headers(&[("retry-after", "3")])));
        assert_eq!(d, Some(Duration::from_secs(3)));
        let d = p.delay(1, Some(&headers(&[("retry-after-ms", "250")])));
        assert_eq!(d, Some(Duration::from_millis(250)));
        assert_eq!(p.delay(1, Some(&headers(&[("retry-after", "60")]))), None);
        let d = p.delay(1, Some(&headers(&[("retry-after", "soon")])));
        assert!(d.is_some_and(|d| d >= Duration::from_millis(100)));
        assert!(retryable_status(429) && retryable_status(503) && !retryable_status(400));
    }
}
