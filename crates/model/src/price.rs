//! The model price table (bundled LiteLLM table, MIT) and exact cost computation.
//!
//! The bundled table is `data/model_prices.json`, the `model_prices_and_context_window.json` that
//! BerriAI ships in the `litellm` wheel (MIT, Copyright (c) 2023 Berri AI; see
//! `data/model_prices.LICENSE`). Prices are per single token in USD and are kept as exact
//! [`Decimal`]s: every JSON number is converted through its shortest round-trip decimal string,
//! never through float arithmetic, so `1.5e-07` is exactly `0.00000015`.
//!
//! Cost is computed on a normalised [`Usage`] (OpenAI semantics: the prompt count includes cached
//! and cache-written tokens, the completion count includes reasoning tokens):
//!
//! ```text
//! uncached = prompt - cache_read - cache_write - cache_write_1h            (floored at 0)
//! cost     = uncached       * input
//!          + cache_read     * (cache_read price, else input)
//!          + cache_write    * (cache_write price, else input)
//!          + cache_write_1h * (cache_write_1h price, else cache_write price, else input)
//!          + (completion - reasoning) * output                             (floored at 0)
//!          + reasoning      * (reasoning price, else output)
//! ```

use std::collections::HashMap;
use std::fmt;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::{ModelError, Usage};

/// Per-token prices of one model, in USD (exact decimals parsed from the table).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelPrice {
    /// `input_cost_per_token`: one uncached prompt token.
    pub input: Option<Decimal>,
    /// `output_cost_per_token`: one completion token.
    pub output: Option<Decimal>,
    /// `cache_read_input_token_cost`: one prompt token served from the provider's cache.
    pub cache_read: Option<Decimal>,
    /// `cache_creation_input_token_cost`: one prompt token written to the cache (5-minute TTL).
    pub cache_write: Option<Decimal>,
    /// `cache_creation_input_token_cost_above_1hr`: one prompt token written with a 1-hour TTL.
    pub cache_write_1h: Option<Decimal>,
    /// `output_cost_per_reasoning_token`: one reasoning/thinking token, when priced separately.
    pub reasoning: Option<Decimal>,
    /// The table's `litellm_provider` (e.g. `openai`, `vertex_ai-language-models`).
    pub litellm_provider: Option<String>,
    /// The table's `mode` (e.g. `chat`, `embedding`, `responses`).
    pub mode: Option<String>,
    /// Long-context price tiers, ascending by [`PriceTier::above_prompt_tokens`], read from the
    /// `*_above_{N}k_tokens` fields (`N * 1000` tokens, e.g. `input_cost_per_token_above_200k_tokens`,
    /// `..._above_272k_tokens`) and from the `range` lower bounds of a `tiered_pricing` list.
    pub tiers: Vec<PriceTier>,
}

/// Prices that replace the base prices of a [`ModelPrice`] when the prompt is long.
///
/// A tier applies when the normalised prompt count ([`Usage::prompt_tokens`], which includes
/// cache-read and cache-written tokens; for Anthropic-shaped usage that is
/// `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`, for Gemini
/// `promptTokenCount + toolUsePromptTokenCount`) is strictly greater than
/// [`above_prompt_tokens`](Self::above_prompt_tokens). The highest applicable tier wins; a price
/// it does not set falls back to the next lower applicable tier, then to the base price.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTier {
    /// The tier applies when the prompt has more than this many tokens.
    pub above_prompt_tokens: u64,
    /// Tier price of one uncached prompt token.
    pub input: Option<Decimal>,
    /// Tier price of one completion token.
    pub output: Option<Decimal>,
    /// Tier price of one cache-read prompt token.
    pub cache_read: Option<Decimal>,
    /// Tier price of one prompt token written to the cache (5-minute TTL).
    pub cache_write: Option<Decimal>,
    /// Tier price of one prompt token written to the cache with a 1-hour TTL.
    pub cache_write_1h: Option<Decimal>,
    /// Tier price of one reasoning token.
    pub reasoning: Option<Decimal>,
}

impl PriceTier {
    fn has_any_price(&self) -> bool {
        self.input.is_some()
            || self.output.is_some()
            || self.cache_read.is_some()
            || self.cache_write.is_some()
            || self.cache_write_1h.is_some()
            || self.reasoning.is_some()
    }
}

/// Per-token prices after choosing the tier for one call.
#[derive(Debug, Clone, Copy, Default)]
struct EffectivePrices {
    input: Option<Decimal>,
    output: Option<Decimal>,
    cache_read: Option<Decimal>,
    cache_write: Option<Decimal>,
    cache_write_1h: Option<Decimal>,
    reasoning: Option<Decimal>,
}

impl ModelPrice {
    /// Whether the entry carries any per-token price (base or tier).
    pub fn has_token_price(&self) -> bool {
        self.input.is_some()
            || self.output.is_some()
            || self.cache_read.is_some()
            || self.cache_write.is_some()
            || self.cache_write_1h.is_some()
            || self.reasoning.is_some()
            || self.tiers.iter().any(PriceTier::has_any_price)
    }

    /// The tier that applies to a prompt of `prompt_tokens` tokens (see [`PriceTier`]), if any.
    pub fn tier_for(&self, prompt_tokens: i64) -> Option<&PriceTier> {
        let prompt = u64::try_from(prompt_tokens).unwrap_or(0);
        self.tiers
            .iter()
            .filter(|t| prompt > t.above_prompt_tokens)
            .max_by_key(|t| t.above_prompt_tokens)
    }

