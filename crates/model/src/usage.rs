//! Token usage normalised across provider response shapes.
//!
//! | shape | prompt | completion | cache read | cache write (5m / 1h) | reasoning |
//! | --- | --- | --- | --- | --- | --- |
//! | OpenAI chat/completions/embeddings | `prompt_tokens` | `completion_tokens` | `prompt_tokens_details.cached_tokens` | - | `completion_tokens_details.reasoning_tokens` |
//! | OpenAI Responses | `input_tokens` | `output_tokens` | `input_tokens_details.cached_tokens` | - | `output_tokens_details.reasoning_tokens` |
//! | Anthropic | `input_tokens + cache_read_input_tokens + cache_creation_input_tokens` | `output_tokens` | `cache_read_input_tokens` | `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens` | - |
//! | Gemini | `promptTokenCount + toolUsePromptTokenCount` | `candidatesTokenCount + thoughtsTokenCount` | `cachedContentTokenCount` | - | `thoughtsTokenCount` |
//! | Generic | `prompt_token_count` | `generation_token_count` | - | - | - |
//!
//! `total_tokens` is the provider's total when it reports one, else prompt + completion. Counts
//! that are negative, fractional, too large or not numbers are treated as absent (0).

use serde_json::{Map, Value};

/// Token counts of one call, normalised to OpenAI semantics: `prompt_tokens` includes cached
/// and cache-written tokens, `completion_tokens` includes reasoning tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cache-read and cache-written ones included.
    pub prompt_tokens: i64,
    /// All completion tokens, reasoning ones included.
    pub completion_tokens: i64,
    /// Prompt tokens served from the provider's cache (subset of prompt_tokens).
    pub cache_read_tokens: i64,
    /// Prompt tokens written to the cache at the default (5-minute) TTL (subset of prompt_tokens).
    pub cache_write_tokens: i64,
    /// Prompt tokens written to the cache with a 1-hour TTL (subset of prompt_tokens).
    pub cache_write_1h_tokens: i64,
    /// Reasoning/thinking tokens (subset of completion_tokens).
    pub reasoning_tokens: i64,
    /// The provider's total if reported, else prompt + completion.
    pub total_tokens: i64,
}

/// Which provider's usage object a [`Usage`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageShape {
    /// OpenAI chat/completions/embeddings (`prompt_tokens`...) or Responses (`input_tokens` with
    /// `*_tokens_details`), and OpenAI-compatible providers.
    OpenAi,
    /// Anthropic Messages (`input_tokens` excluding cache, `cache_*_input_tokens`).
    Anthropic,
    /// Gemini / Vertex `usageMetadata`.
    Gemini,
    /// `{prompt_token_count, generation_token_count}` (Helicone custom logs).
    Generic,
}

impl Usage {
    /// Reads usage from a provider response body of any supported shape (OpenAI chat/completions/
    /// embeddings/responses, Anthropic messages, Gemini generateContent, generic counts).
    ///
    /// `None` when the body carries no recognisable usage.
    pub fn from_response_json(body: &Value) -> Option<(Usage, UsageShape)> {
        let obj = body.as_object()?;
        if let Some(u) = obj.get("usage").and_then(Value::as_object)
            && let Some(found) = from_usage_object(obj, u)
        {
            return Some(found);
        }
        if let Some(meta) = obj.get("usageMetadata").and_then(Value::as_object)
            && let Some(u) = gemini(meta)
        {
            return Some((u, UsageShape::Gemini));
        }
        generic(obj).map(|u| (u, UsageShape::Generic))
    }

