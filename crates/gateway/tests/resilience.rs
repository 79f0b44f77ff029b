//! Caching, retries, fallbacks and rate limits against testkit's mock provider on 127.0.0.1,
//! with faults injected by the mock (`x-mock-schedule`, `x-mock-fail-rate`, `mock-status-*`,
//! unreachable ports). Backoffs here are a few ms: the waits themselves are checked under
//! tokio's paused clock in the unit tests of `retry`, `cache` and `ratelimit`; here only lower
//! bounds are asserted, never how long something took.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use loupe_gateway::ratelimit::{Decision, RateLimitStore};
use loupe_gateway::{
    FailureMode, Gateway, GatewayConfig, KeyResolver, ProviderKind, ProvidersConfig,
    RateLimitPolicyConfig, RetryConfig, RouteConfig, Secret, Stores,
};
use loupe_model::{PriceTable, RequestRecord};
use loupe_testkit::mock_upstream::{MockUpstream, provider_fixture};
use loupe_testkit::{CollectSink as Collect, serve_loopback as serve};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const OPENAI_KEY: &str = "sk-test-openai-upstream-0001";
const ANTHROPIC_KEY: &str = "sk-ant-test-upstream-0001";

struct Keys(Vec<(&'static str, &'static str)>);
impl KeyResolver for Keys {
    fn enabled(&self) -> bool {
        !self.0.is_empty()
    }
    fn org_of(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, o)| (*o).to_owned())
    }
}

/// A port nothing listens on.
async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

struct Env {
    mock: MockUpstream,
    gw: Arc<Gateway>,
    url: String,
    sink: Arc<Collect>,
    client: reqwest::Client,
}

impl Env {
    async fn records(&self) -> Vec<RequestRecord> {
        self.gw.shutdown().await;
        self.sink.records.lock().expect("lock").clone()
    }

    async fn post(&self, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
        let mut r = self
            .client
            .post(format!("{}/v1/chat/completions", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.expect("send")
    }
}

async fn start_with(cfg: GatewayConfig, keys: Keys, stores: Option<Stores>) -> Env {
    let mock = MockUpstream::start().await;
    let mut p = ProvidersConfig::default();
    for (name, kind, base, key) in [
        (
            "openai",
            ProviderKind::Openai,
            format!("{}/v1", mock.url),
            OPENAI_KEY,
        ),
        (
            "anthropic",
            ProviderKind::Anthropic,
            format!("{}/v1", mock.url),
            ANTHROPIC_KEY,
        ),
        (
            "dead",
            ProviderKind::Openai,
            format!("{}/v1", dead_url().await),
            "sk-dead-key-0001",
        ),
    ] {
        let e = p.0.entry(name.to_owned()).or_default();
        e.kind = kind;
        e.base_url = base;
        e.api_key = Secret(key.to_owned());
        e.api_key_env = String::new();
    }
    let prices = Arc::new(PriceTable::bundled().expect("prices"));
    let sink = Arc::new(Collect::default());
    let gw = match stores {
        Some(s) => Gateway::with_stores(cfg, p, prices, sink.clone(), Arc::new(keys), s),
        None => Gateway::new(cfg, p, prices, sink.clone(), Arc::new(keys)),
    }
    .expect("gateway");
    let url = serve(gw.router()).await;
    Env {
        mock,
        gw,
        url,
        sink,
        client: reqwest::Client::new(),
    }
}

async fn start(cfg: GatewayConfig) -> Env {
    start_with(cfg, Keys(vec![]), None).await
}

fn chat_body() -> Value {
    serde_json::from_str(&provider_fixture("openai_chat_request.json")).expect("json")
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Fast retries: 3 retries, 2 ms doubling to at most 20 ms.
const FAST_RETRY: [(&str, &str); 4] = [
    ("helicone-retry-enabled", "true"),
    ("helicone-retry-num", "3"),
    ("helicone-retry-min-timeout", "2"),
    ("helicone-retry-max-timeout", "20"),
];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more.iter()).copied().collect()
}

// ---------------------------------------------------------------- retries

#[tokio::test]
async fn a_fault_schedule_is_retried_with_backoff_and_every_attempt_is_recorded() {
    let env = start(GatewayConfig::default()).await;
    let h = with(
        &FAST_RETRY,
        &[
            ("x-mock-schedule", "500,429,503,ok"),
            ("x-mock-schedule-key", "sched-1"),
        ],
    );
    let r = env.post(&h, &chat_body()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "helicone-fallback-index"), None);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["object"], "chat.completion");

    let up = env.mock.requests();
    assert_eq!(up.len(), 4, "3 failures + 1 success");
    let recs = env.records().await;
    assert_eq!(recs.len(), 1, "one record per call, not per attempt");
    let rec = &recs[0];
    assert_eq!(rec.status, 200);
    assert_eq!(rec.attempt, Some(4));
    assert_eq!(rec.fallback_index, None);
    let statuses: Vec<i32> = rec.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [500, 429, 503]);
    // Backoff n: 2 ms × 2^(n−1), jitter ≤ +20 %, capped at 20 ms.
    for (a, (lo, hi)) in rec.attempts.iter().zip([(2, 3), (4, 5), (8, 10)]) {
        assert!((lo..=hi).contains(&a.backoff_ms), "{a:?}");
        assert_eq!(a.provider, "openai");
        assert_eq!(a.model, "gpt-4o-mini");
        assert_eq!(a.fallback_index, 0);
    }
    assert_eq!(rec.attempts[0].error.as_deref(), Some("injected 500"));
    assert_eq!(
        rec.attempts[1].error_type.as_deref(),
        Some("rate_limit_exceeded")
    );
    // Each retry waited at least its backoff after the previous attempt was sent.
    for i in 1..up.len() {
        let gap = up[i].at - up[i - 1].at;
        let want = Duration::from_millis(rec.attempts[i - 1].backoff_ms as u64);
        assert!(gap >= want, "attempt {i}: gap {gap:?} < backoff {want:?}");
    }
    let m = env.gw.metrics_snapshot();
    assert_eq!(m.retries, 3);
}