    fn effective(&self, prompt_tokens: i64) -> EffectivePrices {
        let mut p = EffectivePrices {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
            cache_write_1h: self.cache_write_1h,
            reasoning: self.reasoning,
        };
        let prompt = u64::try_from(prompt_tokens).unwrap_or(0);
        if !self.tiers.iter().any(|t| prompt > t.above_prompt_tokens) {
            return p;
        }
        let mut applicable: Vec<&PriceTier> = self
            .tiers
            .iter()
            .filter(|t| prompt > t.above_prompt_tokens)
            .collect();
        applicable.sort_by_key(|t| t.above_prompt_tokens);
        // Ascending order: each applicable tier overrides what it sets, so the highest wins and a
        // missing tier price falls back to the lower tiers, then to the base.
        for tier in applicable {
            p.input = tier.input.or(p.input);
            p.output = tier.output.or(p.output);
            p.cache_read = tier.cache_read.or(p.cache_read);
            p.cache_write = tier.cache_write.or(p.cache_write);
            p.cache_write_1h = tier.cache_write_1h.or(p.cache_write_1h);
            p.reasoning = tier.reasoning.or(p.reasoning);
        }
        p
    }

    /// Exact USD cost of `usage` at these prices (formula in the module docs).
    ///
    /// `None` when the entry has neither an input nor an output price, or on decimal overflow.
    /// Negative counts are treated as 0.
    pub fn cost_of(&self, usage: &Usage) -> Option<Decimal> {
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        let n = |v: i64| v.max(0);
        let prompt = n(usage.prompt_tokens);
        let cache_read = n(usage.cache_read_tokens);
        let cache_write = n(usage.cache_write_tokens);
        let cache_write_1h = n(usage.cache_write_1h_tokens);
        let completion = n(usage.completion_tokens);
        let reasoning = n(usage.reasoning_tokens);
        let uncached = prompt
            .saturating_sub(cache_read)
            .saturating_sub(cache_write)
            .saturating_sub(cache_write_1h)
            .max(0);
        let plain_output = completion.saturating_sub(reasoning).max(0);

        let p = self.effective(prompt);
        let zero = Decimal::ZERO;
        let input = p.input.unwrap_or(zero);
        let output = p.output.unwrap_or(zero);
        let cache_read_price = p.cache_read.or(p.input).unwrap_or(zero);
        let cache_write_price = p.cache_write.or(p.input).unwrap_or(zero);
        let cache_write_1h_price = p
            .cache_write_1h
            .or(p.cache_write)
            .or(p.input)
            .unwrap_or(zero);
        let reasoning_price = p.reasoning.or(p.output).unwrap_or(zero);

        let terms = [
            (uncached, input),
            (cache_read, cache_read_price),
            (cache_write, cache_write_price),
            (cache_write_1h, cache_write_1h_price),
            (plain_output, output),
            (reasoning, reasoning_price),
        ];
        let mut total = Decimal::ZERO;
        for (tokens, price) in terms {
            if tokens == 0 || price.is_zero() {
                continue;
            }
            let term = Decimal::from(tokens).checked_mul(price)?;
            total = total.checked_add(term)?;
        }
        Some(total.normalize())
    }
}

/// The result of pricing one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Cost {
    /// Exact USD cost; `None` when the model has no price (never a silent zero).
    pub usd: Option<Decimal>,
    /// The table key that priced it, e.g. `gpt-4o-mini-2024-07-18` or `gemini/gemini-2.5-flash`.
    pub price_key: Option<String>,
}

/// Lookup table from model id to price.
///
/// Keys are the LiteLLM table keys, bare (`gpt-4o-mini`) or provider-prefixed
/// (`gemini/gemini-2.5-flash`). See [`PriceTable::lookup`] for how a `(provider, model)` pair is
/// resolved.
#[derive(Clone, Default)]
pub struct PriceTable {
    /// Exact key -> price.
    entries: HashMap<String, ModelPrice>,
    /// ASCII-lowercased key -> exact key (the smallest exact key when several fold together).
    folded: HashMap<String, String>,
}

impl fmt::Debug for PriceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriceTable")
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// The bundled LiteLLM table.
const BUNDLED_JSON: &str = include_str!("../data/model_prices.json");

/// Top-level keys of the LiteLLM file that are not models.
const NON_MODEL_KEYS: [&str; 2] = ["sample_spec", "fallback_generalizations"];

impl PriceTable {
    /// The table bundled in the binary.
    pub fn bundled() -> Result<Self, ModelError> {
        Self::from_json_str(BUNDLED_JSON)
    }

    /// Parses a table in the LiteLLM JSON format.
    ///
    /// `sample_spec` and `fallback_generalizations` are skipped, and so are entries without any
    /// per-token price (image, audio-per-second, search... entries). A price field that is not a
    /// non-negative number (JSON `null` counts as absent) is an error naming the key and field.
    pub fn from_json_str(json: &str) -> Result<Self, ModelError> {
        let mut table = PriceTable::default();
        for (key, price) in parse_table(json)? {
            table.insert(key, price);
        }
        Ok(table)
    }

    /// Adds or replaces entries from another table in the same format (config override file).
    ///
    /// A replaced entry is replaced whole (not merged field by field). Entries are validated and
    /// skipped exactly as in [`from_json_str`](Self::from_json_str). Returns how many entries were
    /// added or replaced. On error nothing is changed.
    pub fn merge_overrides_json(&mut self, json: &str) -> Result<usize, ModelError> {
        let parsed = parse_table(json)?;
        let n = parsed.len();
        for (key, price) in parsed {
            self.insert(key, price);
        }
        Ok(n)
    }

    /// Number of priced entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry stored under exactly `key`, if any.
    pub fn get(&self, key: &str) -> Option<&ModelPrice> {
        self.entries.get(key)
    }

    fn insert(&mut self, key: String, price: ModelPrice) {
        let folded = key.to_ascii_lowercase();
        match self.folded.get_mut(&folded) {
            Some(existing) if *existing <= key => {}
            Some(existing) => *existing = key.clone(),
            None => {
                self.folded.insert(folded, key.clone());
            }
        }
        self.entries.insert(key, price);
    }

