//! Generator behaviour: determinism, loose distribution bounds, invariants every record keeps.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration, Timelike, Utc};
use loupe_model::{PriceTable, RequestRecord, Usage};
use loupe_testkit::{GenOptions, Generator, ModelKind, models};

fn prices() -> Arc<PriceTable> {
    static P: OnceLock<Arc<PriceTable>> = OnceLock::new();
    P.get_or_init(|| Arc::new(PriceTable::bundled().expect("bundled table")))
        .clone()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("valid time")
        .with_timezone(&Utc)
}

fn opts(seed: u64, count: u64) -> GenOptions {
    GenOptions {
        seed,
        start: t("2025-03-03T00:00:00Z"), // a Monday
        span: Duration::days(7),
        count,
        orgs: vec!["acme".into(), "globex".into(), "initech".into()],
        users: 500,
        with_bodies: false,
    }
}

fn generate(o: GenOptions) -> Vec<RequestRecord> {
    Generator::new(o, prices()).collect()
}

/// 20k records shared by the distribution tests.
fn sample() -> &'static [RequestRecord] {
    static S: OnceLock<Vec<RequestRecord>> = OnceLock::new();
    S.get_or_init(|| generate(opts(7, 20_000)))
}

fn share(records: &[RequestRecord], f: impl Fn(&RequestRecord) -> bool) -> f64 {
    records.iter().filter(|r| f(r)).count() as f64 / records.len() as f64
}

fn assert_between(what: &str, v: f64, lo: f64, hi: f64) {
    assert!(v >= lo && v <= hi, "{what} = {v}, expected in [{lo}, {hi}]");
}

#[test]
fn same_seed_same_records() {
    let a = generate(opts(1, 2000));
    let b = generate(opts(1, 2000));
    assert_eq!(a, b);
    let mut bodies = opts(1, 300);
    bodies.with_bodies = true;
    assert_eq!(generate(bodies.clone()), generate(bodies));
}

#[test]
fn different_seed_different_records() {
    let a = generate(opts(1, 500));
    let b = generate(opts(2, 500));
    assert_ne!(a, b);
    let ids: HashSet<_> = a.iter().map(|r| r.request_id).collect();
    assert!(b.iter().all(|r| !ids.contains(&r.request_id)));
    let differing_models = a.iter().zip(&b).filter(|(x, y)| x.model != y.model).count();
    assert!(differing_models > 100, "{differing_models}");
}

#[test]
fn iterator_batch_and_next_record_agree() {
    let mut g = Generator::new(opts(3, 100), prices());
    assert_eq!(g.len(), 100);
    let first = g.batch(40);
    assert_eq!(g.len(), 60);
    let rest: Vec<_> = g.by_ref().collect();
    assert_eq!(rest.len(), 60);
    assert_eq!(g.next(), None);
    let all = generate(opts(3, 100));
    assert_eq!([first, rest].concat(), all);
    // Past `count`, records keep coming, anywhere in the span.
    let extra = g.batch(200);
    assert!(
        extra
            .iter()
            .all(|r| r.created_at >= t("2025-03-03T00:00:00Z")
                && r.created_at < t("2025-03-10T00:00:00Z"))
    );
    assert!(extra.iter().any(|r| r.created_at < all[50].created_at));
    assert_eq!(g.generated(), 300);
}

#[test]
fn ids_are_unique_v4() {
    let records = sample();
    let ids: HashSet<_> = records.iter().map(|r| r.request_id).collect();
    assert_eq!(ids.len(), records.len());
    for r in records {
        assert_eq!(r.request_id.get_version_num(), 4);
        assert_eq!(r.request_id.get_variant(), uuid::Variant::RFC4122);
    }
}

#[test]
fn timestamps_cover_the_span_in_order() {
    let records = sample();
    let start = t("2025-03-03T00:00:00Z");
    let end = start + Duration::days(7);
    for w in records.windows(2) {
        assert!(w[0].created_at <= w[1].created_at, "not sorted");
    }
    for r in records {
        assert!(
            r.created_at >= start && r.created_at < end,
            "{}",
            r.created_at
        );
        assert_eq!(
            r.created_at.timestamp_subsec_nanos() % 1000,
            0,
            "µs precision"
        );
        assert_eq!(
            r.completed_at,
            r.created_at + Duration::milliseconds(r.latency_ms)
        );
        assert!(r.latency_ms > 0);
        if let Some(ttft) = r.ttft_ms {
            assert!(
                ttft >= 1 && ttft < r.latency_ms,
                "{ttft} vs {}",
                r.latency_ms
            );
            assert!(r.stream && r.status == 200);
        }
    }
    // Covers the whole week: first and last records are near the ends.
    assert!(records[0].created_at < start + Duration::hours(1));
    assert!(records[records.len() - 1].created_at > end - Duration::hours(2));
    // Daily cycle: the afternoon (UTC) is much busier than the small hours.
    let hour = |h: u32| records.iter().filter(|r| r.created_at.hour() == h).count();
    assert!(hour(15) > 2 * hour(3), "15h: {}, 3h: {}", hour(15), hour(3));
}