#[tokio::test]
async fn retries_stop_at_the_limit_and_the_last_answer_goes_back() {
    let env = start(GatewayConfig::default()).await;
    let h = [
        ("helicone-retry-enabled", "true"),
        ("helicone-retry-num", "2"),
        ("helicone-retry-min-timeout", "2"),
        ("helicone-retry-max-timeout", "20"),
        ("x-mock-schedule", "503,503,503,503,ok"),
        ("x-mock-schedule-key", "limit"),
    ];
    let r = env.post(&h, &chat_body()).await;
    assert_eq!(
        r.status(),
        503,
        "the provider's own error after the retries"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["message"], "injected 503");
    assert_eq!(env.mock.requests().len(), 3);
    let rec = &env.records().await[0];
    assert_eq!(rec.status, 503);
    assert_eq!(rec.attempt, Some(3));
    assert_eq!(rec.attempts.len(), 2);
    assert_eq!(rec.error_type.as_deref(), Some("server_error"));
}

#[tokio::test]
async fn client_errors_are_never_retried_and_retries_are_off_by_default() {
    let env = start(GatewayConfig::default()).await;
    let h = with(
        &FAST_RETRY,
        &[("x-mock-schedule", "400,ok"), ("x-mock-schedule-key", "c")],
    );
    let r = env.post(&h, &chat_body()).await;
    assert_eq!(r.status(), 400);
    let r = env
        .post(
            &[
                ("x-mock-schedule", "500,ok"),
                ("x-mock-schedule-key", "off"),
            ],
            &chat_body(),
        )
        .await;
    assert_eq!(r.status(), 500, "no Helicone-Retry-Enabled: no retry");
    assert_eq!(env.mock.requests().len(), 2);
    let recs = env.records().await;
    assert!(
        recs.iter()
            .all(|r| r.attempts.is_empty() && r.attempt == Some(1))
    );
}

#[tokio::test]
async fn resets_timeouts_and_unreachable_providers_are_retried() {
    let env = start(GatewayConfig {
        upstream_timeout_secs: 1,
        ..GatewayConfig::default()
    })
    .await;
    let h = with(
        &FAST_RETRY,
        &[
            ("x-mock-schedule", "reset,hang,ok"),
            ("x-mock-schedule-key", "rt"),
        ],
    );
    let r = env.post(&h, &chat_body()).await;
    assert_eq!(r.status(), 200);
    let rec = &env.records().await[0];
    let kinds: Vec<(i32, Option<&str>)> = rec
        .attempts
        .iter()
        .map(|a| (a.status, a.error_type.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (502, Some("upstream_broken")),
            (504, Some("upstream_timeout"))
        ]
    );

    let env = start(GatewayConfig::default()).await;
    let mut b = chat_body();
    b["model"] = json!("dead/gpt-4o-mini");
    let r = env.post(&FAST_RETRY, &b).await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach provider 'dead'")),
        "{body}"
    );
    let rec = &env.records().await[0];
    assert_eq!(rec.attempts.len(), 3);
    assert!(
        rec.attempts
            .iter()
            .all(|a| a.error_type.as_deref() == Some("upstream_unreachable"))
    );
    assert_eq!(rec.error_type.as_deref(), Some("upstream_unreachable"));
}