    fn get_exact(&self, key: &str) -> Option<(&str, &ModelPrice)> {
        self.entries
            .get_key_value(key)
            .map(|(k, v)| (k.as_str(), v))
    }

    fn get_folded(&self, key: &str) -> Option<(&str, &ModelPrice)> {
        let exact = self.folded.get(&key.to_ascii_lowercase())?;
        self.get_exact(exact)
    }

    /// Finds the price of `model` as served by `provider` (a Loupe provider id such as
    /// `openai`, `anthropic`, `gemini`, `azure`; may be empty).
    ///
    /// Candidates, in order (the first hit wins):
    /// 1. `"{prefix}/{model}"` where `prefix` is the provider's LiteLLM prefix (`google` and
    ///    `gemini` -> `gemini`, `together` -> `together_ai`, `vertex` -> `vertex_ai`, `fireworks`
    ///    -> `fireworks_ai`, ...; unknown ids are used as they are), then the bare `model`;
    /// 2. if `model` itself carries a known provider prefix (`openai/gpt-4o`,
    ///    `anthropic/claude-...`, `google/...`, `models/...`): the re-mapped prefixed form, the
    ///    form with the caller's provider prefix, then the bare remainder;
    /// 3. for a fine-tuned OpenAI id `ft:BASE:org::id`: `ft:BASE`.
    ///
    /// Each candidate list is tried case-sensitively first, then ASCII-case-insensitively. If
    /// nothing matches and the model ends in a date (`-2024-07-18`, `-20250929`, `@20240620`),
    /// the same is done for the model without it. Four-digit suffixes such as `-0125` are not
    /// stripped: in the table they often name snapshots priced differently from the alias.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<(&str, &ModelPrice)> {
        let model = model.trim();
        if model.is_empty() {
            return None;
        }
        let provider = provider.trim().to_ascii_lowercase();
        let prefix = litellm_prefix(&provider);
        let mut forms = vec![model];
        if let Some(stripped) = strip_date_suffix(model) {
            forms.push(stripped);
        }
        let mut candidates = Vec::with_capacity(8);
        for form in forms {
            candidates.clear();
            push_candidates(&mut candidates, prefix, form);
            if let Some(hit) = candidates.iter().find_map(|c| self.get_exact(c)) {
                return Some(hit);
            }
            if let Some(hit) = candidates.iter().find_map(|c| self.get_folded(c)) {
                return Some(hit);
            }
        }
        None
    }

    /// Prices one call (see the module docs for the formula and [`PriceTier`] for long-context
    /// tiers). Unknown model: `usd` and `price_key` are `None`. Known model without an input and
    /// an output price, or decimal overflow: `usd` is `None`, `price_key` names the entry.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Cost {
        match self.lookup(provider, model) {
            Some((key, price)) => Cost {
                usd: price.cost_of(usage),
                price_key: Some(key.to_owned()),
            },
            None => Cost {
                usd: None,
                price_key: None,
            },
        }
    }
}

/// Maps a (lowercased) Loupe provider id to the LiteLLM key prefix. `None` for an empty id.
fn litellm_prefix(provider: &str) -> Option<&str> {
    Some(match provider {
        "" => return None,
        "openai" => "openai",
        "anthropic" => "anthropic",
        "gemini" | "google" | "google_ai_studio" | "google-ai-studio" => "gemini",
        "azure" | "azure_openai" | "azure-openai" => "azure",
        "together" | "together_ai" | "togetherai" => "together_ai",
        "vertex" | "vertex_ai" | "vertexai" | "google_vertex" | "google-vertex" => "vertex_ai",
        "bedrock" | "aws_bedrock" | "aws-bedrock" => "bedrock",
        "xai" | "x-ai" | "x_ai" => "xai",
        "fireworks" | "fireworks_ai" | "fireworks-ai" => "fireworks_ai",
        other => other,
    })
}

/// Whether a leading `head/` of a model id names a provider (and may be stripped).
fn is_provider_head(head: &str) -> bool {
    let h = head.to_ascii_lowercase();
    matches!(
        h.as_str(),
        "models"
            | "openai"
            | "anthropic"
            | "gemini"
            | "google"
            | "azure"
            | "groq"
            | "mistral"
            | "deepseek"
            | "openrouter"
            | "together"
            | "together_ai"
            | "ollama"
            | "vertex"
            | "vertex_ai"
            | "bedrock"
            | "xai"
            | "fireworks"
            | "fireworks_ai"
    )
}

fn push_unique(out: &mut Vec<String>, candidate: String) {
    if !candidate.is_empty() && !out.contains(&candidate) {
        out.push(candidate);
    }
}

/// Appends the lookup candidates for one form of the model id (see [`PriceTable::lookup`]).
fn push_candidates(out: &mut Vec<String>, prefix: Option<&str>, model: &str) {
    if let Some(p) = prefix {
        push_unique(out, format!("{p}/{model}"));
    }
    push_unique(out, model.to_owned());
    if let Some((head, rest)) = model.split_once('/')
        && !rest.is_empty()
        && is_provider_head(head)
    {
        let head_lower = head.to_ascii_lowercase();
        if head_lower != "models"
            && let Some(mapped) = litellm_prefix(&head_lower)
        {
            push_unique(out, format!("{mapped}/{rest}"));
        }
        if let Some(p) = prefix {
            push_unique(out, format!("{p}/{rest}"));
        }
        push_unique(out, rest.to_owned());
    }
    // OpenAI fine-tunes: `ft:gpt-4o-mini-2024-07-18:org:name:id` -> `ft:gpt-4o-mini-2024-07-18`.
    if let Some(rest) = model.strip_prefix("ft:")
        && let Some((base, _)) = rest.split_once(':')
        && !base.is_empty()
    {
        push_unique(out, format!("ft:{base}"));
    }
}

