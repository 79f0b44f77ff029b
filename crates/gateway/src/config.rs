//! `[gateway]` and `[providers.<name>]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Model name → `provider/model`, consulted before the built-in rules
    /// (e.g. `"fast" = "groq/llama-3.3-70b-versatile"`).
    pub model_map: BTreeMap<String, String>,
    /// Whole-call timeout for non-streamed calls and the wait for a stream's first byte.
    pub upstream_timeout_secs: u64,
    /// Records waiting for storage; past it new records are dropped (and counted), calls go on.
    pub record_queue: usize,
    /// Bodies larger than this are not stored (the call itself is not affected).
    pub max_stored_body_bytes: usize,
    /// Largest request body accepted from a client.
    pub max_request_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            model_map: BTreeMap::new(),
            upstream_timeout_secs: 600,
            record_queue: 10_000,
            max_stored_body_bytes: 1 << 20,
            max_request_bytes: 32 << 20,
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
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            kind: ProviderKind::Openai,
            base_url: String::new(),
            api_key: Secret::default(),
            api_key_env: String::new(),
            api_version: "2024-10-21".into(),
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ProvidersConfig(pub BTreeMap<String, ProviderConfig>);

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
            ("ollama", "http://127.0.0.1:11434/v1", ""),
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
}