#[tokio::test]
async fn retry_after_is_waited_for_and_streams_are_never_retried_once_started() {
    let env = start(GatewayConfig::default()).await;
    let h = with(
        &[
            ("helicone-retry-enabled", "true"),
            ("helicone-retry-min-timeout", "1"),
        ],
        &[
            ("x-mock-schedule", "429,ok"),
            ("x-mock-schedule-key", "ra"),
            ("x-mock-retry-after", "1"),
        ],
    );
    let r = env.post(&h, &chat_body()).await;
    assert_eq!(r.status(), 200);
    let up = env.mock.requests();
    assert!(up[1].at - up[0].at >= Duration::from_secs(1));

    // A stream that broke after it started: the client sees the break, nothing is retried.
    let mut b = chat_body();
    b["stream"] = json!(true);
    let h = with(
        &FAST_RETRY,
        &[
            ("x-mock-schedule", "midstream,ok"),
            ("x-mock-schedule-key", "ms"),
        ],
    );
    let r = env.post(&h, &b).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err(), "the client's stream breaks too");
    // A stream refused before it started is retried.
    let h = with(
        &FAST_RETRY,
        &[
            ("x-mock-schedule", "503,ok"),
            ("x-mock-schedule-key", "s503"),
        ],
    );
    let r = env.post(&h, &b).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("stream");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let recs = env.records().await;
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].attempts[0].backoff_ms, 1000, "retry-after: 1");
    let broken = recs
        .iter()
        .find(|r| r.error_type.as_deref() == Some("upstream_stream_error"));
    assert!(broken.is_some_and(|r| r.attempts.is_empty() && r.attempt == Some(1)));
    let retried = recs
        .iter()
        .find(|r| r.stream && r.error_type.is_none())
        .expect("stream");
    assert_eq!(retried.attempts.len(), 1);
    assert_eq!(env.mock.requests().len(), 2 + 1 + 2);
}

#[tokio::test]
async fn config_defaults_per_route_apply_and_headers_override_them() {
    let mut cfg = GatewayConfig::default();
    cfg.routes.insert(
        "gpt-4o-mini".into(),
        RouteConfig {
            retry: Some(RetryConfig {
                enabled: true,
                num: 1,
                factor: 2.0,
                min_timeout_ms: 1,
                max_timeout_ms: 5,
            }),
            fallbacks: vec!["anthropic/claude-sonnet-4-5".into()],
            cache: None,
        },
    );
    let env = start(cfg).await;
    let r = env
        .post(
            &[
                ("x-mock-schedule", "500,ok"),
                ("x-mock-schedule-key", "cfg"),
            ],
            &chat_body(),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "helicone-fallback-index").as_deref(), Some("0"));
    let r = env
        .post(
            &[
                ("x-mock-schedule", "500,500,ok"),
                ("x-mock-schedule-key", "cfg2"),
            ],
            &chat_body(),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "helicone-fallback-index").as_deref(), Some("1"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["object"], "chat.completion",
        "Claude's answer in OpenAI's shape"
    );
    let r = env
        .post(
            &[
                ("helicone-retry-enabled", "false"),
                ("loupe-fallback-models", ""),
                ("x-mock-schedule", "500,ok"),
                ("x-mock-schedule-key", "cfg3"),
            ],
            &chat_body(),
        )
        .await;
    assert_eq!(
        r.status(),
        500,
        "headers turn the route's retries and fallbacks off"
    );
}

// ---------------------------------------------------------------- fallbacks

#[tokio::test]
async fn fallback_models_cross_providers_with_translation_and_are_recorded() {
    let env = start(GatewayConfig::default()).await;
    let mut b = chat_body();
    b["model"] = json!("mock-status-503");
    let r = env
        .post(
            &[(
                "loupe-fallback-models",
                "dead/gpt-4o, anthropic/claude-sonnet-4-5",
            )],
            &b,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "helicone-fallback-index").as_deref(), Some("2"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["object"], "chat.completion");
    let up = env.mock.requests();
    assert_eq!(
        up.len(),
        2,
        "503 from openai, then Anthropic (dead never answered)"
    );
    assert!(up[1].path.ends_with("/messages"));
    assert_eq!(up[1].header("x-api-key"), Some(ANTHROPIC_KEY));
    let rec = &env.records().await[0];
    assert_eq!(
        (rec.provider.as_str(), rec.model.as_str()),
        ("anthropic", "claude-sonnet-4-5")
    );
    assert_eq!(rec.fallback_index, Some(2));
    assert_eq!(rec.attempt, Some(3));
    let tried: Vec<(i32, &str, i32, &str)> = rec
        .attempts
        .iter()
        .map(|a| {
            (
                a.fallback_index,
                a.provider.as_str(),
                a.status,
                a.model.as_str(),
            )
        })
        .collect();
    assert_eq!(
        tried,
        [
            (0, "openai", 503, "mock-status-503"),
            (1, "dead", 502, "gpt-4o")
        ]
    );
    assert!(rec.cost_usd.is_some(), "priced as the model that answered");
    assert_eq!(env.gw.metrics_snapshot().fallbacks, 2);
}