    /// Reads the final usage from a whole SSE stream body (OpenAI, Anthropic, Gemini; LF, CRLF or
    /// CR line endings).
    ///
    /// Events are separated by blank lines; `data:` lines are joined with `\n`; comments,
    /// `[DONE]` and non-JSON data are ignored. OpenAI: the last chunk with a non-null `usage`
    /// (Responses API: the `response.*` event carrying `response.usage`; Groq: `x_groq.usage`). Anthropic: the
    /// `message_start` usage overlaid field by field with each `message_delta` usage (output is
    /// cumulative). Gemini: the last chunk's `usageMetadata`. `None` if no usage was seen.
    pub fn from_sse(body: &str) -> Option<(Usage, UsageShape)> {
        let body = body.strip_prefix('\u{feff}').unwrap_or(body);
        let mut state = SseUsage::default();
        let mut data = String::new();
        let mut has_data = false;
        let lines = SseLines { rest: body };
        for line in lines {
            if line.is_empty() {
                if has_data {
                    state.dispatch(&data);
                }
                data.clear();
                has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            if field == "data" {
                if has_data {
                    data.push('\n');
                }
                data.push_str(value);
                has_data = true;
            }
        }
        if has_data {
            state.dispatch(&data);
        }
        state.last
    }
}

/// Lines of an SSE body, terminated by CRLF, LF or CR.
struct SseLines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for SseLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.find(['\r', '\n']) {
            Some(i) => {
                let line = &self.rest[..i];
                let bytes = self.rest.as_bytes();
                let skip = if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                self.rest = &self.rest[i + skip..];
                Some(line)
            }
            None => {
                let line = self.rest;
                self.rest = "";
                Some(line)
            }
        }
    }
}

/// Usage accumulated while reading a stream.
#[derive(Default)]
struct SseUsage {
    /// Anthropic: `message_start.message.usage` overlaid with every `message_delta.usage`.
    anthropic: Option<Map<String, Value>>,
    /// The most recent usage seen, of any shape.
    last: Option<(Usage, UsageShape)>,
}

impl SseUsage {
    fn dispatch(&mut self, data: &str) {
        let trimmed = data.trim();
        if trimmed.is_empty() || trimmed == "[DONE]" {
            return;
        }
        match serde_json::from_str::<Value>(trimmed) {
            Ok(v) => self.event(&v),
            Err(_) if trimmed.contains('\n') => {
                // Non-compliant streams that forget the blank line between events: try each
                // data line on its own.
                for part in trimmed.split('\n') {
                    let part = part.trim();
                    if part.is_empty() || part == "[DONE]" {
                        continue;
                    }
                    if let Ok(v) = serde_json::from_str::<Value>(part) {
                        self.event(&v);
                    }
                }
            }
            Err(_) => {}
        }
    }

    fn event(&mut self, v: &Value) {
        let Some(obj) = v.as_object() else {
            return;
        };
        match obj.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                if let Some(u) = obj
                    .get("message")
                    .and_then(|m| m.get("usage"))
                    .and_then(Value::as_object)
                {
                    self.anthropic = Some(u.clone());
                    self.update_anthropic();
                }
                return;
            }
            Some("message_delta") => {
                if let Some(delta) = obj.get("usage").and_then(Value::as_object) {
                    let merged = self.anthropic.get_or_insert_with(Map::new);
                    for (k, val) in delta {
                        if count(Some(val)).is_some() || val.is_object() {
                            merged.insert(k.clone(), val.clone());
                        }
                    }
                    self.update_anthropic();
                }
                return;
            }
            Some(t) if t.starts_with("response.") => {
                if let Some(found) = obj.get("response").and_then(Usage::from_response_json) {
                    self.last = Some(found);
                }
                return;
            }
            _ => {}
        }
        if let Some(found) = Usage::from_response_json(v) {
            self.last = Some(found);
        } else if let Some(u) = obj
            .get("x_groq")
            .and_then(|x| x.get("usage"))
            .and_then(Value::as_object)
            .filter(|u| has_any(u, &["prompt_tokens", "completion_tokens"]))
        {
            // Groq streams put the final usage under `x_groq.usage`.
            self.last = Some((openai_chat(u), UsageShape::OpenAi));
        }
    }

    fn update_anthropic(&mut self) {
        if let Some(u) = self.anthropic.as_ref().and_then(anthropic) {
            self.last = Some((u, UsageShape::Anthropic));
        }
    }
}

/// A token count: a non-negative JSON integer (or integral float) that fits in `i64`.
fn count(v: Option<&Value>) -> Option<i64> {
    let Value::Number(n) = v? else {
        return None;
    };
    if let Some(u) = n.as_u64() {
        return i64::try_from(u).ok();
    }
    if n.is_i64() {
        return None; // negative
    }
    let f = n.as_f64()?;
    // 2^63 as f64; anything at or above does not fit.
    if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 9_223_372_036_854_775_808.0 {
        // In range and integral, so the cast is exact enough (f64 precision) and cannot wrap.
        Some(f as i64)
    } else {
        None
    }
}

fn get(obj: &Map<String, Value>, key: &str) -> i64 {
    count(obj.get(key)).unwrap_or(0)
}

