//! The models the generator draws from, with their popularity and behaviour.

/// What kind of endpoint a model serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Chat / messages / generateContent: prompt and completion tokens.
    Chat,
    /// Embeddings: prompt tokens only.
    Embedding,
}

/// How a provider's API is shaped (paths, usage objects, error bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    OpenAi,
    Anthropic,
    Gemini,
    Groq,
    Mistral,
    DeepSeek,
}

/// Reasoning ("thinking") tokens a model emits on successful calls.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reasoning {
    None,
    /// With this probability, log-normal around the median.
    Sometimes {
        p: f64,
        median: f64,
    },
}

/// Provider-side prompt caching.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caching {
    /// Smallest prompt that can be cached.
    pub min_prompt: i64,
    /// Probability of a cache read when the prompt is large enough.
    pub p_read: f64,
    /// Cached counts are multiples of this.
    pub granularity: i64,
    /// Probability of a cache write (Anthropic's explicit `cache_control`).
    pub p_write: f64,
}

const NO_CACHE: Caching = Caching {
    min_prompt: i64::MAX,
    p_read: 0.0,
    granularity: 1,
    p_write: 0.0,
};

/// One model the generator can emit.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelSpec {
    /// Loupe provider id (`openai`, `anthropic`, `gemini`, `groq`, `mistral`, `deepseek`).
    pub provider: &'static str,
    /// Model id as requested by the client.
    pub model: &'static str,
    /// Model id the provider reports back (often a dated snapshot).
    pub response_model: &'static str,
    /// Relative popularity (the shares sum to about 100).
    pub weight: f64,
    pub kind: ModelKind,
    /// Whether the bundled price table prices this model. Exactly the unpriced ones yield
    /// `cost_usd = None`, `price_known = false`.
    pub priced: bool,
    pub(crate) api: Api,
    pub(crate) latency_median_ms: f64,
    pub(crate) context: i64,
    pub(crate) max_output: i64,
    pub(crate) reasoning: Reasoning,
    pub(crate) caching: Caching,
}

const OPENAI_CACHE: Caching = Caching {
    min_prompt: 1024,
    p_read: 0.62,
    granularity: 128,
    p_write: 0.0,
};
const ANTHROPIC_CACHE: Caching = Caching {
    min_prompt: 1024,
    p_read: 0.62,
    granularity: 1,
    p_write: 0.12,
};
const GEMINI_CACHE: Caching = Caching {
    min_prompt: 1024,
    p_read: 0.3,
    granularity: 1,
    p_write: 0.0,
};
const DEEPSEEK_CACHE: Caching = Caching {
    min_prompt: 64,
    p_read: 0.5,
    granularity: 64,
    p_write: 0.0,
};

#[allow(clippy::too_many_arguments)]
const fn chat(
    api: Api,
    provider: &'static str,
    model: &'static str,
    response_model: &'static str,
    weight: f64,
    latency_median_ms: f64,
    context: i64,
    max_output: i64,
    reasoning: Reasoning,
    caching: Caching,
    priced: bool,
) -> ModelSpec {
    ModelSpec {
        provider,
        model,
        response_model,
        weight,
        kind: ModelKind::Chat,
        priced,
        api,
        latency_median_ms,
        context,
        max_output,
        reasoning,
        caching,
    }
}

const fn always_thinks(median: f64) -> Reasoning {
    Reasoning::Sometimes { p: 1.0, median }
}

use Api::{Anthropic, DeepSeek, Gemini, Groq, Mistral, OpenAi};