#[tokio::test]
async fn a_fallback_that_cannot_be_sent_is_skipped_and_all_failing_returns_the_last_answer() {
    let env = start(GatewayConfig::default()).await;
    let mut b = chat_body();
    b["model"] = json!("mock-status-429");
    let r = env
        .post(
            &[(
                "loupe-fallback-models",
                "groq/llama-3.3-70b,mock-status-500",
            )],
            &b,
        )
        .await;
    assert_eq!(r.status(), 500);
    assert_eq!(header(&r, "helicone-fallback-index").as_deref(), Some("2"));
    let rec = &env.records().await[0];
    assert_eq!(rec.attempts.len(), 2);
    assert_eq!(rec.attempts[0].status, 429);
    assert_eq!(rec.attempts[1].error_type.as_deref(), Some("not_sent"));
    assert!(
        rec.attempts[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("no API key for provider 'groq'")),
        "{:?}",
        rec.attempts[1]
    );
    assert_eq!(rec.status, 500);
}

#[tokio::test]
async fn when_the_last_fallbacks_cannot_be_sent_the_last_real_answer_goes_back() {
    let env = start(GatewayConfig::default()).await;
    let mut b = chat_body();
    b["model"] = json!("mock-status-503");
    let r = env
        .post(&[("loupe-fallback-models", "groq/llama-3.3-70b")], &b)
        .await;
    assert_eq!(
        r.status(),
        503,
        "the provider's answer, not 'no key for groq'"
    );
    assert_eq!(header(&r, "helicone-fallback-index").as_deref(), Some("0"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["message"], "injected 503");
    let rec = &env.records().await[0];
    assert_eq!(
        (rec.status, rec.attempt, rec.fallback_index),
        (503, Some(1), Some(0))
    );
    assert_eq!(rec.attempts.len(), 1);
    assert_eq!(rec.attempts[0].error_type.as_deref(), Some("not_sent"));
}

#[tokio::test]
async fn slow_answers_within_the_timeout_are_not_retried() {
    let env = start(GatewayConfig::default()).await;
    let h = with(&FAST_RETRY, &[("x-mock-latency-ms", "150")]);
    let r = env.post(&h, &chat_body()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(env.mock.requests().len(), 1);
    let rec = &env.records().await[0];
    assert!(rec.attempts.is_empty() && rec.attempt == Some(1));
    assert!(rec.latency_ms >= 150);
}

#[tokio::test]
async fn helicone_fallbacks_follow_on_codes_and_use_each_entrys_headers() {
    let env = start(GatewayConfig::default()).await;
    let fallbacks = json!([
        {"target-url": env.mock.url, "headers": {"Authorization": "Bearer sk-entry-zero-0001", "x-mock-schedule": "503", "x-mock-schedule-key": "hf0"}, "onCodes": [429, {"from": 500, "to": 599}]},
        {"target-url": format!("{}/", env.mock.url), "headers": {"Authorization": "Bearer sk-entry-one-0001"}, "onCodes": [], "bodyKeyOverride": {"model": "gpt-4o", "temperature": 0}}
    ]);
    let r = env
        .post(
            &[("helicone-fallbacks", &fallbacks.to_string())],
            &chat_body(),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "helicone-fallback-index").as_deref(), Some("1"));
    let up = env.mock.requests();
    assert_eq!(up.len(), 2);
    assert_eq!(
        up[0].header("authorization"),
        Some("Bearer sk-entry-zero-0001")
    );
    assert_eq!(
        up[1].header("authorization"),
        Some("Bearer sk-entry-one-0001")
    );
    assert_eq!(up[1].body["model"], "gpt-4o");
    assert_eq!(up[1].body["temperature"], 0);
    assert_eq!(up[0].path, "/v1/chat/completions");

    // A status not in onCodes is the answer.
    let fallbacks = json!([
        {"target-url": env.mock.url, "headers": {"x-mock-schedule": "400", "x-mock-schedule-key": "hf1"}, "onCodes": [429]},
        {"target-url": env.mock.url, "headers": {}, "onCodes": []}
    ]);
    let r = env
        .post(
            &[
                ("helicone-fallbacks", &fallbacks.to_string()),
                ("authorization", "Bearer sk-caller-0001"),
            ],
            &chat_body(),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(header(&r, "helicone-fallback-index").as_deref(), Some("0"));
    let recs = env.records().await;
    assert_eq!(recs[0].fallback_index, Some(1));
    assert_eq!(recs[0].attempts[0].status, 503);
    for r in &recs {
        let dump = format!("{r:?}");
        assert!(!dump.contains("sk-entry-zero-0001") && !dump.contains("sk-entry-one-0001"));
    }
    // Bad JSON: 400 naming the header.
    let r = env
        .post(&[("helicone-fallbacks", "[{}]")], &chat_body())
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Helicone-Fallbacks"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_fifth_of_upstream_calls_failing_retries_and_fallbacks_keep_clients_whole() {
    const N: usize = 2000;
    const CONCURRENCY: usize = 16;
    let env = Arc::new(start(GatewayConfig::default()).await);
    let mut b = chat_body();
    b["temperature"] = json!(0);
    let b = Arc::new(b);
    let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..CONCURRENCY {
        let (env, b, ok) = (env.clone(), b.clone(), ok.clone());
        tasks.spawn(async move {
            for i in (w..N).step_by(CONCURRENCY) {
                let _ = i;
                let h = [
                    ("helicone-retry-enabled", "true"),
                    ("helicone-retry-num", "2"),
                    ("helicone-retry-min-timeout", "1"),
                    ("helicone-retry-max-timeout", "4"),
                    ("loupe-fallback-models", "anthropic/claude-sonnet-4-5"),
                    ("x-mock-fail-rate", "0.2"),
                    ("x-mock-fail-seed", "42"),
                ];
                let r = env.post(&h, &b).await;
                if r.status() == 200 && r.bytes().await.is_ok() {
                    ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let ok = ok.load(std::sync::atomic::Ordering::Relaxed);
    let upstream = env.mock.requests().len();
    let m = env.gw.metrics_snapshot();
    let rate = ok as f64 / N as f64;
    println!(
        "resilience: {N} calls, 20% injected faults: {ok} succeeded ({:.3}%), {upstream} upstream attempts ({} retries, {} fallbacks), {:.0} calls/s",
        rate * 100.0,
        m.retries,
        m.fallbacks,
        N as f64 / elapsed.as_secs_f64()
    );
    assert!(rate >= 0.999, "success rate {rate}");
    assert!(upstream > N, "faults were injected ({upstream} attempts)");
}

// ---------------------------------------------------------------- cache

#[tokio::test]
async fn cache_hits_replay_the_answer_and_are_recorded_as_savings() {
    let env = start(GatewayConfig::default()).await;
    let h = [("helicone-cache-enabled", "true")];
    let r1 = env.post(&h, &chat_body()).await;
    assert_eq!(header(&r1, "helicone-cache").as_deref(), Some("MISS"));
    let id1 = header(&r1, "helicone-id");
    let b1 = r1.bytes().await.expect("body");
    // Same request, keys in another order: a hit.
    let reordered: Value = serde_json::from_str(
        r#"{"stream":false,"user":"user-1234","max_completion_tokens":64,"top_p":1.0,"temperature":0.2,
            "messages":[{"content":"You are a terse assistant.","role":"system"},{"content":"Name the largest planet in the solar system.","role":"user"}],
            "model":"gpt-4o-mini"}"#,
    )
    .expect("json");
    let r2 = env
        .post(&[("loupe-cache-enabled", "true")], &reordered)
        .await;
    assert_eq!(r2.status(), 200);
    assert_eq!(header(&r2, "helicone-cache").as_deref(), Some("HIT"));
    assert_eq!(
        header(&r2, "helicone-cache-bucket-idx").as_deref(),
        Some("0")
    );
    assert_eq!(header(&r2, "x-request-id").as_deref(), Some("req_json"));
    assert_ne!(header(&r2, "helicone-id"), id1, "each call has its own id");
    assert_eq!(r2.bytes().await.expect("body"), b1);
    // Another model or temperature: misses.
    for (k, v) in [("model", json!("gpt-4o")), ("temperature", json!(0.3))] {
        let mut b = chat_body();
        b[k] = v;
        let r = env.post(&h, &b).await;
        assert_eq!(header(&r, "helicone-cache").as_deref(), Some("MISS"), "{k}");
    }
    assert_eq!(env.mock.requests().len(), 3);
    let recs = env.records().await;
    let hit = recs.iter().find(|r| r.cache_hit).expect("hit recorded");
    let miss = &recs[0];
    assert!(!miss.cache_hit);
    assert_eq!(hit.cost_usd, Some(Decimal::ZERO));
    assert_eq!(hit.cost_saved_usd, miss.cost_usd);
    assert_eq!(
        hit.cost_saved_usd
            .map(|d| d.normalize().to_string())
            .as_deref(),
        Some("0.0001359")
    );
    assert_eq!(
        (hit.prompt_tokens, hit.completion_tokens),
        (miss.prompt_tokens, miss.completion_tokens)
    );
    assert_eq!(hit.attempt, None);
    let m = env.gw.metrics_snapshot();
    assert_eq!((m.cache_hits, m.cache_misses), (1, 3));
}

#[tokio::test]
async fn buckets_fill_before_random_picks_and_seeds_and_ignore_keys_shape_the_key() {
    let env = start(GatewayConfig::default()).await;
    let h = [
        ("helicone-cache-enabled", "true"),
        ("helicone-cache-bucket-max-size", "3"),
    ];
    let mut statuses = Vec::new();
    let mut idx = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let r = env.post(&h, &chat_body()).await;
        statuses.push(header(&r, "helicone-cache").expect("cache header"));
        if let Some(i) = header(&r, "helicone-cache-bucket-idx") {
            idx.insert(i);
        }
    }
    assert_eq!(&statuses[..3], ["MISS", "MISS", "MISS"]);
    assert!(statuses[3..].iter().all(|s| s == "HIT"), "{statuses:?}");
    assert!(idx.iter().all(|i| ["0", "1", "2"].contains(&i.as_str())));
    assert_eq!(
        env.mock.requests().len(),
        3,
        "the bucket filled, then only hits"
    );

    // Seeds isolate.
    let seeded = |s: &'static str| {
        [
            ("helicone-cache-enabled", "true"),
            ("helicone-cache-seed", s),
        ]
    };
    assert_eq!(
        header(
            &env.post(&seeded("a"), &chat_body()).await,
            "helicone-cache"
        )
        .as_deref(),
        Some("MISS")
    );
    assert_eq!(
        header(
            &env.post(&seeded("b"), &chat_body()).await,
            "helicone-cache"
        )
        .as_deref(),
        Some("MISS")
    );
    assert_eq!(
        header(
            &env.post(&seeded("a"), &chat_body()).await,
            "helicone-cache"
        )
        .as_deref(),
        Some("HIT")
    );
    // Ignored keys do not count.
    let ign = [
        ("helicone-cache-enabled", "true"),
        ("helicone-cache-ignore-keys", "user,metadata"),
    ];
    let mut b = chat_body();
    b["user"] = json!("someone-else");
    assert_eq!(
        header(&env.post(&ign, &b).await, "helicone-cache").as_deref(),
        Some("MISS")
    );
    b["user"] = json!("a-third-user");
    b["metadata"] = json!({"x": 1});
    assert_eq!(
        header(&env.post(&ign, &b).await, "helicone-cache").as_deref(),
        Some("HIT")
    );
    // Save-only never reads; read-only never writes; max-age=0 expires at once.
    let mut b = chat_body();
    b["temperature"] = json!(0.9);
    let save = [("helicone-cache-save", "true")];
    let r = env.post(&save, &b).await;
    assert_eq!(header(&r, "helicone-cache"), None);
    let read = [("helicone-cache-read", "true")];
    assert_eq!(
        header(&env.post(&read, &b).await, "helicone-cache").as_deref(),
        Some("HIT")
    );
    b["temperature"] = json!(0.8);
    assert_eq!(
        header(&env.post(&read, &b).await, "helicone-cache").as_deref(),
        Some("MISS")
    );
    assert_eq!(
        header(&env.post(&read, &b).await, "helicone-cache").as_deref(),
        Some("MISS")
    );
    let zero = [
        ("helicone-cache-enabled", "true"),
        ("cache-control", "max-age=0"),
    ];
    assert_eq!(
        header(&env.post(&zero, &b).await, "helicone-cache").as_deref(),
        Some("MISS")
    );
    assert_eq!(
        header(&env.post(&zero, &b).await, "helicone-cache").as_deref(),
        Some("MISS")
    );
    // A bucket too large is refused, in OpenAI's shape.
    let r = env
        .post(
            &[
                ("helicone-cache-enabled", "true"),
                ("helicone-cache-bucket-max-size", "21"),
            ],
            &b,
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["error"]["message"],
        "Cache bucket size cannot be greater than 20 (Helicone-Cache-Bucket-Max-Size: 21)"
    );
}

#[tokio::test]
async fn streamed_answers_are_cached_and_replayed_byte_for_byte() {
    let env = start(GatewayConfig::default()).await;
    let mut b = chat_body();
    b["stream"] = json!(true);
    let h = [
        ("helicone-cache-enabled", "true"),
        ("x-mock-chunk-bytes", "7"),
    ];
    let r1 = env.post(&h, &b).await;
    assert_eq!(header(&r1, "helicone-cache").as_deref(), Some("MISS"));
    let first = r1.bytes().await.expect("stream");
    let r2 = env.post(&h, &b).await;
    assert_eq!(header(&r2, "helicone-cache").as_deref(), Some("HIT"));
    assert_eq!(
        header(&r2, "content-type").as_deref(),
        Some("text/event-stream; charset=utf-8")
    );
    let second = r2.bytes().await.expect("replay");
    assert_eq!(first, second);
    assert!(String::from_utf8_lossy(&second).ends_with("data: [DONE]\n\n"));
    // Claude streams translated to chat chunks are cached as the client saw them.
    let mut c = b.clone();
    c["model"] = json!("claude-sonnet-4-5");
    let first = env.post(&h, &c).await.bytes().await.expect("stream");
    let r = env.post(&h, &c).await;
    assert_eq!(header(&r, "helicone-cache").as_deref(), Some("HIT"));
    assert_eq!(r.bytes().await.expect("replay"), first);
    // A stream that broke is not cached.
    let bh = [
        ("helicone-cache-enabled", "true"),
        ("x-mock-schedule", "midstream,ok"),
        ("x-mock-schedule-key", "c-ms"),
    ];
    let mut d = b.clone();
    d["temperature"] = json!(0.7);
    assert!(env.post(&bh, &d).await.bytes().await.is_err());
    assert_eq!(
        header(&env.post(&bh, &d).await, "helicone-cache").as_deref(),
        Some("MISS")
    );
    let recs = env.records().await;
    let hits: Vec<&RequestRecord> = recs.iter().filter(|r| r.cache_hit).collect();
    assert_eq!(hits.len(), 2);
    assert!(
        hits.iter()
            .all(|h| h.stream && h.cost_usd == Some(Decimal::ZERO) && h.cost_saved_usd.is_some())
    );
}

#[tokio::test]
async fn cache_entries_are_per_org() {
    let env = start_with(
        GatewayConfig::default(),
        Keys(vec![
            ("loupe_key_org_a_0001", "org_a"),
            ("loupe_key_org_b_0001", "org_b"),
        ]),
        None,
    )
    .await;
    let a = [
        ("helicone-cache-enabled", "true"),
        ("authorization", "Bearer loupe_key_org_a_0001"),
    ];
    let b = [
        ("helicone-cache-enabled", "true"),
        ("authorization", "Bearer loupe_key_org_b_0001"),
    ];
    assert_eq!(
        header(&env.post(&a, &chat_body()).await, "helicone-cache").as_deref(),
        Some("MISS")
    );
    assert_eq!(
        header(&env.post(&b, &chat_body()).await, "helicone-cache").as_deref(),
        Some("MISS")
    );
    assert_eq!(
        header(&env.post(&a, &chat_body()).await, "helicone-cache").as_deref(),
        Some("HIT")
    );
}

// ---------------------------------------------------------------- rate limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_is_exact_under_concurrency() {
    let env = Arc::new(start(GatewayConfig::default()).await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let env = env.clone();
        tasks.spawn(async move {
            let r = env
                .post(&[("helicone-ratelimit-policy", "25;w=60")], &chat_body())
                .await;
            let s = r.status().as_u16();
            let hdrs = (
                header(&r, "helicone-ratelimit-limit"),
                header(&r, "helicone-ratelimit-remaining"),
                header(&r, "retry-after"),
            );
            let body: Value = r.json().await.unwrap_or_default();
            (s, hdrs, body)
        });
    }
    let mut ok = 0;
    let mut limited = 0;
    let mut remaining = std::collections::BTreeSet::new();
    while let Some(res) = tasks.join_next().await {
        let (s, (limit, rem, ra), body) = res.expect("task");
        assert_eq!(limit.as_deref(), Some("25"));
        match s {
            200 => {
                ok += 1;
                remaining.insert(rem.expect("remaining").parse::<u32>().expect("n"));
            }
            429 => {
                limited += 1;
                assert_eq!(rem.as_deref(), Some("0"));
                assert!(ra.is_some_and(|v| v.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s))));
                assert_eq!(body["error"]["type"], "rate_limit_error");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("25;w=60"))
                );
            }
            other => panic!("status {other}"),
        }
    }
    assert_eq!((ok, limited), (25, 35));
    assert_eq!(
        remaining,
        (0..25).collect(),
        "each admitted call saw its own count"
    );
    assert_eq!(
        env.mock.requests().len(),
        25,
        "refused calls never reach the provider"
    );
    assert_eq!(env.gw.metrics_snapshot().rate_limited, 35);
}