fn all_digits(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_digit)
}

fn two_digits(b: &[u8]) -> u32 {
    u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0')
}

fn valid_month_day(month: &[u8], day: &[u8]) -> bool {
    let (m, d) = (two_digits(month), two_digits(day));
    (1..=12).contains(&m) && (1..=31).contains(&d)
}

/// Strips a trailing date: `-YYYY-MM-DD`, `-YYYYMMDD` or `@YYYYMMDD` (19xx/20xx years). Returns
/// `None` when there is none or nothing would be left.
fn strip_date_suffix(model: &str) -> Option<&str> {
    let b = model.as_bytes();
    let n = b.len();
    // -YYYY-MM-DD
    if n > 11 {
        let s = &b[n - 11..];
        if s[0] == b'-'
            && all_digits(&s[1..5])
            && s[5] == b'-'
            && all_digits(&s[6..8])
            && s[8] == b'-'
            && all_digits(&s[9..11])
            && valid_month_day(&s[6..8], &s[9..11])
        {
            return Some(&model[..n - 11]);
        }
    }
    // -YYYYMMDD / @YYYYMMDD
    if n > 9 {
        let s = &b[n - 9..];
        if (s[0] == b'-' || s[0] == b'@')
            && all_digits(&s[1..9])
            && (s[1..3] == *b"19" || s[1..3] == *b"20")
            && valid_month_day(&s[5..7], &s[7..9])
        {
            return Some(&model[..n - 9]);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

const F_INPUT: &str = "input_cost_per_token";
const F_OUTPUT: &str = "output_cost_per_token";
const F_CACHE_READ: &str = "cache_read_input_token_cost";
const F_CACHE_WRITE: &str = "cache_creation_input_token_cost";
const F_CACHE_WRITE_1H: &str = "cache_creation_input_token_cost_above_1hr";
const F_REASONING: &str = "output_cost_per_reasoning_token";

/// Which price slot a field fills.
#[derive(Clone, Copy)]
enum Slot {
    Input,
    Output,
    CacheRead,
    CacheWrite,
    CacheWrite1h,
    Reasoning,
}

fn slot_of(base: &str) -> Option<Slot> {
    Some(match base {
        F_INPUT => Slot::Input,
        F_OUTPUT => Slot::Output,
        F_CACHE_READ => Slot::CacheRead,
        F_CACHE_WRITE => Slot::CacheWrite,
        F_CACHE_WRITE_1H => Slot::CacheWrite1h,
        F_REASONING => Slot::Reasoning,
        _ => return None,
    })
}

fn set_tier_slot(tier: &mut PriceTier, slot: Slot, value: Decimal) {
    let target = match slot {
        Slot::Input => &mut tier.input,
        Slot::Output => &mut tier.output,
        Slot::CacheRead => &mut tier.cache_read,
        Slot::CacheWrite => &mut tier.cache_write,
        Slot::CacheWrite1h => &mut tier.cache_write_1h,
        Slot::Reasoning => &mut tier.reasoning,
    };
    *target = Some(value);
}

/// Splits `{base}_above_{N}k_tokens` into `(base, N * 1000)`.
fn split_tier_field(field: &str) -> Option<(&str, u64)> {
    let head = field.strip_suffix("k_tokens")?;
    let (base, n) = head.rsplit_once("_above_")?;
    if !all_digits(n.as_bytes()) {
        return None;
    }
    let n: u64 = n.parse().ok()?;
    Some((base, n.checked_mul(1000)?))
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field_error(key: &str, field: &str, what: impl fmt::Display) -> ModelError {
    ModelError::PriceTable(format!(
        "entry `{key}`: field `{field}` must be a non-negative number of USD per token, got {what}"
    ))
}

/// Converts an f64 to the exact decimal of its shortest round-trip representation (what Rust's
/// `{:e}` formatting prints; the table was written the same way, so this is the literal in the
/// file): `1.5e-07` becomes exactly `0.00000015`. `None` for non-finite values and values outside
/// the `Decimal` range.
fn decimal_from_f64(f: f64) -> Option<Decimal> {
    if !f.is_finite() {
        return None;
    }
    if f == 0.0 {
        return Some(Decimal::ZERO);
    }
    Decimal::from_scientific(&format!("{f:e}"))
        .ok()
        .map(|d| d.normalize())
}

/// Reads one price value. `Ok(None)` for JSON `null`.
fn price_value(key: &str, field: &str, v: &Value) -> Result<Option<Decimal>, ModelError> {
    let Value::Number(n) = v else {
        if v.is_null() {
            return Ok(None);
        }
        return Err(field_error(key, field, describe(v)));
    };
    let d = if let Some(u) = n.as_u64() {
        Some(Decimal::from(u))
    } else if let Some(i) = n.as_i64() {
        Some(Decimal::from(i))
    } else {
        n.as_f64().and_then(decimal_from_f64)
    };
    let Some(d) = d else {
        return Err(field_error(
            key,
            field,
            format_args!("{n} (not representable as an exact decimal)"),
        ));
    };
    if d.is_sign_negative() && !d.is_zero() {
        return Err(field_error(key, field, n));
    }
    Ok(Some(d.normalize()))
}

fn opt_string(obj: &Map<String, Value>, field: &str) -> Option<String> {
    obj.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// Parses one model entry. `Ok(None)` when it has no per-token price.
fn parse_entry(key: &str, obj: &Map<String, Value>) -> Result<Option<ModelPrice>, ModelError> {
    let mut price = ModelPrice {
        litellm_provider: opt_string(obj, "litellm_provider"),
        mode: opt_string(obj, "mode"),
        ..ModelPrice::default()
    };
    // Tiers keyed by threshold (BTreeMap keeps them ascending).
    let mut tiers: std::collections::BTreeMap<u64, PriceTier> = Default::default();

    for (field, value) in obj {
        if let Some(slot) = slot_of(field) {
            let Some(d) = price_value(key, field, value)? else {
                continue;
            };
            let target = match slot {
                Slot::Input => &mut price.input,
                Slot::Output => &mut price.output,
                Slot::CacheRead => &mut price.cache_read,
                Slot::CacheWrite => &mut price.cache_write,
                Slot::CacheWrite1h => &mut price.cache_write_1h,
                Slot::Reasoning => &mut price.reasoning,
            };
            *target = Some(d);
        } else if let Some((base, threshold)) = split_tier_field(field)
            && let Some(slot) = slot_of(base)
        {
            let Some(d) = price_value(key, field, value)? else {
                continue;
            };
            let tier = tiers.entry(threshold).or_default();
            tier.above_prompt_tokens = threshold;
            set_tier_slot(tier, slot, d);
        }
    }

    if let Some(list) = obj.get("tiered_pricing") {
        parse_tiered_pricing(key, list, &mut price, &mut tiers)?;
    }

    price.tiers = tiers
        .into_values()
        .filter(PriceTier::has_any_price)
        .collect();
    Ok(price.has_token_price().then_some(price))
}

/// Reads a `tiered_pricing` list (`[{range: [lo, hi], input_cost_per_token, ...}]`). The tier
/// starting at 0 supplies base prices the entry does not set at top level; a tier starting at
/// `lo > 0` applies when the prompt has more than `lo` tokens. Tiers without a token price (e.g.
/// search entries priced per query) are ignored.
fn parse_tiered_pricing(
    key: &str,
    list: &Value,
    price: &mut ModelPrice,
    tiers: &mut std::collections::BTreeMap<u64, PriceTier>,
) -> Result<(), ModelError> {
    let Some(items) = list.as_array() else {
        if list.is_null() {
            return Ok(());
        }
        return Err(ModelError::PriceTable(format!(
            "entry `{key}`: field `tiered_pricing` must be an array, got {}",
            describe(list)
        )));
    };
    for (i, item) in items.iter().enumerate() {
        let Some(item) = item.as_object() else {
            return Err(ModelError::PriceTable(format!(
                "entry `{key}`: field `tiered_pricing[{i}]` must be an object, got {}",
                describe(item)
            )));
        };
        let Some(lo) = item
            .get("range")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(Value::as_f64)
        else {
            continue;
        };
        if !lo.is_finite() || lo < 0.0 {
            continue;
        }
        let mut tier = PriceTier::default();
        for (field, value) in item {
            if let Some(slot) = slot_of(field) {
                let name = format!("tiered_pricing[{i}].{field}");
                if let Some(d) = price_value(key, &name, value)? {
                    set_tier_slot(&mut tier, slot, d);
                }
            }
        }
        if !tier.has_any_price() {
            continue;
        }
        // Saturating float-to-int cast; thresholds are small whole numbers in practice.
        let threshold = lo as u64;
        if threshold == 0 {
            price.input = price.input.or(tier.input);
            price.output = price.output.or(tier.output);
            price.cache_read = price.cache_read.or(tier.cache_read);
            price.cache_write = price.cache_write.or(tier.cache_write);
            price.cache_write_1h = price.cache_write_1h.or(tier.cache_write_1h);
            price.reasoning = price.reasoning.or(tier.reasoning);
        } else {
            tier.above_prompt_tokens = threshold;
            let slot = tiers.entry(threshold).or_default();
            let merged = PriceTier {
                above_prompt_tokens: threshold,
                input: slot.input.or(tier.input),
                output: slot.output.or(tier.output),
                cache_read: slot.cache_read.or(tier.cache_read),
                cache_write: slot.cache_write.or(tier.cache_write),
                cache_write_1h: slot.cache_write_1h.or(tier.cache_write_1h),
                reasoning: slot.reasoning.or(tier.reasoning),
            };
            *slot = merged;
        }
    }
    Ok(())
}

/// Parses a whole LiteLLM-format table into priced entries (all or nothing).
fn parse_table(json: &str) -> Result<Vec<(String, ModelPrice)>, ModelError> {
    let root: Value = serde_json::from_str(json)
        .map_err(|e| ModelError::PriceTable(format!("invalid JSON: {e}")))?;
    let Value::Object(map) = root else {
        return Err(ModelError::PriceTable(format!(
            "the table must be a JSON object keyed by model id, got {}",
            describe(&root)
        )));
    };
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in &map {
        if NON_MODEL_KEYS.contains(&key.as_str()) {
            continue;
        }
        let Some(obj) = value.as_object() else {
            return Err(ModelError::PriceTable(format!(
                "entry `{key}` must be an object, got {}",
                describe(value)
            )));
        };
        if let Some(price) = parse_entry(key, obj)? {
            out.push((key.clone(), price));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).expect("decimal literal")
    }

    fn bundled() -> PriceTable {
        PriceTable::bundled().expect("bundled table parses")
    }

    fn usage(prompt: i64, completion: i64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            ..Usage::default()
        }
    }

    #[test]
    fn bundled_table_parses_with_exact_prices() {
        let t = bundled();
        assert!(t.len() > 3000, "only {} entries", t.len());
        assert!(t.get("sample_spec").is_none());
        assert!(t.get("fallback_generalizations").is_none());
        let p = t
            .get("gpt-4o-mini-2024-07-18")
            .expect("gpt-4o-mini snapshot");
        assert_eq!(p.input, Some(d("0.00000015")));
        assert_eq!(p.output, Some(d("0.0000006")));
        assert_eq!(p.cache_read, Some(d("0.000000075")));
        assert_eq!(p.litellm_provider.as_deref(), Some("openai"));
        assert_eq!(p.mode.as_deref(), Some("chat"));
        let c = t
            .get("claude-sonnet-4-5-20250929")
            .expect("claude sonnet 4.5");
        assert_eq!(c.cache_write, Some(d("0.00000375")));
        assert_eq!(c.cache_write_1h, Some(d("0.000006")));
        let g = t.get("gemini/gemini-2.5-flash").expect("gemini flash");
        assert_eq!(g.reasoning, Some(d("0.0000025")));
        // An image-only entry has no token price and is skipped.
        assert!(t.get("tencent/seedream-image-v5.0-flash").is_none());
    }

    /// Every numeric literal of the JSON file, as an exact decimal.
    fn literals_in(json: &str) -> std::collections::HashSet<Decimal> {
        let mut out = std::collections::HashSet::new();
        for line in json.lines() {
            let Some((_, value)) = line.split_once("\": ") else {
                continue;
            };
            let value = value.trim().trim_end_matches(',');
            if let Ok(v) = Decimal::from_scientific(value).or_else(|_| Decimal::from_str(value)) {
                out.insert(v.normalize());
            }
        }
        out
    }

    #[test]
    fn every_bundled_price_is_the_exact_literal_of_the_file() {
        // A price that went through float arithmetic or a parser one ULP off would show up as a
        // decimal that is not written anywhere in the file.
        let literals = literals_in(BUNDLED_JSON);
        assert!(literals.contains(&d("0.0000001142857142857143")));
        let t = bundled();
        let mut checked = 0;
        for (key, p) in &t.entries {
            let tiers = p.tiers.iter().flat_map(|t| {
                [
                    t.input,
                    t.output,
                    t.cache_read,
                    t.cache_write,
                    t.cache_write_1h,
                    t.reasoning,
                ]
            });
            let base = [
                p.input,
                p.output,
                p.cache_read,
                p.cache_write,
                p.cache_write_1h,
                p.reasoning,
            ];
            for v in base.into_iter().chain(tiers).flatten() {
                assert!(!v.is_sign_negative() || v.is_zero(), "{key}: {v}");
                assert!(
                    literals.contains(&v),
                    "{key}: {v} is not a literal of the file"
                );
                checked += 1;
            }
        }
        assert!(checked > 8000, "{checked}");
        // Long literals survive exactly (not rounded to 15 digits).
        let glm = t.get("bigmodel/glm-5.3-flash").expect("glm entry");
        assert_eq!(glm.input, Some(d("0.0000001142857142857143")));
        assert_eq!(glm.cache_read, Some(d("0.000000032857142857142855")));
    }

    #[test]
    fn f64_conversion_uses_shortest_round_trip() {
        assert_eq!(decimal_from_f64(1.5e-07), Some(d("0.00000015")));
        assert_eq!(decimal_from_f64(7.5e-08), Some(d("0.000000075")));
        assert_eq!(decimal_from_f64(3e-07), Some(d("0.0000003")));
        assert_eq!(decimal_from_f64(0.1), Some(d("0.1")));
        assert_eq!(decimal_from_f64(0.0), Some(Decimal::ZERO));
        assert_eq!(
            decimal_from_f64(1.142857142857143e-07),
            Some(d("0.0000001142857142857143"))
        );
        assert_eq!(decimal_from_f64(f64::NAN), None);
        assert_eq!(decimal_from_f64(1e300), None);
    }

    #[test]
    fn unknown_model_is_none_never_zero() {
        let t = bundled();
        let c = t.cost("openai", "definitely-not-a-model-xyz", &usage(100, 10));
        assert_eq!(
            c,
            Cost {
                usd: None,
                price_key: None
            }
        );
        assert!(t.lookup("", "").is_none());
        assert!(t.lookup("openai", "   ").is_none());
    }

    #[test]
    fn dated_ids_resolve() {
        let t = bundled();
        let (key, _) = t
            .lookup("openai", "gpt-4o-mini-2099-01-01")
            .expect("dated id");
        assert_eq!(key, "gpt-4o-mini");
        // An existing dated key wins over stripping.
        let (key, _) = t
            .lookup("openai", "gpt-4o-mini-2024-07-18")
            .expect("snapshot");
        assert_eq!(key, "gpt-4o-mini-2024-07-18");
        let (key, _) = t
            .lookup("anthropic", "claude-sonnet-4-5-20990101")
            .expect("claude");
        assert_eq!(key, "claude-sonnet-4-5");
        // Not a date: month 13.
        assert_eq!(strip_date_suffix("gpt-4o-mini-2099-13-01"), None);
        assert_eq!(
            strip_date_suffix("claude-3-5-sonnet@20240620"),
            Some("claude-3-5-sonnet")
        );
        assert_eq!(strip_date_suffix("gpt-3.5-turbo-0125"), None);
        assert_eq!(strip_date_suffix("-20240620"), None);
    }

    #[test]
    fn provider_prefixed_keys_win_over_bare() {
        let t = bundled();
        // `gemini-2.5-flash` (bare) is the Vertex entry; the Gemini API has its own key.
        let (key, p) = t.lookup("gemini", "gemini-2.5-flash").expect("gemini");
        assert_eq!(key, "gemini/gemini-2.5-flash");
        assert_eq!(p.litellm_provider.as_deref(), Some("gemini"));
        let (key, _) = t
            .lookup("google", "gemini-2.5-flash")
            .expect("google alias");
        assert_eq!(key, "gemini/gemini-2.5-flash");
        let (key, _) = t
            .lookup("gemini", "models/gemini-2.5-flash")
            .expect("models/ prefix");
        assert_eq!(key, "gemini/gemini-2.5-flash");
        let (key, _) = t.lookup("vertex", "gemini-2.5-flash").expect("vertex");
        assert_eq!(key, "gemini-2.5-flash");
        let (key, _) = t.lookup("", "gemini-2.5-flash").expect("no provider");
        assert_eq!(key, "gemini-2.5-flash");
    }

    #[test]
    fn model_with_provider_prefix_resolves() {
        let t = bundled();
        let (key, _) = t.lookup("", "openai/gpt-4o-mini").expect("openai/");
        assert_eq!(key, "gpt-4o-mini");
        let (key, _) = t
            .lookup("anthropic", "anthropic/claude-sonnet-4-5-20250929")
            .expect("a/");
        assert_eq!(key, "claude-sonnet-4-5-20250929");
        let (key, _) = t.lookup("", "gemini/gemini-2.5-flash").expect("gemini/");
        assert_eq!(key, "gemini/gemini-2.5-flash");
    }

    #[test]
    fn lookup_is_exact_first_then_case_insensitive() {
        let mut t = PriceTable::default();
        let n = t
            .merge_overrides_json(
                r#"{"My-Model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
                    "my-model": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6}}"#,
            )
            .expect("valid overrides");
        assert_eq!(n, 2);
        assert_eq!(t.lookup("", "My-Model").map(|(k, _)| k), Some("My-Model"));
        assert_eq!(t.lookup("", "my-model").map(|(k, _)| k), Some("my-model"));
        // Folded: the smallest exact key is chosen deterministically.
        assert_eq!(t.lookup("", "MY-MODEL").map(|(k, _)| k), Some("My-Model"));
        let b = bundled();
        assert_eq!(
            b.lookup("OpenAI", "GPT-4o-Mini").map(|(k, _)| k),
            Some("gpt-4o-mini")
        );
    }

    #[test]
    fn overrides_add_and_replace() {
        let mut t = bundled();
        let before = t.len();
        let n = t
            .merge_overrides_json(
                r#"{
                  "sample_spec": {"input_cost_per_token": "text"},
                  "gpt-4o-mini": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6,
                                  "litellm_provider": "openai", "mode": "chat"},
                  "acme/house-model": {"input_cost_per_token": 0.000002, "output_cost_per_token": 0}
                }"#,
            )
            .expect("valid overrides");
        assert_eq!(n, 2);
        assert_eq!(t.len(), before + 1);
        let p = t.get("gpt-4o-mini").expect("replaced");
        assert_eq!(p.input, Some(d("0.000001")));
        // Replaced whole: the bundled cache-read price is gone.
        assert_eq!(p.cache_read, None);
        let c = t.cost("acme", "house-model", &usage(1000, 500));
        assert_eq!(c.price_key.as_deref(), Some("acme/house-model"));
        assert_eq!(c.usd, Some(d("0.002")));
    }

    #[test]
    fn overrides_reject_bad_prices_atomically() {
        let mut t = PriceTable::default();
        let err = t
            .merge_overrides_json(
                r#"{"ok": {"input_cost_per_token": 1e-6},
                    "bad": {"input_cost_per_token": "0.001"}}"#,
            )
            .expect_err("string price");
        let msg = err.to_string();
        assert!(
            msg.contains("`bad`") && msg.contains("input_cost_per_token"),
            "{msg}"
        );
        assert!(t.is_empty(), "nothing applied on error");

        let err = t
            .merge_overrides_json(r#"{"neg": {"output_cost_per_token": -1e-6}}"#)
            .expect_err("negative price");
        let msg = err.to_string();
        assert!(
            msg.contains("`neg`") && msg.contains("output_cost_per_token"),
            "{msg}"
        );
        assert!(matches!(err, ModelError::PriceTable(_)));

        let err = t
            .merge_overrides_json(r#"{"x": {"input_cost_per_token_above_200k_tokens": true}}"#)
            .expect_err("bool tier price");
        assert!(
            err.to_string()
                .contains("input_cost_per_token_above_200k_tokens")
        );
        assert!(t.merge_overrides_json("[1,2]").is_err());
        assert!(t.merge_overrides_json("{").is_err());
        assert!(t.merge_overrides_json(r#"{"m": 3}"#).is_err());
        // null is "absent": an entry with nothing else is skipped.
        assert_eq!(
            t.merge_overrides_json(r#"{"m": {"input_cost_per_token": null}}"#)
                .ok(),
            Some(0)
        );
    }

    #[test]
    fn formula_covers_every_bucket() {
        let mut t = PriceTable::default();
        t.merge_overrides_json(
            r#"{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-5,
                      "cache_read_input_token_cost": 1e-7,
                      "cache_creation_input_token_cost": 2e-6,
                      "cache_creation_input_token_cost_above_1hr": 3e-6,
                      "output_cost_per_reasoning_token": 2e-5}}"#,
        )
        .expect("valid");
        let u = Usage {
            prompt_tokens: 1000,
            cache_read_tokens: 100,
            cache_write_tokens: 200,
            cache_write_1h_tokens: 300,
            completion_tokens: 50,
            reasoning_tokens: 20,
            total_tokens: 1050,
        };
        // 400*1e-6 + 100*1e-7 + 200*2e-6 + 300*3e-6 + 30*1e-5 + 20*2e-5
        let expected =
            d("0.0004") + d("0.00001") + d("0.0004") + d("0.0009") + d("0.0003") + d("0.0004");
        assert_eq!(t.cost("", "m", &u).usd, Some(expected.normalize()));

        // Fallbacks: 1h -> 5m -> input; cache read -> input; reasoning -> output.
        let mut f = PriceTable::default();
        f.merge_overrides_json(
            r#"{"a": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-5,
                      "cache_creation_input_token_cost": 2e-6},
                "b": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-5}}"#,
        )
        .expect("valid");
        let a = d("0.0004") + d("0.0001") + d("0.0004") + d("0.0006") + d("0.0003") + d("0.0002");
        assert_eq!(f.cost("", "a", &u).usd, Some(a.normalize()));
        let b = d("0.001") + d("0.0005");
        assert_eq!(f.cost("", "b", &u).usd, Some(b.normalize()));
    }

    #[test]
    fn model_without_input_and_output_price_is_none() {
        let mut t = PriceTable::default();
        t.merge_overrides_json(r#"{"cache-only": {"cache_read_input_token_cost": 1e-7}}"#)
            .expect("valid");
        let c = t.cost("", "cache-only", &usage(10, 10));
        assert_eq!(c.usd, None);
        assert_eq!(c.price_key.as_deref(), Some("cache-only"));
        // Free models are priced at an explicit zero.
        t.merge_overrides_json(
            r#"{"free": {"input_cost_per_token": 0, "output_cost_per_token": 0}}"#,
        )
        .expect("valid");
        assert_eq!(t.cost("", "free", &usage(10, 10)).usd, Some(Decimal::ZERO));
    }

    #[test]
    fn long_context_tier_applies_above_threshold() {
        let mut t = PriceTable::default();
        t.merge_overrides_json(
            r#"{"long": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-5,
                         "cache_read_input_token_cost": 1e-7,
                         "input_cost_per_token_above_200k_tokens": 2e-6,
                         "output_cost_per_token_above_200k_tokens": 2e-5,
                         "input_cost_per_token_above_272k_tokens_priority": 9e-6}}"#,
        )
        .expect("valid");
        let p = t.get("long").expect("entry");
        assert_eq!(p.tiers.len(), 1);
        assert_eq!(p.tiers[0].above_prompt_tokens, 200_000);
        // Exactly at the threshold: base prices.
        assert_eq!(
            t.cost("", "long", &usage(200_000, 10)).usd,
            Some(d("0.2001"))
        );
        // Above: tier input/output; the cache-read price falls back to the base.
        let u = Usage {
            cache_read_tokens: 1,
            ..usage(200_001, 10)
        };
        let expected = d("200000") * d("0.000002") + d("0.0000001") + d("10") * d("0.00002");
        assert_eq!(t.cost("", "long", &u).usd, Some(expected.normalize()));

        // The bundled Bedrock Claude Sonnet 4.5 has a 200k tier.
        let b = bundled();
        let (_, sonnet) = b
            .lookup("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0")
            .expect("sonnet 4.5 on bedrock");
        let tier = sonnet.tier_for(200_001).expect("200k tier");
        assert_eq!(tier.above_prompt_tokens, 200_000);
        assert!(tier.input > sonnet.input);
        assert!(sonnet.tier_for(200_000).is_none());
    }

    #[test]
    fn tiered_pricing_list_is_read() {
        let t = bundled();
        let p = t.get("dashscope/qwen-flash").expect("dashscope entry");
        assert!(p.input.is_some() && p.output.is_some());
        assert_eq!(
            p.tiers.first().map(|t| t.above_prompt_tokens),
            Some(256_000)
        );
        let small = t.cost("dashscope", "qwen-flash", &usage(1000, 100)).usd;
        let large = t.cost("dashscope", "qwen-flash", &usage(300_000, 100)).usd;
        assert_eq!(small, Some(d("0.00009")));
        assert_eq!(large, Some(d("0.0752")));
    }

    #[test]
    fn overflow_is_none_not_panic() {
        let mut t = PriceTable::default();
        t.merge_overrides_json(
            r#"{"huge": {"input_cost_per_token": 70000000000000000000000000000,
                         "output_cost_per_token": 1}}"#,
        )
        .expect("valid");
        let u = Usage {
            prompt_tokens: i64::MAX,
            completion_tokens: i64::MAX,
            ..Usage::default()
        };
        let c = t.cost("", "huge", &u);
        assert_eq!(c.usd, None);
        assert_eq!(c.price_key.as_deref(), Some("huge"));
    }

    proptest! {
        #[test]
        fn cost_never_panics(
            prompt in 0i64..=i64::MAX,
            completion in 0i64..=i64::MAX,
            cache_read in 0i64..=i64::MAX,
            cache_write in 0i64..=i64::MAX,
            cache_write_1h in 0i64..=i64::MAX,
            reasoning in 0i64..=i64::MAX,
            total in any::<i64>(),
            model_idx in 0usize..6,
        ) {
            static TABLE: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
            let t = TABLE.get_or_init(bundled);
            let models = [
                ("openai", "gpt-4o-mini"),
                ("anthropic", "claude-sonnet-4-5-20250929"),
                ("gemini", "gemini-2.5-flash"),
                ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
                ("dashscope", "qwen-flash"),
                ("x", "nope"),
            ];
            let (provider, model) = models[model_idx];
            let u = Usage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                cache_read_tokens: cache_read,
                cache_write_tokens: cache_write,
                cache_write_1h_tokens: cache_write_1h,
                reasoning_tokens: reasoning,
                total_tokens: total,
            };
            let c = t.cost(provider, model, &u);
            if let Some(usd) = c.usd {
                prop_assert!(!usd.is_sign_negative() || usd.is_zero());
            }
        }

        #[test]
        fn small_costs_are_exact_and_present(prompt in 0i64..10_000_000, completion in 0i64..10_000_000) {
            static TABLE: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
            let t = TABLE.get_or_init(bundled);
            let c = t.cost("openai", "gpt-4o-mini", &usage(prompt, completion));
            let expected = Decimal::from(prompt) * d("0.00000015") + Decimal::from(completion) * d("0.0000006");
            prop_assert_eq!(c.usd, Some(expected.normalize()));
        }

        #[test]
        fn lookup_never_panics(provider in ".{0,12}", model in ".{0,40}") {
            static TABLE: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
            let t = TABLE.get_or_init(bundled);
            let _ = t.lookup(&provider, &model);
            let _ = strip_date_suffix(&model);
        }
    }
}