static MODELS: [ModelSpec; 16] = [
    chat(
        OpenAi,
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        22.0,
        900.0,
        128_000,
        16_384,
        Reasoning::None,
        OPENAI_CACHE,
        true,
    ),
    chat(
        Anthropic,
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "claude-sonnet-4-5-20250929",
        14.0,
        3000.0,
        200_000,
        64_000,
        Reasoning::None,
        ANTHROPIC_CACHE,
        true,
    ),
    chat(
        Gemini,
        "gemini",
        "gemini-2.5-flash",
        "gemini-2.5-flash",
        12.0,
        1300.0,
        1_048_576,
        65_535,
        Reasoning::Sometimes {
            p: 0.4,
            median: 300.0,
        },
        GEMINI_CACHE,
        true,
    ),
    chat(
        OpenAi,
        "openai",
        "gpt-4.1-mini",
        "gpt-4.1-mini-2025-04-14",
        10.0,
        1100.0,
        1_047_576,
        32_768,
        Reasoning::None,
        OPENAI_CACHE,
        true,
    ),
    chat(
        OpenAi,
        "openai",
        "gpt-4o",
        "gpt-4o-2024-08-06",
        8.0,
        1800.0,
        128_000,
        16_384,
        Reasoning::None,
        OPENAI_CACHE,
        true,
    ),
    chat(
        Anthropic,
        "anthropic",
        "claude-haiku-4-5",
        "claude-haiku-4-5-20251001",
        7.0,
        1200.0,
        200_000,
        64_000,
        Reasoning::None,
        ANTHROPIC_CACHE,
        true,
    ),
    ModelSpec {
        provider: "openai",
        model: "text-embedding-3-small",
        response_model: "text-embedding-3-small",
        weight: 6.0,
        kind: ModelKind::Embedding,
        priced: true,
        api: OpenAi,
        latency_median_ms: 300.0,
        context: 8191,
        max_output: 0,
        reasoning: Reasoning::None,
        caching: NO_CACHE,
    },
    chat(
        DeepSeek,
        "deepseek",
        "deepseek-chat",
        "deepseek-chat",
        4.5,
        2000.0,
        128_000,
        8192,
        Reasoning::None,
        DEEPSEEK_CACHE,
        true,
    ),
    chat(
        Gemini,
        "gemini",
        "gemini-2.5-pro",
        "gemini-2.5-pro",
        4.0,
        3800.0,
        1_048_576,
        65_535,
        always_thinks(1200.0),
        GEMINI_CACHE,
        true,
    ),
    chat(
        OpenAi,
        "openai",
        "o3-mini",
        "o3-mini-2025-01-31",
        3.5,
        4000.0,
        200_000,
        100_000,
        always_thinks(900.0),
        OPENAI_CACHE,
        true,
    ),
    chat(
        Groq,
        "groq",
        "openai/gpt-oss-120b",
        "openai/gpt-oss-120b",
        2.5,
        400.0,
        131_072,
        65_536,
        Reasoning::None,
        NO_CACHE,
        true,
    ),
    chat(
        Mistral,
        "mistral",
        "mistral-small-latest",
        "mistral-small-latest",
        2.5,
        700.0,
        128_000,
        8192,
        Reasoning::None,
        NO_CACHE,
        true,
    ),
    chat(
        Mistral,
        "mistral",
        "mistral-large-latest",
        "mistral-large-latest",
        1.5,
        1600.0,
        128_000,
        8192,
        Reasoning::None,
        NO_CACHE,
        true,
    ),
    chat(
        DeepSeek,
        "deepseek",
        "deepseek-reasoner",
        "deepseek-reasoner",
        1.5,
        4000.0,
        128_000,
        64_000,
        always_thinks(1500.0),
        DEEPSEEK_CACHE,
        true,
    ),
    // Deliberately unpriced (≈0.5 % of rows together): a retired Anthropic snapshot that the
    // bundled LiteLLM table no longer lists, and a Groq model it never listed.
    chat(
        Anthropic,
        "anthropic",
        "claude-3-5-haiku-20241022",
        "claude-3-5-haiku-20241022",
        0.35,
        1100.0,
        200_000,
        8192,
        Reasoning::None,
        ANTHROPIC_CACHE,
        false,
    ),
    chat(
        Groq,
        "groq",
        "llama-3.3-70b-versatile",
        "llama-3.3-70b-versatile",
        0.15,
        350.0,
        131_072,
        32_768,
        Reasoning::None,
        NO_CACHE,
        false,
    ),
];

/// Every model the generator emits, most popular first.
pub fn models() -> &'static [ModelSpec] {
    &MODELS
}

/// The embedding model used by session steps that embed (search, retrieve, index).
pub(crate) const EMBEDDING_MODEL: usize = 6;

/// The API path of a call.
pub(crate) fn path(spec: &ModelSpec, stream: bool) -> String {
    match (spec.api, spec.kind) {
        (_, ModelKind::Embedding) => "/v1/embeddings".to_owned(),
        (Api::OpenAi | Api::Mistral, _) => "/v1/chat/completions".to_owned(),
        (Api::DeepSeek, _) => "/chat/completions".to_owned(),
        (Api::Groq, _) => "/openai/v1/chat/completions".to_owned(),
        (Api::Anthropic, _) => "/v1/messages".to_owned(),
        (Api::Gemini, _) => format!(
            "/v1beta/models/{}:{}",
            spec.model,
            if stream {
                "streamGenerateContent"
            } else {
                "generateContent"
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_index_points_at_the_embedding_model() {
        assert_eq!(models()[EMBEDDING_MODEL].kind, ModelKind::Embedding);
        assert_eq!(
            models()
                .iter()
                .filter(|m| m.kind == ModelKind::Embedding)
                .count(),
            1
        );
    }

    #[test]
    fn unpriced_share_is_about_half_a_percent() {
        let total: f64 = models().iter().map(|m| m.weight).sum();
        let unpriced: f64 = models()
            .iter()
            .filter(|m| !m.priced)
            .map(|m| m.weight)
            .sum();
        let share = unpriced / total;
        assert!((0.003..0.008).contains(&share), "{share}");
    }
}