#[tokio::test]
async fn limits_segment_by_user_and_property_and_echo_the_policy() {
    let env = start(GatewayConfig::default()).await;
    let user = |u: &'static str| {
        [
            ("helicone-ratelimit-policy", "2;w=3600;s=user"),
            ("helicone-user-id", u),
        ]
    };
    let a1 = env.post(&user("alice"), &chat_body()).await;
    assert_eq!(
        header(&a1, "helicone-ratelimit-policy").as_deref(),
        Some("2;w=3600;s=user")
    );
    assert_eq!(
        header(&a1, "helicone-ratelimit-remaining").as_deref(),
        Some("1")
    );
    assert_eq!(
        header(&a1, "helicone-ratelimit-reset").as_deref(),
        Some("3600")
    );
    assert_eq!(env.post(&user("alice"), &chat_body()).await.status(), 200);
    assert_eq!(env.post(&user("alice"), &chat_body()).await.status(), 429);
    assert_eq!(env.post(&user("bob"), &chat_body()).await.status(), 200);

    let prop = |v: &'static str| {
        [
            ("loupe-ratelimit-policy", "1;w=60;s=Feature"),
            ("helicone-property-feature", v),
        ]
    };
    assert_eq!(env.post(&prop("search"), &chat_body()).await.status(), 200);
    assert_eq!(env.post(&prop("search"), &chat_body()).await.status(), 429);
    assert_eq!(env.post(&prop("chat"), &chat_body()).await.status(), 200);
}

