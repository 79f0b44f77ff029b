//! Request and response bodies in each provider's wire format.
//!
//! Texts are short filler (a few hundred characters at most, whatever the token counts); the
//! usage objects match the record exactly, so `Usage::from_response_json` / `Usage::from_sse`
//! on a generated response body give back the record's token counts.

use loupe_model::RequestRecord;
use serde_json::{Value, json};

use crate::catalog::{Api, ModelKind, ModelSpec};
use crate::rng::Rng;

const WORDS: [&str; 48] = [
    "the",
    "customer",
    "report",
    "quarterly",
    "revenue",
    "search",
    "results",
    "summary",
    "please",
    "order",
    "shipping",
    "account",
    "invoice",
    "policy",
    "update",
    "latency",
    "model",
    "answer",
    "question",
    "document",
    "section",
    "table",
    "data",
    "user",
    "request",
    "error",
    "retry",
    "billing",
    "contract",
    "meeting",
    "notes",
    "agenda",
    "product",
    "feature",
    "release",
    "bug",
    "ticket",
    "priority",
    "team",
    "review",
    "draft",
    "email",
    "translate",
    "french",
    "code",
    "function",
    "test",
    "deploy",
];

/// Filler text of roughly `tokens` tokens, capped at `max_chars` characters.
fn text(rng: &mut Rng, tokens: i64, max_chars: usize) -> String {
    let want = usize::try_from(tokens.saturating_mul(4))
        .unwrap_or(usize::MAX)
        .clamp(8, max_chars.max(8));
    let mut out = String::with_capacity(want + 16);
    let mut sentence_start = true;
    while out.len() < want {
        if !out.is_empty() {
            out.push(' ');
        }
        let w = *rng.pick(&WORDS);
        if sentence_start {
            let mut chars = w.chars();
            if let Some(first) = chars.next() {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push_str(w);
        }
        sentence_start = rng.chance(0.12);
        if sentence_start {
            out.push('.');
        }
    }
    if !sentence_start {
        out.push('.');
    }
    out
}

fn system_prompt(feature: &str) -> String {
    match feature {
        "summarize" => "Summarize the document for a busy executive in five bullet points.".to_owned(),
        "classify" => "Classify the support ticket into one of: billing, bug, feature_request, other. Answer with the label only.".to_owned(),
        "extract" => "Extract the fields as JSON: name, date, amount, currency.".to_owned(),
        "translate" => "Translate the user's text into French. Keep the formatting.".to_owned(),
        "code-review" => "You are a senior engineer reviewing a pull request. Point out bugs first.".to_owned(),
        "agent-step" => "You are a planning agent. Decide the next tool call and explain briefly.".to_owned(),
        "search" => "Answer using only the provided search results; cite them as [n].".to_owned(),
        "support" => "You are a friendly support assistant for Acme Cloud.".to_owned(),
        _ => "You are a helpful assistant.".to_owned(),
    }
}

fn id(rng: &mut Rng, prefix: &str, hex_len: usize) -> String {
    let full = format!("{:032x}", rng.u128());
    format!("{prefix}{}", &full[..hex_len.min(32)])
}

/// The request body a client sent for this call.
pub(crate) fn request(
    rng: &mut Rng,
    spec: &ModelSpec,
    rec: &RequestRecord,
    feature: &str,
    prompt_estimate: i64,
) -> String {
    let user_text = text(rng, prompt_estimate, 600);
    let system = system_prompt(feature);
    let temperature = *rng.pick(&[0.0, 0.2, 0.7, 1.0]);
    let body = match (spec.api, spec.kind) {
        (_, ModelKind::Embedding) => {
            json!({"model": spec.model, "input": user_text, "encoding_format": "float"})
        }
        (Api::Anthropic, _) => {
            let mut b = json!({
                "model": spec.model,
                "max_tokens": *rng.pick(&[1024, 4096, 8192]),
                "system": system,
                "messages": [{"role": "user", "content": user_text}],
                "temperature": temperature,
            });
            if rec.stream {
                b["stream"] = json!(true);
            }
            b
        }
        (Api::Gemini, _) => json!({
            "contents": [{"role": "user", "parts": [{"text": user_text}]}],
            "systemInstruction": {"parts": [{"text": system}]},
            "generationConfig": {"temperature": temperature, "maxOutputTokens": 8192},
        }),
        _ => {
            let mut b = json!({
                "model": spec.model,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user_text},
                ],
            });
            if spec.max_output >= 100_000 {
                b["reasoning_effort"] = json!(*rng.pick(&["low", "medium", "high"]));
            } else {
                b["temperature"] = json!(temperature);
            }
            if rec.stream {
                b["stream"] = json!(true);
                if spec.api == Api::OpenAi {
                    b["stream_options"] = json!({"include_usage": true});
                }
            }
            b
        }
    };
    body.to_string()
}

