//! `[gateway]` and `[providers.<name>]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Model name → `provider/model`, consulted before the built-in rules
    /// (e.g. `"fast" = "groq/llama-3.3-70b-versatile"`).
    pub model_map: BTreeMap<String, String>,
    /// Whole-call timeout for non-streamed calls and the wait for a stream's first byte (504).
    pub upstream_timeout_secs: u64,
    /// A stream on which the provider sends nothing for this long is cut off (and recorded as
    /// `upstream_stream_timeout`).
    pub stream_idle_timeout_secs: u64,
    /// Time allowed to open a connection to a provider (502 past it).
    pub connect_timeout_secs: u64,
    /// Records waiting for storage; past it new records are dropped (and counted), calls go on.
    pub record_queue: usize,
    /// Bodies larger than this are not stored (the call itself is not affected).
    pub max_stored_body_bytes: usize,
    /// Largest request body accepted from a client.
    pub max_request_bytes: usize,
    /// Retries for every call (a route's `retry` and the `Helicone-Retry-*` headers override it).
    pub retry: RetryConfig,
    /// Per requested model: retries, fallbacks and caching for calls asking for that model.
    pub routes: BTreeMap<String, RouteConfig>,
    /// The response cache (`Helicone-Cache-*`).
    pub cache: CacheConfig,
    /// Rate limits (`Helicone-RateLimit-Policy` and configured policies).
    pub rate_limit: RateLimitConfig,
}

/// `[gateway.retry]` (and `retry` of a route): Helicone's retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retry failed calls (429, 5xx, unreachable, timeouts) without the client asking.
    pub enabled: bool,
    /// Retries after the first attempt (Helicone `helicone-retry-num`, default 5).
    pub num: u32,
    /// Exponential backoff factor (default 2).
    pub factor: f64,
    /// First backoff in ms (default 1000).
    pub min_timeout_ms: u64,
    /// Largest backoff in ms (default 10000); a `retry-after` longer than this is not waited for.
    pub max_timeout_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: false,
            num: 5,
            factor: 2.0,
            min_timeout_ms: 1000,
            max_timeout_ms: 10_000,
        }
    }
}

/// `[gateway.routes."<model>"]`: defaults for calls asking for `<model>` (the name in the body,
/// before `model_map`); headers of a call still win.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Retry settings for this model (replaces `[gateway.retry]`).
    pub retry: Option<RetryConfig>,
    /// Models tried in order when this one fails (429, 5xx, unreachable, timeout), e.g.
    /// `["gpt-4o-mini", "anthropic/claude-haiku-4-5"]` (same form as `Loupe-Fallback-Models`).
    pub fallbacks: Vec<String>,
    /// Cache this model's answers (as `Helicone-Cache-Enabled: true`).
    pub cache: Option<bool>,
}

/// Where a failing rate limiter leaves a call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Invalid policy header or limiter error: the call goes through unlimited (Helicone's way).
    #[default]
    Open,
    /// Invalid policy header: 400; limiter error: 503.
    Closed,
}

/// `[gateway.rate_limit]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub failure_mode: FailureMode,
    /// Policies applied to calls without any header (`[[gateway.rate_limit.policies]]`).
    pub policies: Vec<RateLimitPolicyConfig>,
}

/// One configured policy: Helicone's policy syntax, optionally only for one org or one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitPolicyConfig {
    /// `quota;w=seconds;u=request|cents;s=user|<property>`, e.g. `"1000;w=3600;s=user"`.
    pub policy: String,
    /// Only calls of this org (empty: every org; each org has its own counters anyway).
    pub org: String,
    /// Only calls made with this Loupe API key: its hex SHA-256 (empty: any key).
    pub key_sha256: String,
}