#[tokio::test]
async fn cents_policies_are_charged_the_real_cost_after_the_answer() {
    let env = start(GatewayConfig::default()).await;
    // One call costs 0.01359 cents: the first is admitted (spend 0 < 0.02), the second too
    // (0.01359 < 0.02), then the spend (0.02718) is over and calls are refused.
    let h = [("helicone-ratelimit-policy", "0.02;w=60;u=cents")];
    assert_eq!(env.post(&h, &chat_body()).await.status(), 200);
    let r = env.post(&h, &chat_body()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "helicone-ratelimit-policy").as_deref(),
        Some("0.02;w=60;u=cents")
    );
    let r = env.post(&h, &chat_body()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(env.mock.requests().len(), 2);
}

#[tokio::test]
async fn a_bad_policy_is_ignored_when_failing_open_and_refused_when_failing_closed() {
    let bad = [("helicone-ratelimit-policy", "10;w=5")];
    let env = start(GatewayConfig::default()).await;
    assert_eq!(env.post(&bad, &chat_body()).await.status(), 200);

    let mut cfg = GatewayConfig::default();
    cfg.rate_limit.failure_mode = FailureMode::Closed;
    let env = start(cfg).await;
    let r = env.post(&bad, &chat_body()).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["error"]["message"],
        "Helicone-RateLimit-Policy '10;w=5': w=5: the window must be from 60 to 31536000 seconds"
    );
    assert!(env.mock.requests().is_empty());
}