fn openai_usage(rec: &RequestRecord) -> Value {
    json!({
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "total_tokens": rec.total_tokens,
        "prompt_tokens_details": {"cached_tokens": rec.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": rec.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// DeepSeek reports cache hits and misses at top level.
fn deepseek_usage(rec: &RequestRecord) -> Value {
    json!({
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "total_tokens": rec.total_tokens,
        "prompt_cache_hit_tokens": rec.cache_read_tokens,
        "prompt_cache_miss_tokens": rec.prompt_tokens - rec.cache_read_tokens,
        "completion_tokens_details": {"reasoning_tokens": rec.reasoning_tokens},
    })
}

fn anthropic_usage(rec: &RequestRecord) -> Value {
    json!({
        "input_tokens": rec.prompt_tokens - rec.cache_read_tokens - rec.cache_write_tokens,
        "cache_creation_input_tokens": rec.cache_write_tokens,
        "cache_read_input_tokens": rec.cache_read_tokens,
        "output_tokens": rec.completion_tokens,
        "service_tier": "standard",
    })
}

fn gemini_usage(rec: &RequestRecord) -> Value {
    let mut u = json!({
        "promptTokenCount": rec.prompt_tokens,
        "candidatesTokenCount": rec.completion_tokens - rec.reasoning_tokens,
        "totalTokenCount": rec.total_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": rec.prompt_tokens}],
    });
    if rec.cache_read_tokens > 0 {
        u["cachedContentTokenCount"] = json!(rec.cache_read_tokens);
    }
    if rec.reasoning_tokens > 0 {
        u["thoughtsTokenCount"] = json!(rec.reasoning_tokens);
    }
    u
}

fn sse(events: &[(Option<&str>, Value)]) -> String {
    let mut out = String::new();
    for (event, data) in events {
        if let Some(e) = event {
            out.push_str("event: ");
            out.push_str(e);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(&data.to_string());
        out.push_str("\n\n");
    }
    out
}

/// The response body of a successful call (JSON, or SSE text for streamed calls).
pub(crate) fn success_response(rng: &mut Rng, spec: &ModelSpec, rec: &RequestRecord) -> String {
    let answer = text(rng, rec.completion_tokens - rec.reasoning_tokens, 400);
    let created = rec.created_at.timestamp();
    let model = rec.response_model.as_deref().unwrap_or(spec.model);
    match (spec.api, spec.kind) {
        (_, ModelKind::Embedding) => {
            let embedding: Vec<f64> = (0..8)
                .map(|_| (rng.uniform(-0.1, 0.1) * 1e6).round() / 1e6)
                .collect();
            json!({
                "object": "list",
                "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                "model": model,
                "usage": {"prompt_tokens": rec.prompt_tokens, "total_tokens": rec.prompt_tokens},
            })
            .to_string()
        }
        (Api::Anthropic, _) => {
            let msg_id = id(rng, "msg_01", 22);
            if rec.stream {
                let mut start_usage = anthropic_usage(rec);
                start_usage["output_tokens"] = json!(1);
                let (head, tail) = answer.split_at(answer.len() / 2);
                sse(&[
                    (
                        Some("message_start"),
                        json!({"type": "message_start", "message": {"id": msg_id, "type": "message",
                            "role": "assistant", "model": model, "content": [], "stop_reason": null,
                            "stop_sequence": null, "usage": start_usage}}),
                    ),
                    (
                        Some("content_block_start"),
                        json!({"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}),
                    ),
                    (
                        Some("content_block_delta"),
                        json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": head}}),
                    ),
                    (
                        Some("content_block_delta"),
                        json!({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "text_delta", "text": tail}}),
                    ),
                    (
                        Some("content_block_stop"),
                        json!({"type": "content_block_stop", "index": 0}),
                    ),
                    (
                        Some("message_delta"),
                        json!({"type": "message_delta",
                            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                            "usage": {"output_tokens": rec.completion_tokens}}),
                    ),
                    (Some("message_stop"), json!({"type": "message_stop"})),
                ])
            } else {
                json!({
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": answer}],
                    "stop_reason": "end_turn",
                    "stop_sequence": null,
                    "usage": anthropic_usage(rec),
                })
                .to_string()
            }
        }
        (Api::Gemini, _) => {
            let response_id = id(rng, "", 22);
            if rec.stream {
                let (head, tail) = answer.split_at(answer.len() / 2);
                let first_usage = json!({"promptTokenCount": rec.prompt_tokens,
                    "totalTokenCount": rec.prompt_tokens});
                sse(&[
                    (
                        None,
                        json!({"candidates": [{"content": {"parts": [{"text": head}], "role": "model"},
                            "index": 0}], "usageMetadata": first_usage, "modelVersion": model,
                            "responseId": response_id}),
                    ),
                    (
                        None,
                        json!({"candidates": [{"content": {"parts": [{"text": tail}], "role": "model"},
                            "finishReason": "STOP", "index": 0}], "usageMetadata": gemini_usage(rec),
                            "modelVersion": model, "responseId": response_id}),
                    ),
                ])
            } else {
                json!({
                    "candidates": [{"content": {"parts": [{"text": answer}], "role": "model"},
                        "finishReason": "STOP", "index": 0}],
                    "usageMetadata": gemini_usage(rec),
                    "modelVersion": model,
                    "responseId": response_id,
                })
                .to_string()
            }
        }
        (api, _) => {
            let chat_id = match api {
                Api::Groq => id(rng, "chatcmpl-", 32),
                Api::Mistral => id(rng, "", 32),
                _ => id(rng, "chatcmpl-", 29),
            };
            let usage = if api == Api::DeepSeek {
                deepseek_usage(rec)
            } else {
                openai_usage(rec)
            };
            if rec.stream {
                let chunk = |delta: Value, finish: Value| {
                    json!({"id": chat_id, "object": "chat.completion.chunk", "created": created,
                        "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                };
                let (head, tail) = answer.split_at(answer.len() / 2);
                let mut events = vec![
                    (
                        None,
                        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                    ),
                    (None, chunk(json!({"content": head}), Value::Null)),
                    (None, chunk(json!({"content": tail}), Value::Null)),
                ];
                let mut last = chunk(json!({}), json!("stop"));
                match api {
                    Api::Groq => {
                        last["x_groq"] = json!({"id": id(rng, "req_", 26), "usage": usage});
                        events.push((None, last));
                    }
                    Api::Mistral | Api::DeepSeek => {
                        last["usage"] = usage;
                        events.push((None, last));
                    }
                    _ => {
                        events.push((None, last));
                        let mut usage_chunk = chunk(json!({}), Value::Null);
                        usage_chunk["choices"] = json!([]);
                        usage_chunk["usage"] = usage;
                        events.push((None, usage_chunk));
                    }
                }
                let mut out = sse(&events);
                out.push_str("data: [DONE]\n\n");
                out
            } else {
                json!({
                    "id": chat_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer,
                        "refusal": null}, "logprobs": null, "finish_reason": "stop"}],
                    "usage": usage,
                })
                .to_string()
            }
        }
    }
}