#[test]
fn status_stream_cache_and_source_mix() {
    let r = sample();
    assert_between("status 200", share(r, |x| x.status == 200), 0.95, 0.99);
    for code in [429, 500, 400] {
        assert!(r.iter().any(|x| x.status == code), "no {code}");
    }
    assert!(r.iter().any(|x| x.status == 503 || x.status == 529));
    for x in r.iter().filter(|x| x.status != 200) {
        assert!(x.error_type.is_some() && x.error_message.is_some());
        assert_eq!(x.total_tokens, 0);
        assert!(x.response_model.is_none() && !x.cache_hit);
    }
    for x in r.iter().filter(|x| x.status == 200) {
        assert!(x.error_type.is_none() && x.response_model.is_some());
    }
    assert_between("stream", share(r, |x| x.stream), 0.30, 0.50);
    assert_between("cache_hit", share(r, |x| x.cache_hit), 0.02, 0.08);
    assert_between(
        "gateway",
        share(r, |x| x.source == loupe_model::Source::Gateway),
        0.4,
        0.7,
    );
    assert!(r.iter().all(|x| {
        !x.stream
            || models()
                .iter()
                .any(|m| m.model == x.model && m.kind == ModelKind::Chat)
    }));
}

#[test]
fn costs_come_from_the_price_table() {
    let r = sample();
    let unknown = share(r, |x| !x.price_known);
    assert_between("unknown-model rows", unknown, 0.0005, 0.02);
    let table = prices();
    for x in r {
        let spec = models()
            .iter()
            .find(|m| m.provider == x.provider && m.model == x.model)
            .expect("model from the catalog");
        assert_eq!(x.price_known, x.cost_usd.is_some(), "{x:?}");
        if x.cache_hit {
            assert!(x.price_known && x.cost_usd.is_some_and(|c| c.is_zero()));
            continue;
        }
        assert_eq!(x.price_known, spec.priced, "{} {}", x.provider, x.model);
        let usage = Usage {
            prompt_tokens: x.prompt_tokens,
            completion_tokens: x.completion_tokens,
            cache_read_tokens: x.cache_read_tokens,
            cache_write_tokens: x.cache_write_tokens,
            cache_write_1h_tokens: 0,
            reasoning_tokens: x.reasoning_tokens,
            total_tokens: x.total_tokens,
        };
        assert_eq!(x.cost_usd, table.cost(&x.provider, &x.model, &usage).usd);
        if x.status == 200 && x.price_known {
            assert!(x.cost_usd.is_some_and(|c| !c.is_zero()), "{x:?}");
        }
    }
}

#[test]
fn token_invariants_and_shapes() {
    let r = sample();
    for x in r {
        assert!(x.prompt_tokens >= 0 && x.completion_tokens >= 0);
        assert!(x.cache_read_tokens + x.cache_write_tokens <= x.prompt_tokens);
        assert!(x.reasoning_tokens <= x.completion_tokens);
        assert_eq!(x.total_tokens, x.prompt_tokens + x.completion_tokens);
        if x.path == "/v1/embeddings" {
            assert_eq!(x.completion_tokens, 0);
            assert_eq!(x.model, "text-embedding-3-small");
        }
        if x.status == 200 {
            assert!(x.prompt_tokens > 0);
        }
    }
    let ok: Vec<_> = r.iter().filter(|x| x.status == 200).cloned().collect();
    let mut prompts: Vec<_> = ok.iter().map(|x| x.prompt_tokens).collect();
    prompts.sort_unstable();
    let median = prompts[prompts.len() / 2];
    assert!((400..=1600).contains(&median), "prompt median {median}");
    assert!(prompts[prompts.len() - 1] > 20_000, "long tail");
    let mut completions: Vec<_> = ok
        .iter()
        .filter(|x| x.path != "/v1/embeddings")
        .map(|x| x.completion_tokens)
        .collect();
    completions.sort_unstable();
    let median = completions[completions.len() / 2];
    assert!((100..=400).contains(&median), "completion median {median}");
    // Prompt caching on roughly 30 % of OpenAI and Anthropic calls.
    let oa: Vec<_> = ok
        .iter()
        .filter(|x| {
            (x.provider == "openai" && x.path != "/v1/embeddings") || x.provider == "anthropic"
        })
        .cloned()
        .collect();
    assert_between(
        "cache reads (openai/anthropic)",
        share(&oa, |x| x.cache_read_tokens > 0),
        0.15,
        0.45,
    );
    assert!(ok.iter().any(|x| x.cache_write_tokens > 0));
    // Reasoning models think.
    for m in ["o3-mini", "gemini-2.5-pro", "deepseek-reasoner"] {
        assert!(
            ok.iter()
                .filter(|x| x.model == m)
                .all(|x| x.reasoning_tokens > 0),
            "{m}"
        );
    }
    assert!(
        ok.iter()
            .filter(|x| x.model == "gpt-4o-mini")
            .all(|x| x.reasoning_tokens == 0)
    );
}

