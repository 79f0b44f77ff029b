//! The response cache: Helicone's `Helicone-Cache-*` headers over a [`CacheStore`].
//!
//! Key: SHA-256 of the org, the endpoint, the seed, the bucket index, the headers that change an
//! answer (`anthropic-version`, `anthropic-beta`, `openai-organization`, `openai-project`, the
//! target URL and fallbacks, the caller's own provider key) and the canonical request body —
//! JSON with object keys sorted, so key order does not matter, minus the top-level keys named
//! in `Helicone-Cache-Ignore-Keys`. The model and every parameter are in the body, so the same
//! messages with another model or temperature miss.
//!
//! Buckets: `Helicone-Cache-Bucket-Max-Size: n` (1–20) keeps up to `n` answers per key; a
//! lookup misses while any slot is empty (so the bucket fills first), then picks a slot at
//! random. Streams are cached too: the SSE text the client received, replayed event by event.
//!
//! The default store ([`TieredCache`]) is an in-process cache bounded by bytes (quick_cache,
//! S3-FIFO eviction) with an optional on-disk tier. Expiry is checked against the time stored
//! with each entry, on tokio's clock for the memory tier (so tests can pause it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use bytes::Bytes;
use futures::future::BoxFuture;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::GatewayError;
use crate::config::GatewayConfig;
use crate::proxy::meta_header;

/// Default lifetime of an entry (Helicone: 7 days).
pub const DEFAULT_TTL: Duration = Duration::from_secs(604_800);
/// Longest lifetime (Helicone: 365 days).
pub const MAX_TTL: Duration = Duration::from_secs(31_536_000);
/// Largest bucket.
pub const MAX_BUCKET: u8 = 20;

/// A cache key: SHA-256.
pub type CacheKey = [u8; 32];

/// Token counts of the cached answer (recorded again on each hit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedUsage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub total_tokens: i64,
}

/// A cached answer: what the client received, and what the call was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub status: u16,
    /// Response headers as the client got them, without Loupe's per-call ones.
    pub headers: Vec<(String, String)>,
    /// The body; for streams the SSE text.
    #[serde(skip)]
    pub body: Bytes,
    pub stream: bool,
    pub provider: String,
    pub model: String,
    pub response_model: Option<String>,
    pub usage: Option<CachedUsage>,
    /// What the original call cost (saved by each hit).
    pub cost_usd: Option<Decimal>,
}

impl CachedAnswer {
    fn weight(&self) -> u64 {
        let h: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum();
        (self.body.len() + h + self.provider.len() + self.model.len() + 256) as u64
    }
}

/// Where cached answers live. In process: [`TieredCache`]. A shared store for several gateway
/// nodes (Redis: `SET key value PX ttl`, `GET key`) implements the same two calls.
pub trait CacheStore: Send + Sync + 'static {
    fn get(&self, key: CacheKey) -> BoxFuture<'static, Result<Option<Arc<CachedAnswer>>, String>>;
    fn put(
        &self,
        key: CacheKey,
        value: Arc<CachedAnswer>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), String>>;
}

#[derive(Clone)]
struct ByBytes;

impl quick_cache::Weighter<CacheKey, (Arc<CachedAnswer>, Instant)> for ByBytes {
    fn weight(&self, _k: &CacheKey, v: &(Arc<CachedAnswer>, Instant)) -> u64 {
        v.0.weight()
    }
}

/// Memory tier bounded by bytes, plus an optional disk tier.
pub struct TieredCache {
    mem: Arc<quick_cache::sync::Cache<CacheKey, (Arc<CachedAnswer>, Instant), ByBytes>>,
    disk: Option<Arc<DiskTier>>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("entries", &self.mem.len())
            .field("disk", &self.disk.as_ref().map(|d| d.dir.clone()))
            .finish()
    }
}