struct BrokenStore;
impl RateLimitStore for BrokenStore {
    fn acquire(
        &self,
        _: String,
        _: Duration,
        _: f64,
        _: f64,
    ) -> BoxFuture<'static, Result<Decision, String>> {
        Box::pin(async { Err("connection refused".to_owned()) })
    }
    fn charge(&self, _: String, _: Duration, _: f64) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Err("connection refused".to_owned()) })
    }
}

#[tokio::test]
async fn a_failing_limiter_fails_open_by_default_and_closed_when_configured() {
    let h = [("helicone-ratelimit-policy", "1;w=60")];
    for (mode, want) in [(FailureMode::Open, 200), (FailureMode::Closed, 503)] {
        let mut cfg = GatewayConfig::default();
        cfg.rate_limit.failure_mode = mode;
        let mut stores = Stores::in_process(&cfg).expect("stores");
        stores.rate_limits = Arc::new(BrokenStore);
        let env = start_with(cfg, Keys(vec![]), Some(stores)).await;
        let r = env.post(&h, &chat_body()).await;
        assert_eq!(r.status(), want, "{mode:?}");
        let r = env.post(&h, &chat_body()).await;
        assert_eq!(r.status(), want, "{mode:?}: nothing is counted");
        if want == 503 {
            let body: Value = r.json().await.expect("json");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("failure_mode is 'closed'"))
            );
        }
    }
}