#[test]
fn latency_is_long_tailed() {
    let mut lat: Vec<_> = sample()
        .iter()
        .filter(|x| x.status == 200 && !x.cache_hit && x.model == "gpt-4o-mini")
        .map(|x| x.latency_ms)
        .collect();
    lat.sort_unstable();
    let median = lat[lat.len() / 2] as f64;
    let p99 = lat[lat.len() * 99 / 100] as f64;
    assert!((300.0..=4000.0).contains(&median), "{median}");
    assert_between("p99 / median", p99 / median, 4.0, 25.0);
}

#[test]
fn users_sessions_properties_traces() {
    let r = sample();
    let orgs: HashSet<_> = r.iter().map(|x| x.org_id.as_str()).collect();
    assert_eq!(orgs, HashSet::from(["acme", "globex", "initech"]));
    let acme = share(r, |x| x.org_id == "acme");
    assert!(acme > share(r, |x| x.org_id == "initech"));
    assert_between("anonymous", share(r, |x| x.user_id.is_none()), 0.03, 0.15);
    let users: HashSet<_> = r.iter().filter_map(|x| x.user_id.as_deref()).collect();
    assert!(users.len() > 100 && users.len() <= 500);
    assert!(
        share(r, |x| x.user_id.as_deref() == Some("user_0"))
            > share(r, |x| x.user_id.as_deref() == Some("user_50"))
    );
    assert_between(
        "in sessions",
        share(r, |x| x.session_id.is_some()),
        0.2,
        0.4,
    );
    for x in r {
        assert_eq!(x.session_id.is_some(), x.session_path.is_some());
        assert_eq!(x.session_id.is_some(), x.session_name.is_some());
        if let Some(p) = &x.session_path {
            assert!(p.starts_with('/'));
        }
        let env = x.properties.get("environment").map(String::as_str);
        assert!(matches!(env, Some("production" | "staging" | "dev")));
        assert!(x.properties.contains_key("feature"));
        assert_eq!(
            x.properties.contains_key("customer_tier"),
            x.user_id.is_some()
        );
        assert_eq!(x.trace_id.is_some(), x.span_id.is_some());
        if let (Some(t), Some(s)) = (&x.trace_id, &x.span_id) {
            assert!(t.len() == 32 && s.len() == 16);
            assert!(
                t.chars()
                    .chain(s.chars())
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
    }
    assert!(r.iter().any(|x| x.properties.contains_key("workflow_step")));
    assert_between("traced", share(r, |x| x.trace_id.is_some()), 0.1, 0.3);
    // A session keeps its user, org and environment across steps, and has several steps.
    let first = r
        .iter()
        .find(|x| x.session_path.as_deref() == Some("/plan/search/summarize"))
        .expect("a research session");
    let steps: Vec<_> = r
        .iter()
        .filter(|x| x.session_id == first.session_id)
        .collect();
    assert!(steps.len() >= 3);
    for s in &steps {
        assert_eq!((&s.org_id, &s.user_id), (&first.org_id, &first.user_id));
        assert_eq!(
            s.properties.get("environment"),
            first.properties.get("environment")
        );
        assert_eq!(s.session_name, first.session_name);
    }
    // Tiers are fixed per user.
    let mut tier_of = std::collections::HashMap::new();
    for x in r {
        if let (Some(u), Some(t)) = (&x.user_id, x.properties.get("customer_tier")) {
            assert_eq!(tier_of.entry(u.clone()).or_insert(t.clone()), t);
        }
    }
}

#[test]
fn paths_match_providers() {
    for x in sample() {
        let ok = match x.provider.as_str() {
            "openai" => x.path == "/v1/chat/completions" || x.path == "/v1/embeddings",
            "anthropic" => x.path == "/v1/messages",
            "gemini" => {
                x.path == format!("/v1beta/models/{}:generateContent", x.model)
                    || x.path == format!("/v1beta/models/{}:streamGenerateContent", x.model)
            }
            "groq" => x.path == "/openai/v1/chat/completions",
            "mistral" => x.path == "/v1/chat/completions",
            "deepseek" => x.path == "/chat/completions",
            other => panic!("unexpected provider {other}"),
        };
        assert!(ok, "{} {}", x.provider, x.path);
    }
}

#[test]
fn degenerate_options_do_not_panic() {
    let o = GenOptions {
        orgs: vec![],
        users: 0,
        span: Duration::zero(),
        count: 50,
        ..GenOptions::default()
    };
    let start = o.start;
    let records = generate(o);
    assert_eq!(records.len(), 50);
    assert!(
        records
            .iter()
            .all(|r| r.org_id == "default" && r.user_id.is_none() && r.created_at == start)
    );
    let none = generate(GenOptions {
        count: 0,
        ..GenOptions::default()
    });
    assert!(none.is_empty());
    // Sub-microsecond start: rounded up, so nothing is before it.
    let odd = t("2025-01-01T00:00:00.000000500Z");
    let records = generate(GenOptions {
        start: odd,
        count: 10,
        ..GenOptions::default()
    });
    assert!(records.iter().all(|r| r.created_at >= odd));
}
