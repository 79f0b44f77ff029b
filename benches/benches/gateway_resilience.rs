//! Gateway resilience overheads, in-process gateway and mock provider over loopback, one
//! keep-alive client, non-streamed chat completions:
//!
//! * `plain` — the proxy path alone (baseline);
//! * `ratelimit` — plus a `Helicone-RateLimit-Policy` check (never refused);
//! * `cache_miss` — plus a cache lookup that misses and a save (a new seed each call);
//! * `cache_hit` — answered from the cache (the provider is not called).
//!
//! Criterion measures each; then a report interleaves the four (2000 calls each, 50 under
//! `LOUPE_BENCH_SMOKE=1`) and prints p50/p99, calls/s and each path's cost relative to `plain`,
//! all measured in the same run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::future::BoxFuture;
use loupe_benches::{prices, smoke};
use loupe_gateway::{Gateway, GatewayConfig, KeyResolver, ProviderKind, ProvidersConfig, Secret};
use loupe_model::{AppendAck, EventSink, RequestRecord, SinkError};
use loupe_testkit::mock_upstream::{MockUpstream, provider_fixture};

struct NoKeys;
impl KeyResolver for NoKeys {
    fn enabled(&self) -> bool {
        false
    }
    fn org_of(&self, _: &str) -> Option<String> {
        None
    }
}

struct Discard;
impl EventSink for Discard {
    fn append(&self, records: Vec<RequestRecord>) -> BoxFuture<'_, Result<AppendAck, SinkError>> {
        let n = records.len();
        Box::pin(async move {
            Ok(AppendAck {
                accepted: n,
                duplicates: 0,
            })
        })
    }
}

struct Env {
    _mock: MockUpstream,
    _gw: Arc<Gateway>,
    url: String,
    client: reqwest::Client,
    body: String,
    seed: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Plain,
    RateLimit,
    CacheMiss,
    CacheHit,
}

const PATHS: [(Path, &str); 4] = [
    (Path::Plain, "plain"),
    (Path::RateLimit, "ratelimit"),
    (Path::CacheMiss, "cache_miss"),
    (Path::CacheHit, "cache_hit"),
];

impl Env {
    async fn start() -> Env {
        let mock = MockUpstream::start().await;
        let mut p = ProvidersConfig::default();
        let e = p.0.entry("openai".into()).or_default();
        e.kind = ProviderKind::Openai;
        e.base_url = format!("{}/v1", mock.url);
        e.api_key = Secret("sk-bench-0001".into());
        let gw = Gateway::new(
            GatewayConfig::default(),
            p,
            prices(),
            Arc::new(Discard),
            Arc::new(NoKeys),
        )
        .expect("gateway");
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let l = axum::serve::ListenerExt::tap_io(l, |s| {
            let _ = s.set_nodelay(true);
        });
        let app = gw.router();
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Env {
            _mock: mock,
            _gw: gw,
            url,
            client: reqwest::Client::new(),
            body: provider_fixture("openai_chat_request.json"),
            seed: AtomicU64::new(0),
        }
    }

    async fn call(&self, path: Path) {
        let mut r = self
            .client
            .post(format!("{}/v1/chat/completions", self.url))
            .header("content-type", "application/json")
            .body(self.body.clone());
        match path {
            Path::Plain => {}
            Path::RateLimit => {
                r = r.header("helicone-ratelimit-policy", "1000000000;w=3600;s=user");
            }
            Path::CacheMiss => {
                let seed = self.seed.fetch_add(1, Ordering::Relaxed);
                r = r
                    .header("helicone-cache-enabled", "true")
                    .header("helicone-cache-seed", seed.to_string());
            }
            Path::CacheHit => r = r.header("helicone-cache-enabled", "true"),
        }
        let resp = r.send().await.expect("send");
        assert_eq!(resp.status(), 200);
        if path == Path::CacheHit {
            debug_assert!(resp.headers().contains_key("helicone-cache"));
        }
        resp.bytes().await.expect("body");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(rt: &tokio::runtime::Runtime, env: &Env) {
    let n = if smoke() { 50 } else { 2000 };
    let mut lat: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); PATHS.len()];
    let mut total = [Duration::ZERO; 4];
    rt.block_on(async {
        for (p, _) in PATHS {
            env.call(p).await; // warm
        }
        for _ in 0..n {
            for (i, (p, _)) in PATHS.iter().enumerate() {
                let t = Instant::now();
                env.call(*p).await;
                let d = t.elapsed();
                lat[i].push(d);
                total[i] += d;
            }
        }
    });
    let base_mean = total[0].as_secs_f64() / n as f64;
    println!("\ngateway resilience report ({n} calls per path, interleaved, loopback, one client)");
    println!("path        p50 µs   p99 µs   mean µs   calls/s   mean vs plain");
    for (i, (_, name)) in PATHS.iter().enumerate() {
        lat[i].sort();
        let mean = total[i].as_secs_f64() / n as f64;
        println!(
            "{name:<10} {:>8.0} {:>8.0} {:>9.0} {:>9.0}   {:.3}",
            percentile(&lat[i], 0.5).as_secs_f64() * 1e6,
            percentile(&lat[i], 0.99).as_secs_f64() * 1e6,
            mean * 1e6,
            1.0 / mean,
            mean / base_mean
        );
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let env = rt.block_on(Env::start());
    let mut group = c.benchmark_group("gateway_resilience");
    group
        .sample_size(if smoke() { 10 } else { 50 })
        .measurement_time(Duration::from_secs(if smoke() { 1 } else { 5 }));
    for (path, name) in PATHS {
        group.bench_function(name, |b| b.iter(|| rt.block_on(env.call(path))));
    }
    group.finish();
    report(&rt, &env);
}

criterion_group!(benches, bench);
criterion_main!(benches);
