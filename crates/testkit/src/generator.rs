//! The synthetic request-log generator.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, SubsecRound, TimeDelta, TimeZone, Utc};
use loupe_model::{PriceTable, RequestRecord, Source, Usage};
use rand::Rng as _;
use uuid::{Builder, Uuid};

use crate::bodies;
use crate::catalog::{self, Api, EMBEDDING_MODEL, ModelKind, ModelSpec, Reasoning, models};
use crate::errors::{self, Failure};
use crate::rng::Rng;
use crate::timeline::Timeline;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Same seed (and same other options) ⇒ identical records.
    pub seed: u64,
    /// First possible `created_at` (rounded up to the microsecond).
    pub start: DateTime<Utc>,
    /// Records are spread over `[start, start + span)`.
    pub span: Duration,
    /// How many records the generator is for: record `i` of `count` is placed at about
    /// `i / count` of the span's traffic, so `count` records cover the whole span in
    /// nondecreasing `created_at` order. The iterator yields exactly `count` records. Set it to
    /// the number you will generate: [`Generator::next_record`] and [`Generator::batch`] keep
    /// going past it, but those extra records get random instants in the span (still in range,
    /// still following the daily cycle) and are no longer sorted.
    pub count: u64,
    /// Organisations; the first is the busiest (Zipf-like). Empty means `["default"]`.
    pub orgs: Vec<String>,
    /// Size of the `user_{i}` pool (Zipf-like: `user_0` is the most active). 0: no user ids.
    pub users: usize,
    /// Fill `request_body` / `response_body` with provider-shaped JSON (or SSE for streams).
    pub with_bodies: bool,
}

impl Default for GenOptions {
    /// Seed 42, one day from 2025-01-01T00:00:00Z, 10 000 records, org `default`, 1000 users,
    /// no bodies.
    fn default() -> Self {
        GenOptions {
            seed: 42,
            start: Utc
                .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            span: Duration::days(1),
            count: 10_000,
            orgs: vec!["default".to_owned()],
            users: 1000,
            with_bodies: false,
        }
    }
}

/// Share of records that fail, and how (the rest are 200).
const FAILURES: [(Failure, f64); 4] = [
    (Failure::RateLimited, 0.013),
    (Failure::ServerError, 0.006),
    (Failure::Overloaded, 0.006),
    (Failure::BadRequest, 0.005),
];
const SESSION_SHARE: f64 = 0.30;
const MAX_ACTIVE_SESSIONS: usize = 6;
const STREAM_SHARE_OF_CHAT: f64 = 0.42;
const GATEWAY_SHARE: f64 = 0.55;
/// Gateway cache hits: 9 % of successful gateway calls ≈ 5 % of all records.
const CACHE_HIT_SHARE_OF_GATEWAY: f64 = 0.09;
const TRACED_SHARE: f64 = 0.20;
const ANONYMOUS_SHARE: f64 = 0.08;
const USER_ZIPF: f64 = 1.1;
const ORG_ZIPF: f64 = 0.9;

/// Features of one-off (non-session) chat calls: (name, weight, prompt median, completion median).
const FEATURES: [(&str, f64, f64, f64); 8] = [
    ("chat", 34.0, 480.0, 180.0),
    ("summarize", 14.0, 1800.0, 220.0),
    ("search", 10.0, 1200.0, 200.0),
    ("agent-step", 12.0, 2100.0, 150.0),
    ("classify", 10.0, 260.0, 10.0),
    ("extract", 9.0, 800.0, 120.0),
    ("translate", 6.0, 400.0, 380.0),
    ("code-review", 5.0, 1600.0, 300.0),
];

/// Session workflows: (session_name, feature, path steps). A session runs a prefix of its steps
/// (some are abandoned early); steps whose last segment embeds use the embedding model.
const WORKFLOWS: [(&str, &str, &[&str]); 5] = [
    (
        "Research assistant",
        "agent-step",
        &[
            "/plan",
            "/plan/search",
            "/plan/search/summarize",
            "/plan/search",
            "/plan/search/summarize",
            "/plan/answer",
        ],
    ),
    (
        "Support ticket triage",
        "support",
        &[
            "/classify",
            "/classify/retrieve",
            "/classify/retrieve/draft_reply",
            "/classify/retrieve/draft_reply/review",
        ],
    ),
    (
        "Code review",
        "code-review",
        &[
            "/diff",
            "/diff/review_file",
            "/diff/review_file",
            "/diff/review_file",
            "/diff/summary",
        ],
    ),
    (
        "Customer chat",
        "chat",
        &[
            "/chat", "/chat", "/chat", "/chat", "/chat", "/chat", "/chat", "/chat", "/chat",
        ],
    ),
    (
        "Document Q&A",
        "search",
        &[
            "/ingest",
            "/ingest/embed",
            "/ingest/embed",
            "/query",
            "/query/search",
            "/query/answer",
        ],
    ),
];
const WORKFLOW_WEIGHTS: [f64; 5] = [3.0, 2.5, 1.5, 4.0, 2.0];