fn nested(obj: &Map<String, Value>, outer: &str, key: &str) -> Option<i64> {
    count(obj.get(outer)?.get(key))
}

fn has_any(obj: &Map<String, Value>, keys: &[&str]) -> bool {
    keys.iter().any(|k| obj.contains_key(*k))
}

/// Classifies and reads a response body's `usage` object.
fn from_usage_object(
    body: &Map<String, Value>,
    u: &Map<String, Value>,
) -> Option<(Usage, UsageShape)> {
    if has_any(u, &["prompt_tokens", "completion_tokens"]) {
        return Some((openai_chat(u), UsageShape::OpenAi));
    }
    if has_any(u, &["input_tokens", "output_tokens"]) {
        return Some(if looks_anthropic(body, u) {
            (anthropic(u)?, UsageShape::Anthropic)
        } else {
            (openai_responses(u), UsageShape::OpenAi)
        });
    }
    if has_any(u, &["prompt_token_count", "generation_token_count"]) {
        return generic(u).map(|g| (g, UsageShape::Generic));
    }
    None
}

/// Anthropic vs OpenAI Responses API (both use `input_tokens`/`output_tokens`).
fn looks_anthropic(body: &Map<String, Value>, u: &Map<String, Value>) -> bool {
    if body.get("type").and_then(Value::as_str) == Some("message") {
        return true;
    }
    if has_any(
        u,
        &[
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "cache_creation",
        ],
    ) {
        return true;
    }
    if body.get("object").and_then(Value::as_str) == Some("response") {
        return false;
    }
    !has_any(u, &["input_tokens_details", "output_tokens_details"])
}

fn total_or_sum(reported: Option<i64>, prompt: i64, completion: i64) -> i64 {
    reported.unwrap_or_else(|| prompt.saturating_add(completion))
}

fn openai_chat(u: &Map<String, Value>) -> Usage {
    let prompt = get(u, "prompt_tokens");
    let completion = get(u, "completion_tokens");
    let cache_read = nested(u, "prompt_tokens_details", "cached_tokens")
        // DeepSeek reports cache hits at top level.
        .or_else(|| count(u.get("prompt_cache_hit_tokens")))
        .unwrap_or(0);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cache_read_tokens: cache_read,
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: nested(u, "completion_tokens_details", "reasoning_tokens").unwrap_or(0),
        total_tokens: total_or_sum(count(u.get("total_tokens")), prompt, completion),
    }
}

fn openai_responses(u: &Map<String, Value>) -> Usage {
    let prompt = get(u, "input_tokens");
    let completion = get(u, "output_tokens");
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cache_read_tokens: nested(u, "input_tokens_details", "cached_tokens").unwrap_or(0),
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: nested(u, "output_tokens_details", "reasoning_tokens").unwrap_or(0),
        total_tokens: total_or_sum(count(u.get("total_tokens")), prompt, completion),
    }
}

/// Anthropic usage (also the merged streaming usage). `None` if it has none of the counts.
fn anthropic(u: &Map<String, Value>) -> Option<Usage> {
    if !has_any(
        u,
        &[
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "cache_creation",
        ],
    ) {
        return None;
    }
    let input = get(u, "input_tokens");
    let cache_read = get(u, "cache_read_input_tokens");
    let creation_total = count(u.get("cache_creation_input_tokens"));
    let ttl_5m = nested(u, "cache_creation", "ephemeral_5m_input_tokens");
    let ttl_1h = nested(u, "cache_creation", "ephemeral_1h_input_tokens").unwrap_or(0);
    let cache_write = match ttl_5m {
        Some(v) => v,
        None => creation_total.unwrap_or(0).saturating_sub(ttl_1h).max(0),
    };
    // The prompt includes every cache-written token, even if the breakdown and the total disagree.
    let creation = creation_total
        .unwrap_or(0)
        .max(cache_write.saturating_add(ttl_1h));
    let prompt = input.saturating_add(cache_read).saturating_add(creation);
    let completion = get(u, "output_tokens");
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        cache_write_1h_tokens: ttl_1h,
        reasoning_tokens: 0,
        total_tokens: prompt.saturating_add(completion),
    })
}