impl TieredCache {
    /// A memory cache of at most `max_bytes`, and a disk tier under `disk_dir` (bounded by
    /// `disk_max_bytes`) when given. Ended entries on disk are removed on open.
    pub fn new(
        max_bytes: u64,
        disk_dir: Option<&Path>,
        disk_max_bytes: u64,
    ) -> Result<TieredCache, String> {
        let disk = match disk_dir {
            Some(d) => Some(Arc::new(DiskTier::open(d, disk_max_bytes)?)),
            None => None,
        };
        Ok(TieredCache {
            mem: Arc::new(quick_cache::sync::Cache::with_weighter(
                ((max_bytes / 4096) as usize).clamp(16, 1 << 20),
                max_bytes.max(1),
                ByBytes,
            )),
            disk,
        })
    }

    /// Entries in memory now.
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }
}

impl CacheStore for TieredCache {
    fn get(&self, key: CacheKey) -> BoxFuture<'static, Result<Option<Arc<CachedAnswer>>, String>> {
        let now = Instant::now();
        match self.mem.get(&key) {
            Some((v, until)) if now < until => {
                return Box::pin(std::future::ready(Ok(Some(v))));
            }
            Some(_) => {
                self.mem.remove(&key);
            }
            None => {}
        }
        let Some(disk) = self.disk.clone() else {
            return Box::pin(std::future::ready(Ok(None)));
        };
        let mem = self.mem.clone();
        Box::pin(async move {
            let found = tokio::task::spawn_blocking(move || disk.read(&key))
                .await
                .map_err(|e| e.to_string())??;
            Ok(found.map(|(v, left)| {
                let v = Arc::new(v);
                mem.insert(key, (v.clone(), Instant::now() + left));
                v
            }))
        })
    }

    fn put(
        &self,
        key: CacheKey,
        value: Arc<CachedAnswer>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.mem.insert(key, (value.clone(), Instant::now() + ttl));
        let Some(disk) = self.disk.clone() else {
            return Box::pin(std::future::ready(Ok(())));
        };
        Box::pin(async move {
            tokio::task::spawn_blocking(move || disk.write(&key, &value, ttl))
                .await
                .map_err(|e| e.to_string())?
        })
    }
}

/// On-disk entries: `<dir>/<2 hex>/<64 hex>`, each a JSON line (the answer's metadata and its
/// expiry in Unix ms) followed by the body. Written to a temp file and renamed, so a crash never
/// leaves half an entry. Past `max_bytes` no new entries are written; ended entries are deleted
/// when met and on open.
#[derive(Debug)]
struct DiskTier {
    dir: PathBuf,
    max_bytes: u64,
    bytes: AtomicU64,
}

#[derive(Serialize, Deserialize)]
struct DiskMeta {
    expires_unix_ms: i64,
    answer: CachedAnswer,
}