fn is_embedding_step(path: &str) -> bool {
    matches!(
        path.rsplit('/').next(),
        Some("search" | "retrieve" | "embed")
    )
}

#[derive(Debug, Clone)]
struct Session {
    id: String,
    workflow: usize,
    /// Steps this session will run (a prefix of the workflow's).
    len: usize,
    step: usize,
    org: usize,
    user: Option<u64>,
    environment: &'static str,
    model: usize,
    trace_id: Option<String>,
    sets_workflow_step: bool,
}

/// Everything about a record decided before its model call is simulated.
struct Context {
    org: usize,
    user: Option<u64>,
    environment: &'static str,
    feature: &'static str,
    model: usize,
    /// (session_id, path, name, step index)
    session: Option<(String, String, &'static str, usize)>,
    workflow_step: Option<String>,
    trace_id: Option<String>,
    prompt_median: f64,
    completion_median: f64,
}

/// Deterministic generator of realistic request records (see the crate docs).
#[derive(Debug, Clone)]
pub struct Generator {
    opts: GenOptions,
    prices: Arc<PriceTable>,
    rng: Rng,
    timeline: Timeline,
    index: u64,
    last_created: DateTime<Utc>,
    orgs: Vec<String>,
    model_weights: Vec<f64>,
    chat_model_weights: Vec<f64>,
    feature_weights: Vec<f64>,
    sessions: Vec<Session>,
}

/// A v4 UUID whose random bits come from `rng`.
fn uuid_v4(rng: &mut Rng) -> Uuid {
    let bits: u128 = rng.random();
    Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
}

fn trace_id(rng: &mut Rng) -> String {
    format!("{:032x}", rng.u128().max(1))
}

fn span_id(rng: &mut Rng) -> String {
    format!("{:016x}", rng.next().max(1))
}

/// Rounds up to the next microsecond (no-op when already at microsecond precision).
fn ceil_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let down = t.trunc_subsecs(6);
    if down < t {
        down.checked_add_signed(TimeDelta::microseconds(1))
            .unwrap_or(down)
    } else {
        down
    }
}

fn clamp_tokens(v: f64, lo: i64, hi: i64) -> i64 {
    let hi = hi.max(lo);
    if v.is_nan() {
        return lo;
    }
    (v.round() as i64).clamp(lo, hi)
}

impl Generator {
    pub fn new(opts: GenOptions, prices: Arc<PriceTable>) -> Self {
        let start = ceil_micros(opts.start);
        let timeline = Timeline::new(start, opts.span);
        let orgs = if opts.orgs.is_empty() {
            vec!["default".to_owned()]
        } else {
            opts.orgs.clone()
        };
        let model_weights = models().iter().map(|m| m.weight).collect();
        let chat_model_weights = models()
            .iter()
            .map(|m| {
                if m.kind == ModelKind::Chat {
                    m.weight
                } else {
                    0.0
                }
            })
            .collect();
        let feature_weights = FEATURES.iter().map(|f| f.1).collect();
        Generator {
            rng: Rng::seed_from(opts.seed),
            opts,
            prices,
            timeline,
            index: 0,
            last_created: start,
            orgs,
            model_weights,
            chat_model_weights,
            feature_weights,
            sessions: Vec::new(),
        }
    }

    /// The options this generator was made with.
    pub fn options(&self) -> &GenOptions {
        &self.opts
    }

    /// How many records have been generated so far.
    pub fn generated(&self) -> u64 {
        self.index
    }

    /// `n` more records (see [`GenOptions::count`] for records past the count).
    pub fn batch(&mut self, n: usize) -> Vec<RequestRecord> {
        (0..n).map(|_| self.next_record()).collect()
    }

    fn pick_org(&mut self) -> usize {
        self.rng.zipf(self.orgs.len() as u64, ORG_ZIPF) as usize
    }

    fn pick_user(&mut self) -> Option<u64> {
        if self.opts.users == 0 || self.rng.chance(ANONYMOUS_SHARE) {
            return None;
        }
        Some(self.rng.zipf(self.opts.users as u64, USER_ZIPF))
    }