/// `[gateway.cache]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Cache every call (as `Helicone-Cache-Enabled: true`); default: only when asked.
    pub enabled: bool,
    /// Memory bound of the in-process cache (bodies + headers), bytes.
    pub max_bytes: u64,
    /// Answers larger than this are not cached.
    pub max_entry_bytes: usize,
    /// Optional on-disk tier: a directory (empty: memory only). Entries survive restarts.
    pub disk_dir: String,
    /// Bound of the on-disk tier, bytes (new entries are not written past it).
    pub disk_max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            max_bytes: 256 << 20,
            max_entry_bytes: 4 << 20,
            disk_dir: String::new(),
            disk_max_bytes: 4 << 30,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            model_map: BTreeMap::new(),
            upstream_timeout_secs: 600,
            stream_idle_timeout_secs: 300,
            connect_timeout_secs: 10,
            record_queue: 10_000,
            max_stored_body_bytes: 1 << 20,
            max_request_bytes: 32 << 20,
            retry: RetryConfig::default(),
            routes: BTreeMap::new(),
            cache: CacheConfig::default(),
            rate_limit: RateLimitConfig::default(),
        }
    }
}

/// The API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI and every OpenAI-compatible API (Groq, Mistral, DeepSeek, OpenRouter, Together,
    /// Ollama, vLLM, Gemini's OpenAI endpoint): `Authorization: Bearer`.
    Openai,
    /// Anthropic Messages: `x-api-key`, `anthropic-version`.
    Anthropic,
    /// Azure OpenAI: `{base_url}/openai/deployments/{model}/…?api-version=…`, `api-key` header.
    Azure,
}

/// An API key that never shows in `Debug` output or logs.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// `[providers.<name>]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// Base URL up to and including the version segment, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// The key Loupe uses in gateway mode. Empty: the standard env var (`api_key_env`).
    pub api_key: Secret,
    /// Env var read when `api_key` is empty, e.g. `OPENAI_API_KEY`.
    pub api_key_env: String,
    /// Azure: the `api-version` query parameter.
    pub api_version: String,
    /// Azure: model name → deployment name (a model not listed is its own deployment name).
    pub deployments: BTreeMap<String, String>,
    /// OpenAI-shaped streams of chat/completions: ask the provider for the final usage chunk
    /// (`stream_options.include_usage`) when the client did not, so streamed calls are priced.
    /// Turn off for a server that rejects `stream_options` (Loupe also retries once without it
    /// when a provider answers 400/422 naming `stream_options`).
    pub stream_usage: bool,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            kind: ProviderKind::Openai,
            base_url: String::new(),
            api_key: Secret::default(),
            api_key_env: String::new(),
            api_version: "2024-10-21".into(),
            deployments: BTreeMap::new(),
            stream_usage: true,
        }
    }
}

impl ProviderConfig {
    fn openai(base: &str, env: &str) -> Self {
        ProviderConfig {
            base_url: base.into(),
            api_key_env: env.into(),
            ..ProviderConfig::default()
        }
    }

    /// The configured key, else the env var's.
    pub fn key(&self) -> Option<String> {
        if !self.api_key.0.is_empty() {
            return Some(self.api_key.0.clone());
        }
        if self.api_key_env.is_empty() {
            return None;
        }
        std::env::var(&self.api_key_env)
            .ok()
            .filter(|k| !k.is_empty())
    }
}

/// `[providers]`: the built-in providers (override any field) plus any you add.
///
/// Deserializing overlays what is written on the built-ins, key by key, so
/// `[providers.openai] api_key = "…"` keeps OpenAI's `base_url`, and a new `[providers.vllm]`
/// with only `base_url` is an OpenAI-compatible provider. Unknown keys are errors.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct ProvidersConfig(pub BTreeMap<String, ProviderConfig>);

/// One `[providers.<name>]` table as written: only the keys given.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderPatch {
    kind: Option<ProviderKind>,
    base_url: Option<String>,
    api_key: Option<Secret>,
    api_key_env: Option<String>,
    api_version: Option<String>,
    deployments: Option<BTreeMap<String, String>>,
    stream_usage: Option<bool>,
}