fn unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl DiskTier {
    fn open(dir: &Path, max_bytes: u64) -> Result<DiskTier, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("gateway.cache.disk_dir {}: {e}", dir.display()))?;
        let now = unix_ms();
        let mut total = 0u64;
        for sub in std::fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
            let Ok(files) = std::fs::read_dir(sub.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                match read_meta_expiry(&p) {
                    Some(exp) if exp > now => {
                        total += f.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                    _ => {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        }
        Ok(DiskTier {
            dir: dir.to_owned(),
            max_bytes,
            bytes: AtomicU64::new(total),
        })
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        let h = hex::encode(key);
        self.dir.join(&h[..2]).join(h)
    }

    fn read(&self, key: &CacheKey) -> Result<Option<(CachedAnswer, Duration)>, String> {
        let p = self.path(key);
        let raw = match std::fs::read(&p) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let Some(nl) = raw.iter().position(|b| *b == b'\n') else {
            let _ = std::fs::remove_file(&p);
            return Ok(None);
        };
        let Ok(meta) = serde_json::from_slice::<DiskMeta>(&raw[..nl]) else {
            let _ = std::fs::remove_file(&p);
            return Ok(None);
        };
        let left = meta.expires_unix_ms - unix_ms();
        if left <= 0 {
            if std::fs::remove_file(&p).is_ok() {
                self.bytes.fetch_sub(
                    (raw.len() as u64).min(self.bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
            }
            return Ok(None);
        }
        let mut answer = meta.answer;
        answer.body = Bytes::copy_from_slice(&raw[nl + 1..]);
        Ok(Some((answer, Duration::from_millis(left as u64))))
    }

    fn write(&self, key: &CacheKey, v: &CachedAnswer, ttl: Duration) -> Result<(), String> {
        let meta = DiskMeta {
            expires_unix_ms: unix_ms().saturating_add(ttl.as_millis() as i64),
            answer: v.clone(),
        };
        let mut out = serde_json::to_vec(&meta).map_err(|e| e.to_string())?;
        out.push(b'\n');
        out.extend_from_slice(&v.body);
        let size = out.len() as u64;
        if self.bytes.load(Ordering::Relaxed) + size > self.max_bytes {
            return Ok(());
        }
        let p = self.path(key);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let tmp = p.with_extension(format!("tmp{}", rand::random::<u32>()));
        std::fs::write(&tmp, &out).map_err(|e| e.to_string())?;
        let old = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        std::fs::rename(&tmp, &p).map_err(|e| e.to_string())?;
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.bytes.fetch_sub(
            old.min(self.bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        Ok(())
    }
}

fn read_meta_expiry(p: &Path) -> Option<i64> {
    use std::io::BufRead;
    let f = std::fs::File::open(p).ok()?;
    let mut line = Vec::new();
    std::io::BufReader::new(f)
        .read_until(b'\n', &mut line)
        .ok()?;
    let v: Value = serde_json::from_slice(line.strip_suffix(b"\n")?).ok()?;
    v.get("expires_unix_ms")?.as_i64()
}

/// What the headers (and config) of a call ask of the cache.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CacheSettings {
    pub read: bool,
    pub write: bool,
    pub ttl: Duration,
    pub bucket: u8,
    pub seed: Option<String>,
    pub ignore_keys: Vec<String>,
}

/// `None` when the call does not use the cache.
pub(crate) fn settings(
    h: &HeaderMap,
    cfg: &GatewayConfig,
    model: &str,
) -> Result<Option<CacheSettings>, GatewayError> {
    let is_true = |n: &str| meta_header(h, n).map(|v| v.eq_ignore_ascii_case("true"));
    let (read, write) = match is_true("cache-enabled") {
        Some(true) => (true, true),
        Some(false) => (false, false),
        None => {
            let on = cfg
                .routes
                .get(model)
                .and_then(|r| r.cache)
                .unwrap_or(cfg.cache.enabled);
            (on, on)
        }
    };
    let read = is_true("cache-read").unwrap_or(read);
    let write = is_true("cache-save").unwrap_or(write);
    if !read && !write {
        return Ok(None);
    }
    let bucket = match meta_header(h, "cache-bucket-max-size") {
        None => 1,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > u64::from(MAX_BUCKET) => {
                return Err(GatewayError::BadRequest(format!(
                    "Cache bucket size cannot be greater than {MAX_BUCKET} (Helicone-Cache-Bucket-Max-Size: {v})"
                )));
            }
            Ok(n) if n >= 1 => n as u8,
            _ => {
                return Err(GatewayError::BadRequest(format!(
                    "Helicone-Cache-Bucket-Max-Size '{v}' must be a whole number from 1 to {MAX_BUCKET}"
                )));
            }
        },
    };
    Ok(Some(CacheSettings {
        read,
        write,
        ttl: ttl_of(h),
        bucket,
        seed: meta_header(h, "cache-seed").map(str::to_owned),
        ignore_keys: meta_header(h, "cache-ignore-keys")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    }))
}

/// `Cache-Control: max-age=N` / `s-maxage=N` (s-maxage wins); default 7 days, at most 365.
fn ttl_of(h: &HeaderMap) -> Duration {
    let mut max_age = None;
    let mut s_maxage = None;
    for v in h
        .get_all("cache-control")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for d in v.split(',') {
            let Some((k, n)) = d.trim().split_once('=') else {
                continue;
            };
            let n = n.trim().trim_matches('"').parse::<u64>().ok();
            match k.trim().to_ascii_lowercase().as_str() {
                "max-age" => max_age = n.or(max_age),
                "s-maxage" => s_maxage = n.or(s_maxage),
                _ => {}
            }
        }
    }
    s_maxage
        .or(max_age)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TTL)
        .min(MAX_TTL)
}

/// Headers that can change an answer, and so are part of the key.
const KEYED_HEADERS: &[&str] = &[
    "anthropic-version",
    "anthropic-beta",
    "openai-organization",
    "openai-project",
    "helicone-target-url",
    "loupe-target-url",
    "helicone-fallbacks",
    "loupe-fallbacks",
    "helicone-fallback-models",
    "loupe-fallback-models",
];

/// The keys of the bucket slots `0..settings.bucket`.
pub(crate) fn keys(
    org: &str,
    path: &str,
    body: &Value,
    s: &CacheSettings,
    h: &HeaderMap,
    caller_key: Option<&str>,
) -> Vec<CacheKey> {
    let mut base = Sha256::new();
    let mut field = |name: &str, v: &[u8]| {
        base.update((name.len() as u64).to_le_bytes());
        base.update(name.as_bytes());
        base.update((v.len() as u64).to_le_bytes());
        base.update(v);
    };
    field("v", b"1");
    field("org", org.as_bytes());
    field("path", path.as_bytes());
    field("seed", s.seed.as_deref().unwrap_or_default().as_bytes());
    for name in KEYED_HEADERS {
        for v in h.get_all(*name) {
            field(name, v.as_bytes());
        }
    }
    if let Some(k) = caller_key {
        field("key", &Sha256::digest(k.as_bytes()));
    }
    let mut canon = String::with_capacity(256);
    match body {
        Value::Object(o) if !s.ignore_keys.is_empty() => {
            let mut o = o.clone();
            for k in &s.ignore_keys {
                o.remove(k);
            }
            canonical(&Value::Object(o), &mut canon);
        }
        _ => canonical(body, &mut canon),
    }
    field("body", canon.as_bytes());
    (0..s.bucket.max(1))
        .map(|i| {
            let mut k = base.clone();
            k.update([i]);
            k.finalize().into()
        })
        .collect()
}

/// JSON with object keys sorted (whatever serde_json's map order), numbers and strings as
/// serde_json writes them.
pub(crate) fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = o.get(k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The result of looking a bucket up.
pub(crate) enum Lookup {
    Hit {
        answer: Arc<CachedAnswer>,
        idx: usize,
    },
    /// Save into `slot` (the first empty one).
    Miss { slot: usize },
}

/// Reads the bucket: a miss while any slot is empty, else a slot at random. A failing store
/// is a miss (the call goes to the provider).
pub(crate) async fn lookup(store: &dyn CacheStore, keys: &[CacheKey]) -> Lookup {
    let mut found = Vec::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        match store.get(*k).await {
            Ok(Some(a)) => found.push(a),
            Ok(None) => return Lookup::Miss { slot: i },
            Err(e) => {
                tracing::warn!(error = %e, "cache read failed; treated as a miss");
                return Lookup::Miss { slot: i };
            }
        }
    }
    let idx = if found.len() > 1 {
        rand::random_range(0..found.len())
    } else {
        0
    };
    match found.into_iter().nth(idx) {
        Some(answer) => Lookup::Hit { answer, idx },
        None => Lookup::Miss { slot: 0 },
    }
}

/// Response headers never cached (per call).
pub(crate) fn per_call_header(name: &str) -> bool {
    matches!(name, "helicone-id" | "loupe-id" | "helicone-fallback-index")
        || name.starts_with("helicone-cache")
        || name.starts_with("helicone-ratelimit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn answer(body: &str) -> Arc<CachedAnswer> {
        Arc::new(CachedAnswer {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.to_owned()),
            stream: false,
            provider: "openai".into(),
            model: "gpt-4o".into(),
            response_model: None,
            usage: None,
            cost_usd: None,
        })
    }

    fn settings_of(pairs: &[(&'static str, &str)]) -> Result<Option<CacheSettings>, GatewayError> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("v"));
        }
        settings(&h, &GatewayConfig::default(), "m")
    }

    #[test]
    fn headers_parse_like_helicone() {
        assert_eq!(settings_of(&[]).expect("ok"), None);
        assert_eq!(
            settings_of(&[("helicone-cache-enabled", "yes")]).expect("ok"),
            None
        );
        let s = settings_of(&[("helicone-cache-enabled", "TRUE")])
            .expect("ok")
            .expect("on");
        assert!(s.read && s.write && s.bucket == 1 && s.ttl == DEFAULT_TTL);
        let s = settings_of(&[("loupe-cache-save", "true")])
            .expect("ok")
            .expect("on");
        assert!(!s.read && s.write);
        let s = settings_of(&[("helicone-cache-read", "true")])
            .expect("ok")
            .expect("on");
        assert!(s.read && !s.write);
        let s = settings_of(&[
            ("helicone-cache-enabled", "true"),
            ("cache-control", "max-age=60, s-maxage=120"),
            ("helicone-cache-bucket-max-size", "20"),
            ("helicone-cache-seed", "user-1"),
            ("helicone-cache-ignore-keys", "user, metadata"),
        ])
        .expect("ok")
        .expect("on");
        assert_eq!(s.ttl, Duration::from_secs(120));
        assert_eq!(s.bucket, 20);
        assert_eq!(s.seed.as_deref(), Some("user-1"));
        assert_eq!(s.ignore_keys, ["user", "metadata"]);
        let s = settings_of(&[
            ("helicone-cache-enabled", "true"),
            ("cache-control", "max-age=99999999999"),
        ])
        .expect("ok")
        .expect("on");
        assert_eq!(s.ttl, MAX_TTL);
        let e = settings_of(&[
            ("helicone-cache-enabled", "true"),
            ("helicone-cache-bucket-max-size", "21"),
        ])
        .expect_err("21");
        assert!(e.to_string().contains("cannot be greater than 20"), "{e}");
        let e = settings_of(&[
            ("helicone-cache-enabled", "true"),
            ("helicone-cache-bucket-max-size", "0"),
        ])
        .expect_err("0");
        assert!(e.to_string().contains("from 1 to 20"), "{e}");
    }

    #[test]
    fn keys_ignore_key_order_but_not_model_or_temperature() {
        let s = settings_of(&[("helicone-cache-enabled", "true")])
            .expect("ok")
            .expect("on");
        let h = HeaderMap::new();
        let k = |body: &str, s: &CacheSettings| {
            let v: Value = serde_json::from_str(body).expect("json");
            keys("org", "/v1/chat/completions", &v, s, &h, None)[0]
        };
        let a = k(
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
            &s,
        );
        let b = k(
            r#"{"temperature":0,"messages":[{"content":"hi","role":"user"}],"model":"gpt-4o"}"#,
            &s,
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            k(
                r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
                &s
            )
        );
        assert_ne!(
            a,
            k(
                r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":1}"#,
                &s
            )
        );
        let mut seeded = s.clone();
        seeded.seed = Some("x".into());
        assert_ne!(
            a,
            k(
                r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
                &seeded
            )
        );
        let mut ign = s.clone();
        ign.ignore_keys = vec!["user".into()];
        assert_eq!(
            k(r#"{"model":"m","user":"a"}"#, &ign),
            k(r#"{"model":"m","user":"b"}"#, &ign)
        );
        assert_ne!(
            k(r#"{"model":"m","user":"a"}"#, &s),
            k(r#"{"model":"m","user":"b"}"#, &s)
        );
        let v: Value = serde_json::from_str(r#"{"model":"m"}"#).expect("json");
        assert_ne!(
            keys("org_a", "/v1/chat/completions", &v, &s, &h, None),
            keys("org_b", "/v1/chat/completions", &v, &s, &h, None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_on_tokio_time_and_buckets_fill_first() {
        let c = TieredCache::new(1 << 20, None, 0).expect("cache");
        let k = [7u8; 32];
        c.put(k, answer("a"), Duration::from_secs(60))
            .await
            .expect("put");
        assert!(c.get(k).await.expect("get").is_some());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(c.get(k).await.expect("get").is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(c.get(k).await.expect("get").is_none());

        let keys = [[1u8; 32], [2u8; 32], [3u8; 32]];
        for expected_slot in 0..3 {
            match lookup(&c, &keys).await {
                Lookup::Miss { slot } => assert_eq!(slot, expected_slot),
                Lookup::Hit { .. } => panic!("bucket not full yet"),
            }
            c.put(
                keys[expected_slot],
                answer(&expected_slot.to_string()),
                DEFAULT_TTL,
            )
            .await
            .expect("put");
        }
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            match lookup(&c, &keys).await {
                Lookup::Hit { answer, idx } => {
                    assert_eq!(answer.body, Bytes::from(idx.to_string()));
                    seen.insert(idx);
                }
                Lookup::Miss { .. } => panic!("full bucket missed"),
            }
        }
        assert_eq!(seen.len(), 3, "every slot is picked sometimes");
    }

    #[test]
    fn memory_is_bounded() {
        let c = TieredCache::new(64 << 10, None, 0).expect("cache");
        let big = "x".repeat(4096);
        for i in 0..200u8 {
            drop(c.put([i; 32], answer(&big), DEFAULT_TTL));
        }
        let held: u64 = (0..200u8)
            .filter_map(|i| c.mem.get(&[i; 32]))
            .map(|(v, _)| v.weight())
            .sum();
        assert!(held <= 64 << 10, "{held}");
        assert!(c.len() < 200);
    }

    #[tokio::test]
    async fn disk_tier_survives_a_restart_and_drops_ended_entries() {
        let dir = tempfile::tempdir().expect("dir");
        let k = [9u8; 32];
        {
            let c = TieredCache::new(1 << 20, Some(dir.path()), 1 << 20).expect("cache");
            let mut a = (*answer("persisted")).clone();
            a.stream = true;
            a.cost_usd = Some(Decimal::new(15, 4));
            c.put(k, Arc::new(a), Duration::from_secs(3600))
                .await
                .expect("put");
            c.put([8u8; 32], answer("short"), Duration::ZERO)
                .await
                .expect("put");
        }
        let c = TieredCache::new(1 << 20, Some(dir.path()), 1 << 20).expect("reopen");
        let got = c.get(k).await.expect("get").expect("on disk");
        assert_eq!(got.body, Bytes::from("persisted"));
        assert!(got.stream);
        assert_eq!(got.cost_usd, Some(Decimal::new(15, 4)));
        assert!(c.get([8u8; 32]).await.expect("get").is_none());
        // A full disk tier takes no more entries (memory still does).
        let small = TieredCache::new(1 << 20, Some(&dir.path().join("small")), 10).expect("small");
        small
            .put(k, answer("too big for 10 bytes"), DEFAULT_TTL)
            .await
            .expect("put");
        let again = TieredCache::new(1 << 20, Some(&dir.path().join("small")), 10).expect("small");
        assert!(again.get(k).await.expect("get").is_none());
    }
}