/// Gemini `usageMetadata`. `None` if it has none of the counts.
fn gemini(m: &Map<String, Value>) -> Option<Usage> {
    if !has_any(
        m,
        &[
            "promptTokenCount",
            "candidatesTokenCount",
            "thoughtsTokenCount",
            "cachedContentTokenCount",
            "toolUsePromptTokenCount",
            "totalTokenCount",
        ],
    ) {
        return None;
    }
    let prompt = get(m, "promptTokenCount").saturating_add(get(m, "toolUsePromptTokenCount"));
    let thoughts = get(m, "thoughtsTokenCount");
    let completion = get(m, "candidatesTokenCount").saturating_add(thoughts);
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cache_read_tokens: get(m, "cachedContentTokenCount"),
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: thoughts,
        total_tokens: total_or_sum(count(m.get("totalTokenCount")), prompt, completion),
    })
}

/// `{prompt_token_count, generation_token_count}` on this object. `None` if neither is present.
fn generic(m: &Map<String, Value>) -> Option<Usage> {
    if !has_any(m, &["prompt_token_count", "generation_token_count"]) {
        return None;
    }
    let prompt = get(m, "prompt_token_count");
    let completion = get(m, "generation_token_count");
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total_or_sum(count(m.get("total_token_count")), prompt, completion),
        ..Usage::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../testdata/providers/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    fn json_fixture(name: &str) -> Value {
        serde_json::from_str(&fixture(name)).expect("fixture is JSON")
    }

    /// Rewrites every line ending (LF, CRLF or CR) to `eol`.
    fn with_eol(body: &str, eol: &str) -> String {
        SseLines { rest: body }
            .map(|l| format!("{l}{eol}"))
            .collect()
    }

    #[test]
    fn openai_chat_response() {
        let (u, shape) =
            Usage::from_response_json(&json_fixture("openai_chat_response.json")).expect("usage");
        assert_eq!(shape, UsageShape::OpenAi);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 1250,
                completion_tokens: 42,
                cache_read_tokens: 1024,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 0,
                total_tokens: 1292,
            }
        );
    }

    #[test]
    fn openai_chat_stream() {
        let (u, shape) = Usage::from_sse(&fixture("openai_chat_stream.sse")).expect("usage");
        assert_eq!(shape, UsageShape::OpenAi);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 17,
                completion_tokens: 3,
                total_tokens: 20,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn anthropic_response() {
        let (u, shape) =
            Usage::from_response_json(&json_fixture("anthropic_messages_response.json"))
                .expect("usage");
        assert_eq!(shape, UsageShape::Anthropic);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 21 + 1800,
                completion_tokens: 35,
                cache_read_tokens: 1800,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 0,
                total_tokens: 21 + 1800 + 35,
            }
        );
    }

    #[test]
    fn anthropic_stream() {
        let (u, shape) = Usage::from_sse(&fixture("anthropic_stream.sse")).expect("usage");
        assert_eq!(shape, UsageShape::Anthropic);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 21 + 1800,
                completion_tokens: 6,
                cache_read_tokens: 0,
                cache_write_tokens: 1800,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 0,
                total_tokens: 21 + 1800 + 6,
            }
        );
    }

    #[test]
    fn gemini_response() {
        let (u, shape) =
            Usage::from_response_json(&json_fixture("gemini_response.json")).expect("usage");
        assert_eq!(shape, UsageShape::Gemini);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 2100,
                completion_tokens: 180,
                cache_read_tokens: 1024,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 120,
                total_tokens: 2280,
            }
        );
    }

    #[test]
    fn gemini_stream() {
        let body = fixture("gemini_stream.sse");
        assert!(
            body.contains("\r\n\r\n"),
            "fixture keeps its CRLF line endings"
        );
        let (u, shape) = Usage::from_sse(&body).expect("usage");
        assert_eq!(shape, UsageShape::Gemini);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 12,
                completion_tokens: 28,
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 25,
                total_tokens: 40,
            }
        );
    }

    #[test]
    fn streams_agree_across_line_endings() {
        for name in [
            "openai_chat_stream.sse",
            "anthropic_stream.sse",
            "gemini_stream.sse",
        ] {
            let body = fixture(name);
            let expected = Usage::from_sse(&body).expect("usage");
            for eol in ["\n", "\r\n", "\r"] {
                let converted = with_eol(&body, eol);
                assert_eq!(
                    Usage::from_sse(&converted),
                    Some(expected),
                    "{name} with {eol:?}"
                );
            }
            // No trailing blank line: the last event is still dispatched.
            assert_eq!(
                Usage::from_sse(body.trim_end()),
                Some(expected),
                "{name} trimmed"
            );
        }
    }

    #[test]
    fn sse_comments_multiline_data_and_garbage() {
        let body = ": keep-alive\n\
                    data: not json\n\n\
                    event: whatever\n\
                    data: {\"usage\":\n\
                    data:  {\"prompt_tokens\": 5, \"completion_tokens\": 2}}\n\n\
                    data: {\"usage\": null}\n\n\
                    data: [DONE]\n\n";
        let (u, shape) = Usage::from_sse(body).expect("usage");
        assert_eq!(shape, UsageShape::OpenAi);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (5, 2, 7)
        );
        assert_eq!(Usage::from_sse(""), None);
        assert_eq!(Usage::from_sse("data: [DONE]\n\n"), None);
        assert_eq!(Usage::from_sse("data: {\"usage\": null}\n\n"), None);
        // Groq's streaming usage.
        let groq = "data: {\"choices\":[],\"x_groq\":{\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2,\"total_tokens\":9}}}\n\n";
        assert_eq!(Usage::from_sse(groq).map(|(u, _)| u.total_tokens), Some(9));
        // Events missing the blank line separator are still read line by line.
        let glued = "data: {\"usage\":null}\ndata: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n";
        assert_eq!(
            Usage::from_sse(glued).map(|(u, _)| u.prompt_tokens),
            Some(3)
        );
    }

    #[test]
    fn anthropic_stream_delta_overlays_start() {
        let body = "event: message_start\n\
            data: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":100,\"cache_creation\":{\"ephemeral_5m_input_tokens\":40,\"ephemeral_1h_input_tokens\":60},\"output_tokens\":1}}}\n\n\
            event: message_delta\n\
            data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n\
            event: message_delta\n\
            data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":12,\"input_tokens\":11}}\n\n\
            event: message_stop\n\
            data: {\"type\":\"message_stop\"}\n\n";
        let (u, shape) = Usage::from_sse(body).expect("usage");
        assert_eq!(shape, UsageShape::Anthropic);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 11 + 5 + 100,
                completion_tokens: 12,
                cache_read_tokens: 5,
                cache_write_tokens: 40,
                cache_write_1h_tokens: 60,
                reasoning_tokens: 0,
                total_tokens: 11 + 5 + 100 + 12,
            }
        );
    }

    #[test]
    fn anthropic_cache_creation_split() {
        // 1h part given, 5m part absent: 5m = total - 1h.
        let body = json!({"type": "message", "usage": {
            "input_tokens": 1, "cache_creation_input_tokens": 100,
            "cache_creation": {"ephemeral_1h_input_tokens": 30}, "output_tokens": 2}});
        let (u, _) = Usage::from_response_json(&body).expect("usage");
        assert_eq!((u.cache_write_tokens, u.cache_write_1h_tokens), (70, 30));
        assert_eq!(u.prompt_tokens, 101);
    }

    #[test]
    fn openai_responses_api_vs_anthropic() {
        let body = json!({"object": "response", "usage": {
            "input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
            "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 30},
            "total_tokens": 150}});
        let (u, shape) = Usage::from_response_json(&body).expect("usage");
        assert_eq!(shape, UsageShape::OpenAi);
        assert_eq!(
            u,
            Usage {
                prompt_tokens: 100,
                completion_tokens: 50,
                cache_read_tokens: 40,
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                reasoning_tokens: 30,
                total_tokens: 150,
            }
        );
        // Bare input/output without details: Anthropic (input excludes cache, no total).
        let (u, shape) =
            Usage::from_response_json(&json!({"usage": {"input_tokens": 3, "output_tokens": 4}}))
                .expect("usage");
        assert_eq!(shape, UsageShape::Anthropic);
        assert_eq!(u.total_tokens, 7);
        // Responses API streaming: the completed event carries the response.
        let sse = format!(
            "event: response.completed\ndata: {}\n\n",
            json!({"type": "response.completed", "response": body})
        );
        assert_eq!(
            Usage::from_sse(&sse).map(|(u, _)| u.reasoning_tokens),
            Some(30)
        );
    }

    #[test]
    fn embeddings_and_generic_shapes() {
        let (u, shape) = Usage::from_response_json(&json!({"object": "list",
            "usage": {"prompt_tokens": 8, "total_tokens": 8}}))
        .expect("usage");
        assert_eq!(shape, UsageShape::OpenAi);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (8, 0, 8)
        );

        let (u, shape) = Usage::from_response_json(
            &json!({"prompt_token_count": 9, "generation_token_count": 4}),
        )
        .expect("usage");
        assert_eq!(shape, UsageShape::Generic);
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (9, 4, 13)
        );
        let (u, shape) = Usage::from_response_json(
            &json!({"usage": {"prompt_token_count": 2, "generation_token_count": 1}}),
        )
        .expect("usage");
        assert_eq!(shape, UsageShape::Generic);
        assert_eq!(u.total_tokens, 3);
    }

    #[test]
    fn gemini_tool_use_prompt_counts_as_prompt() {
        let body = json!({"usageMetadata": {"promptTokenCount": 10, "toolUsePromptTokenCount": 5,
            "candidatesTokenCount": 2}});
        let (u, _) = Usage::from_response_json(&body).expect("usage");
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (15, 2, 17)
        );
    }

    #[test]
    fn bad_counts_are_absent() {
        let body = json!({"usage": {"prompt_tokens": -5, "completion_tokens": 2.5,
            "total_tokens": "12", "prompt_tokens_details": {"cached_tokens": 1e300},
            "completion_tokens_details": {"reasoning_tokens": 18446744073709551615u64}}});
        let (u, _) = Usage::from_response_json(&body).expect("usage");
        assert_eq!(u, Usage::default());
        let (u, _) =
            Usage::from_response_json(&json!({"usage": {"prompt_tokens": 4.0}})).expect("usage");
        assert_eq!(u.prompt_tokens, 4);
        assert_eq!(Usage::from_response_json(&json!({"usage": {}})), None);
        assert_eq!(Usage::from_response_json(&json!({"usage": null})), None);
        assert_eq!(Usage::from_response_json(&json!([1, 2])), None);
        assert_eq!(Usage::from_response_json(&json!({"choices": []})), None);
        // Saturating sums, no overflow panic.
        let big = json!({"usageMetadata": {"promptTokenCount": i64::MAX,
            "toolUsePromptTokenCount": i64::MAX, "candidatesTokenCount": i64::MAX,
            "thoughtsTokenCount": i64::MAX}});
        let (u, _) = Usage::from_response_json(&big).expect("usage");
        assert_eq!(u.prompt_tokens, i64::MAX);
    }

    proptest! {
        #[test]
        fn from_sse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = Usage::from_sse(&s);
        }

        #[test]
        fn from_sse_never_panics_on_sse_like_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("data: ".to_owned()),
                    Just("event: message_delta".to_owned()),
                    Just("\r".to_owned()),
                    Just("\n".to_owned()),
                    Just("\r\n".to_owned()),
                    Just(":".to_owned()),
                    Just("[DONE]".to_owned()),
                    Just("{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-1}}".to_owned()),
                    Just("{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1e999}}}".to_owned()),
                    Just("{\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":9223372036854775807}}".to_owned()),
                    Just("{\"usageMetadata\":{\"promptTokenCount\":1}}".to_owned()),
                    ".{0,16}",
                ],
                0..40,
            )
        ) {
            let s: String = parts.concat();
            let _ = Usage::from_sse(&s);
        }

        #[test]
        fn from_response_json_never_panics(
            a in any::<i64>(), b in any::<f64>(), c in any::<u64>(), key in 0usize..4
        ) {
            let bodies = [
                json!({"usage": {"prompt_tokens": a, "completion_tokens": b, "total_tokens": c,
                    "prompt_tokens_details": {"cached_tokens": a}}}),
                json!({"type": "message", "usage": {"input_tokens": a, "output_tokens": c,
                    "cache_read_input_tokens": c, "cache_creation_input_tokens": a,
                    "cache_creation": {"ephemeral_1h_input_tokens": c}}}),
                json!({"usageMetadata": {"promptTokenCount": c, "candidatesTokenCount": c,
                    "thoughtsTokenCount": a, "toolUsePromptTokenCount": c}}),
                json!({"prompt_token_count": a, "generation_token_count": c}),
            ];
            if let Some((u, _)) = Usage::from_response_json(&bodies[key]) {
                prop_assert!(u.prompt_tokens >= 0 && u.completion_tokens >= 0);
                prop_assert!(u.total_tokens >= 0);
            }
        }
    }
}