impl<'de> Deserialize<'de> for ProvidersConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let patches = BTreeMap::<String, ProviderPatch>::deserialize(d)?;
        let mut out = ProvidersConfig::default();
        for (name, p) in patches {
            let e = out.0.entry(name).or_default();
            if let Some(v) = p.kind {
                e.kind = v;
            }
            if let Some(v) = p.base_url {
                e.base_url = v;
            }
            if let Some(v) = p.api_key {
                e.api_key = v;
            }
            if let Some(v) = p.api_key_env {
                e.api_key_env = v;
            }
            if let Some(v) = p.api_version {
                e.api_version = v;
            }
            if let Some(v) = p.deployments {
                e.deployments = v;
            }
            if let Some(v) = p.stream_usage {
                e.stream_usage = v;
            }
        }
        Ok(out)
    }
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        let mut m = BTreeMap::new();
        m.insert(
            "openai".into(),
            ProviderConfig::openai("https://api.openai.com/v1", "OPENAI_API_KEY"),
        );
        m.insert(
            "anthropic".into(),
            ProviderConfig {
                kind: ProviderKind::Anthropic,
                ..ProviderConfig::openai("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY")
            },
        );
        m.insert(
            "gemini".into(),
            ProviderConfig::openai(
                "https://generativelanguage.googleapis.com/v1beta/openai",
                "GEMINI_API_KEY",
            ),
        );
        for (name, base, env) in [
            ("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
            ("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
            (
                "deepseek",
                "https://api.deepseek.com/v1",
                "DEEPSEEK_API_KEY",
            ),
            (
                "openrouter",
                "https://openrouter.ai/api/v1",
                "OPENROUTER_API_KEY",
            ),
            (
                "together",
                "https://api.together.xyz/v1",
                "TOGETHER_API_KEY",
            ),
            ("xai", "https://api.x.ai/v1", "XAI_API_KEY"),
            (
                "fireworks",
                "https://api.fireworks.ai/inference/v1",
                "FIREWORKS_API_KEY",
            ),
            ("ollama", "http://127.0.0.1:11434/v1", ""),
            ("vllm", "http://127.0.0.1:8000/v1", ""),
        ] {
            m.insert(name.into(), ProviderConfig::openai(base, env));
        }
        m.insert(
            "azure".into(),
            ProviderConfig {
                kind: ProviderKind::Azure,
                ..ProviderConfig::openai("", "AZURE_OPENAI_API_KEY")
            },
        );
        ProvidersConfig(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_show_in_debug_output() {
        let mut p = ProvidersConfig::default();
        if let Some(o) = p.0.get_mut("openai") {
            o.api_key = Secret("sk-very-secret".into());
        }
        let s = format!("{p:?}");
        assert!(!s.contains("sk-very-secret"), "{s}");
        assert!(s.contains("***"));
    }

    #[derive(Deserialize)]
    struct Wrap {
        providers: ProvidersConfig,
    }

    #[test]
    fn written_tables_overlay_the_built_ins() {
        let w: Wrap = toml::from_str(
            "[providers.openai]\napi_key = \"sk-x\"\n[providers.local]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             [providers.azure]\nbase_url = \"https://r.openai.azure.com\"\ndeployments = { \"gpt-4o\" = \"prod-4o\" }\n",
        )
        .expect("parse");
        let p = &w.providers.0;
        assert_eq!(p["openai"].base_url, "https://api.openai.com/v1");
        assert_eq!(p["openai"].key().as_deref(), Some("sk-x"));
        assert_eq!(p["local"].kind, ProviderKind::Openai);
        assert_eq!(p["azure"].kind, ProviderKind::Azure);
        assert_eq!(p["azure"].deployments["gpt-4o"], "prod-4o");
        assert!(p.contains_key("anthropic") && p.contains_key("groq"));
        let bad = toml::from_str::<Wrap>("[providers.openai]\nbase_ur = \"x\"\n");
        assert!(bad.err().is_some_and(|e| e.to_string().contains("base_ur")));
    }
}