    fn pick_environment(&mut self) -> &'static str {
        match self.rng.f64() {
            x if x < 0.82 => "production",
            x if x < 0.95 => "staging",
            _ => "dev",
        }
    }

    /// The next record, continuing an open session or starting a one-off call.
    pub fn next_record(&mut self) -> RequestRecord {
        let i = self.index;
        self.index += 1;
        let created_at = if i < self.opts.count {
            let q = (i as f64 + self.rng.f64()) / self.opts.count as f64;
            // Float rounding must never reorder records.
            let t = self.timeline.at(q).max(self.last_created);
            self.last_created = t;
            t
        } else {
            // Past `count`: anywhere in the span (still with the daily cycle), unsorted.
            let q = self.rng.f64();
            self.timeline.at(q)
        };

        let ctx = if self.rng.chance(SESSION_SHARE) {
            self.session_context()
        } else {
            self.one_off_context()
        };
        self.simulate(created_at, ctx)
    }

    fn one_off_context(&mut self) -> Context {
        let org = self.pick_org();
        let user = self.pick_user();
        let environment = self.pick_environment();
        let model = self.rng.weighted(&self.model_weights);
        let (feature, prompt_median, completion_median) =
            if models()[model].kind == ModelKind::Embedding {
                if self.rng.chance(0.6) {
                    ("search", 40.0, 0.0)
                } else {
                    ("index", 450.0, 0.0)
                }
            } else {
                let f = FEATURES[self.rng.weighted(&self.feature_weights)];
                (f.0, f.2, f.3)
            };
        let workflow_step = self.rng.chance(0.05).then(|| {
            (*self
                .rng
                .pick(&["draft", "refine", "validate", "final", "retry"]))
            .to_owned()
        });
        let trace_id = self
            .rng
            .chance(TRACED_SHARE)
            .then(|| trace_id(&mut self.rng));
        Context {
            org,
            user,
            environment,
            feature,
            model,
            session: None,
            workflow_step,
            trace_id,
            prompt_median,
            completion_median,
        }
    }

    fn new_session(&mut self) -> Session {
        let workflow = self.rng.weighted(&WORKFLOW_WEIGHTS);
        let steps = WORKFLOWS[workflow].2.len();
        // Most sessions finish; some are abandoned part-way.
        let len = if self.rng.chance(0.75) {
            steps
        } else {
            self.rng.int(1, steps as i64) as usize
        };
        Session {
            id: uuid_v4(&mut self.rng).to_string(),
            workflow,
            len,
            step: 0,
            org: self.pick_org(),
            user: self.pick_user(),
            environment: self.pick_environment(),
            model: self.rng.weighted(&self.chat_model_weights),
            trace_id: self
                .rng
                .chance(TRACED_SHARE)
                .then(|| trace_id(&mut self.rng)),
            sets_workflow_step: self.rng.chance(0.5),
        }
    }

    fn session_context(&mut self) -> Context {
        let slot = if self.sessions.is_empty()
            || (self.sessions.len() < MAX_ACTIVE_SESSIONS && self.rng.chance(0.2))
        {
            let s = self.new_session();
            self.sessions.push(s);
            self.sessions.len() - 1
        } else {
            self.rng.below(self.sessions.len() as u64) as usize
        };
        let s = self.sessions[slot].clone();
        let step = s.step;
        if step + 1 >= s.len {
            self.sessions.swap_remove(slot);
        } else {
            self.sessions[slot].step += 1;
        }
        let (name, feature, paths) = WORKFLOWS[s.workflow];
        let path = paths[step.min(paths.len() - 1)];
        let embed = is_embedding_step(path);
        let model = if embed { EMBEDDING_MODEL } else { s.model };
        // Conversations and agent loops carry their history: prompts grow with each step.
        let growth = 1.0 + 0.35 * step as f64;
        let (prompt_median, completion_median) = if embed {
            (120.0, 0.0)
        } else {
            let f = FEATURES
                .iter()
                .find(|f| f.0 == feature)
                .map_or((900.0, 220.0), |f| (f.2, f.3));
            (f.0 * growth, f.1)
        };
        let workflow_step = s
            .sets_workflow_step
            .then(|| path.rsplit('/').next().unwrap_or(path).to_owned());
        Context {
            org: s.org,
            user: s.user,
            environment: s.environment,
            feature,
            model,
            session: Some((s.id, path.to_owned(), name, step)),
            workflow_step,
            trace_id: s.trace_id,
            prompt_median,
            completion_median,
        }
    }

    fn failure(&mut self) -> Option<Failure> {
        let mut x = self.rng.f64();
        for (f, p) in FAILURES {
            if x < p {
                return Some(f);
            }
            x -= p;
        }
        None
    }

    /// Successful-call token counts.
    fn usage(&mut self, spec: &ModelSpec, ctx: &Context) -> Usage {
        let prompt_cap = (spec.context * 9 / 10).min(300_000);
        let prompt = clamp_tokens(
            self.rng.lognormal(ctx.prompt_median, 1.2),
            if spec.kind == ModelKind::Embedding {
                1
            } else {
                8
            },
            prompt_cap,
        );
        let (completion, reasoning) = if spec.kind == ModelKind::Embedding {
            (0, 0)
        } else {
            let visible = clamp_tokens(
                self.rng.lognormal(ctx.completion_median.max(1.0), 0.9),
                1,
                spec.max_output,
            );
            let reasoning = match spec.reasoning {
                Reasoning::Sometimes { p, median } if self.rng.chance(p) => {
                    clamp_tokens(self.rng.lognormal(median, 0.8), 16, spec.max_output)
                }
                _ => 0,
            };
            let completion = (visible + reasoning).min(spec.max_output.max(1));
            (completion, reasoning.min(completion))
        };
        let c = spec.caching;
        let mut cache_read = 0;
        let mut cache_write = 0;
        if prompt >= c.min_prompt {
            if self.rng.chance(c.p_read) {
                let f = self.rng.uniform(0.35, 0.97);
                cache_read = ((prompt as f64 * f) as i64 / c.granularity * c.granularity)
                    .max(c.min_prompt.min(prompt))
                    .min(prompt);
            }
            if self.rng.chance(c.p_write) {
                let rest = prompt - cache_read;
                cache_write = (rest as f64 * self.rng.uniform(0.3, 0.9)) as i64;
            }
        }
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            cache_write_1h_tokens: 0,
            reasoning_tokens: reasoning,
            total_tokens: prompt + completion,
        }
    }

    fn simulate(&mut self, created_at: DateTime<Utc>, ctx: Context) -> RequestRecord {
        let spec = &models()[ctx.model];
        let request_id = uuid_v4(&mut self.rng);
        let mut rec = RequestRecord::new(request_id, self.orgs[ctx.org].clone(), created_at);
        rec.provider = spec.provider.to_owned();
        rec.model = spec.model.to_owned();
        rec.stream = spec.kind == ModelKind::Chat && self.rng.chance(STREAM_SHARE_OF_CHAT);
        rec.path = catalog::path(spec, rec.stream);
        rec.source = if self.rng.chance(GATEWAY_SHARE) {
            Source::Gateway
        } else {
            Source::Async
        };

        let failure = self.failure();
        let error = failure.map(|f| errors::provider_error(&mut self.rng, spec, f));
        let usage = match &error {
            None => self.usage(spec, &ctx),
            Some(_) => Usage::default(),
        };
        rec.cache_hit = error.is_none()
            && rec.source == Source::Gateway
            && self.rng.chance(CACHE_HIT_SHARE_OF_GATEWAY);

        // Latency: model-dependent log-normal, longer for longer outputs (p99 ≈ 10× median).
        let latency = match (failure, rec.cache_hit) {
            (Some(Failure::RateLimited), _) => self.rng.lognormal(90.0, 0.6),
            (Some(Failure::BadRequest), _) => self.rng.lognormal(160.0, 0.5),
            (Some(Failure::ServerError), _) => {
                self.rng.lognormal(spec.latency_median_ms * 0.6, 0.9)
            }
            (Some(Failure::Overloaded), _) => self
                .rng
                .lognormal(spec.latency_median_ms * 0.4 + 200.0, 0.9),
            (None, true) => self.rng.lognormal(18.0, 0.5),
            (None, false) => {
                let size = if spec.kind == ModelKind::Embedding {
                    (usage.prompt_tokens as f64 / 300.0).powf(0.2)
                } else {
                    // Relative to this model's typical output, so the median stays the model's.
                    let typical = 200.0
                        + match spec.reasoning {
                            Reasoning::Sometimes { p, median } => p * median,
                            Reasoning::None => 0.0,
                        };
                    (usage.completion_tokens as f64 / typical).powf(0.35)
                };
                self.rng.lognormal(spec.latency_median_ms, 0.9) * size
            }
        };
        let min_latency = if rec.cache_hit { 2 } else { 20 };
        rec.latency_ms = clamp_tokens(latency, min_latency, 600_000);
        rec.completed_at = created_at + TimeDelta::milliseconds(rec.latency_ms);
        if rec.stream && error.is_none() {
            let share = self.rng.uniform(0.05, 0.5);
            rec.ttft_ms = Some(clamp_tokens(
                rec.latency_ms as f64 * share,
                1,
                rec.latency_ms - 1,
            ));
        }

        if let Some(e) = &error {
            rec.status = e.status;
            rec.error_type = Some(e.error_type.clone());
            rec.error_message = Some(e.message.clone());
            if e.status == 429 {
                // What the provider answers with a 429 (no draw from the rng: the rest of the
                // stream stays as it was).
                let wait = (rec.latency_ms % 30 + 1).to_string();
                let remaining = if spec.api == Api::Anthropic {
                    "anthropic-ratelimit-requests-remaining"
                } else {
                    "x-ratelimit-remaining-requests"
                };
                rec.upstream_headers.insert("retry-after".into(), wait);
                rec.upstream_headers.insert(remaining.into(), "0".into());
            }
        } else {
            rec.response_model = Some(spec.response_model.to_owned());
        }
        rec.prompt_tokens = usage.prompt_tokens;
        rec.completion_tokens = usage.completion_tokens;
        rec.cache_read_tokens = usage.cache_read_tokens;
        rec.cache_write_tokens = usage.cache_write_tokens;
        rec.reasoning_tokens = usage.reasoning_tokens;
        rec.total_tokens = usage.total_tokens;

        if rec.cache_hit {
            // Served from Loupe's cache: nothing was paid to the provider; the first call's
            // cost was saved.
            rec.cost_usd = Some(Default::default());
            rec.price_known = true;
            rec.cost_saved_usd = self.prices.cost(spec.provider, spec.model, &usage).usd;
        } else {
            let cost = self.prices.cost(spec.provider, spec.model, &usage);
            rec.price_known = cost.usd.is_some();
            rec.cost_usd = cost.usd;
        }

        if rec.source == Source::Gateway && !rec.cache_hit {
            // Gateway retries and fallbacks, derived from what is already drawn (no rng draw,
            // so the rest of the stream stays as it was): one call in 16 needed a retry after
            // a 503, one in 32 of those answered from its first fallback.
            rec.attempt = Some(1);
            if error.is_none() && rec.latency_ms % 16 == 0 {
                let fell_back = rec.latency_ms % 32 == 0;
                rec.attempt = Some(2);
                rec.fallback_index = fell_back.then_some(1);
                rec.attempts = vec![loupe_model::Attempt {
                    attempt: 1,
                    fallback_index: 0,
                    provider: spec.provider.to_owned(),
                    model: spec.model.to_owned(),
                    status: 503,
                    error_type: Some("http_503".into()),
                    error: Some("The server is overloaded or not ready yet.".into()),
                    latency_ms: rec.latency_ms / 8,
                    backoff_ms: if fell_back { 0 } else { 1000 },
                }];
            }
        }
        rec.user_id = ctx.user.map(|u| format!("user_{u}"));
        let mut props = BTreeMap::new();
        props.insert("environment".to_owned(), ctx.environment.to_owned());
        props.insert("feature".to_owned(), ctx.feature.to_owned());
        if let Some(u) = ctx.user {
            props.insert("customer_tier".to_owned(), customer_tier(u).to_owned());
        }
        if let Some(step) = ctx.workflow_step {
            props.insert("workflow_step".to_owned(), step);
        }
        rec.properties = props;
        if let Some((id, path, name, _)) = ctx.session {
            rec.session_id = Some(id);
            rec.session_path = Some(path);
            rec.session_name = Some(name.to_owned());
        }
        if let Some(t) = ctx.trace_id {
            rec.trace_id = Some(t);
            rec.span_id = Some(span_id(&mut self.rng));
        }

        if self.opts.with_bodies {
            let estimate = if rec.prompt_tokens > 0 {
                rec.prompt_tokens
            } else {
                ctx.prompt_median as i64
            };
            rec.request_body = Some(bodies::request(
                &mut self.rng,
                spec,
                &rec,
                ctx.feature,
                estimate,
            ));
            rec.response_body = Some(match &error {
                Some(e) => e.body.to_string(),
                None => bodies::success_response(&mut self.rng, spec, &rec),
            });
        }
        rec
    }
}

/// A user's plan, fixed per user id (a hash, not the RNG, so it never varies between records).
fn customer_tier(user: u64) -> &'static str {
    let h = user.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
    match h {
        0..=614 => "free",
        615..=921 => "pro",
        _ => "enterprise",
    }
}

impl Iterator for Generator {
    type Item = RequestRecord;

    /// Yields the `count` records of [`GenOptions::count`], then `None`.
    fn next(&mut self) -> Option<RequestRecord> {
        (self.index < self.opts.count).then(|| self.next_record())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.opts.count.saturating_sub(self.index);
        let left = usize::try_from(left).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Generator {}