#[tokio::test]
async fn configured_policies_apply_per_org_and_per_key() {
    use sha2::Digest;
    let mut cfg = GatewayConfig::default();
    cfg.rate_limit.policies = vec![
        RateLimitPolicyConfig {
            policy: "1;w=60".into(),
            org: "org_a".into(),
            key_sha256: String::new(),
        },
        RateLimitPolicyConfig {
            policy: "2;w=60".into(),
            org: String::new(),
            key_sha256: hex::encode(sha2::Sha256::digest(b"loupe_key_org_b_0002")),
        },
    ];
    let env = start_with(
        cfg,
        Keys(vec![
            ("loupe_key_org_a_0001", "org_a"),
            ("loupe_key_org_b_0001", "org_b"),
            ("loupe_key_org_b_0002", "org_b"),
        ]),
        None,
    )
    .await;
    let key = |k: &'static str| [("authorization", k)];
    assert_eq!(
        env.post(&key("Bearer loupe_key_org_a_0001"), &chat_body())
            .await
            .status(),
        200
    );
    assert_eq!(
        env.post(&key("Bearer loupe_key_org_a_0001"), &chat_body())
            .await
            .status(),
        429
    );
    for _ in 0..3 {
        assert_eq!(
            env.post(&key("Bearer loupe_key_org_b_0001"), &chat_body())
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        env.post(&key("Bearer loupe_key_org_b_0002"), &chat_body())
            .await
            .status(),
        200
    );
    assert_eq!(
        env.post(&key("Bearer loupe_key_org_b_0002"), &chat_body())
            .await
            .status(),
        200
    );
    assert_eq!(
        env.post(&key("Bearer loupe_key_org_b_0002"), &chat_body())
            .await
            .status(),
        429
    );

    let mut bad = GatewayConfig::default();
    bad.rate_limit.policies = vec![RateLimitPolicyConfig {
        policy: "1;w=1".into(),
        ..Default::default()
    }];
    let e = Gateway::new(
        bad,
        ProvidersConfig::default(),
        Arc::new(PriceTable::bundled().expect("prices")),
        Arc::new(Collect::default()),
        Arc::new(Keys(vec![])),
    )
    .expect_err("bad policy");
    assert!(
        e.to_string()
            .contains("gateway.rate_limit.policies[0].policy"),
        "{e}"
    );
}
