//! OpenAI chat/completions ⇄ Anthropic Messages, so OpenAI clients can call Claude models:
//! the request is translated to Messages, the answer (JSON or stream) back to a chat completion.

use serde_json::{Map, Value, json};

use crate::GatewayError;

/// Default `max_tokens` (required by Messages) when the OpenAI request sets none.
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// OpenAI content (string or parts) → Anthropic content blocks.
fn blocks_of(content: &Value) -> Result<Vec<Value>, GatewayError> {
    match content {
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Null => Ok(Vec::new()),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (i, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.push(json!({"type": "text", "text": p.get("text").cloned().unwrap_or(Value::String(String::new()))})),
                    Some("image_url") => {
                        let url = p.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("");
                        if let Some(rest) = url.strip_prefix("data:") {
                            let (media, data) = rest.split_once(";base64,").ok_or_else(|| {
                                GatewayError::BadRequest(format!(
                                    "content[{i}].image_url.url: a data URL must be base64 ('data:image/png;base64,…')"
                                ))
                            })?;
                            out.push(json!({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}));
                        } else {
                            out.push(json!({"type": "image", "source": {"type": "url", "url": url}}));
                        }
                    }
                    other => {
                        return Err(GatewayError::BadRequest(format!(
                            "content[{i}].type {} cannot be sent to an Anthropic model; use text or image_url parts",
                            other.map_or("(missing)".to_string(), |t| format!("'{t}'"))
                        )));
                    }
                }
            }
            Ok(out)
        }
        _ => Err(GatewayError::BadRequest(
            "message content must be a string or an array of parts".into(),
        )),
    }
}

/// An OpenAI chat/completions request → an Anthropic Messages request.
pub(crate) fn request_to_messages(req: &Value, model: &str) -> Result<Value, GatewayError> {
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| GatewayError::BadRequest("'messages' must be an array".into()))?;
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => system.push(text_of(content)),
            "user" => out.push(json!({"role": "user", "content": blocks_of(content)?})),
            "assistant" => {
                let mut blocks = blocks_of(content)?;
                if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
                    for c in calls {
                        let args = c
                            .pointer("/function/arguments")
                            .and_then(Value::as_str)
                            .unwrap_or("{}");
                        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
                        blocks.push(json!({"type": "tool_use", "id": c.get("id").cloned().unwrap_or(Value::Null),
                                           "name": c.pointer("/function/name").cloned().unwrap_or(Value::Null), "input": input}));
                    }
                }
                out.push(json!({"role": "assistant", "content": blocks}));
            }
            "tool" => {
                let block = json!({"type": "tool_result", "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(Value::Null),
                                   "content": text_of(content)});
                // Consecutive tool results go into one user turn.
                match out.last_mut() {
                    Some(last)
                        if last["role"] == "user"
                            && last["content"]
                                .as_array()
                                .is_some_and(|a| a.iter().all(|b| b["type"] == "tool_result")) =>
                    {
                        if let Some(a) = last["content"].as_array_mut() {
                            a.push(block);
                        }
                    }
                    _ => out.push(json!({"role": "user", "content": [block]})),
                }
            }
            other => {
                return Err(GatewayError::BadRequest(format!(
                    "messages[{i}].role '{other}' is not one of system, developer, user, assistant, tool"
                )));
            }
        }
    }
    let mut r = Map::new();
    r.insert("model".into(), Value::String(model.to_owned()));
    r.insert("messages".into(), Value::Array(out));
    if !system.is_empty() {
        r.insert("system".into(), Value::String(system.join("\n\n")));
    }
    let max = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    r.insert("max_tokens".into(), Value::from(max));
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = req.get(k).filter(|v| !v.is_null()) {
            r.insert(k.into(), v.clone());
        }
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            r.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            r.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(u) = req.get("user").and_then(Value::as_str) {
        r.insert("metadata".into(), json!({"user_id": u}));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let t: Vec<Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .map(|f| {
                json!({"name": f.get("name").cloned().unwrap_or(Value::Null),
                       "description": f.get("description").cloned().unwrap_or(Value::String(String::new())),
                       "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"}))})
            })
            .collect();
        r.insert("tools".into(), Value::Array(t));
    }
    if let Some(tc) = req.get("tool_choice") {
        let c = match tc {
            Value::String(s) if s == "none" => Some(json!({"type": "none"})),
            Value::String(s) if s == "required" => Some(json!({"type": "any"})),
            Value::String(_) => Some(json!({"type": "auto"})),
            Value::Object(o) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .map(|n| json!({"type": "tool", "name": n})),
            _ => None,
        };
        if let Some(c) = c {
            r.insert("tool_choice".into(), c);
        }
    }
    Ok(Value::Object(r))
}

fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("max_tokens") => "length".into(),
        Some("tool_use") => "tool_calls".into(),
        Some(_) => "stop".into(),
        None => Value::Null,
    }
}

/// Anthropic usage → OpenAI usage (prompt includes cache reads and writes).
fn usage_of(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_i64).unwrap_or(0);
    let prompt =
        n("input_tokens") + n("cache_read_input_tokens") + n("cache_creation_input_tokens");
    let completion = n("output_tokens");
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": n("cache_read_input_tokens")}})
}

/// An Anthropic Messages response → an OpenAI chat completion.
pub(crate) fn response_to_chat(m: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in m
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({"id": b.get("id"), "type": "function",
                "function": {"name": b.get("name"), "arguments": b.get("input").map(Value::to_string).unwrap_or_default()}})),
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": m.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": m.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(m.get("stop_reason").and_then(Value::as_str))}],
        "usage": usage_of(m.get("usage").unwrap_or(&Value::Null)),
    })
}

/// An Anthropic error body → OpenAI's error shape.
pub(crate) fn error_to_openai(v: &Value) -> Value {
    json!({"error": {"message": v.pointer("/error/message").cloned().unwrap_or(Value::String("the provider returned an error".into())),
                     "type": v.pointer("/error/type").cloned().unwrap_or(Value::Null), "param": null, "code": null}})
}

/// Turns Anthropic stream events into OpenAI chat.completion.chunk events.
#[derive(Debug)]
pub(crate) struct StreamTranslator {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    usage: Value,
    /// Anthropic content block index → OpenAI tool call index.
    tool_index: Vec<(u64, usize)>,
}

impl StreamTranslator {
    pub(crate) fn new(include_usage: bool) -> Self {
        StreamTranslator {
            id: String::new(),
            model: String::new(),
            created: chrono::Utc::now().timestamp(),
            include_usage,
            usage: json!({}),
            tool_index: Vec::new(),
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    /// The OpenAI events for one Anthropic event's data (possibly none).
    pub(crate) fn event(&mut self, data: &str) -> String {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return String::new();
        };
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.id = m.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
                self.model = m
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if let Some(u) = m.get("usage").and_then(Value::as_object) {
                    self.usage = Value::Object(u.clone());
                }
                self.chunk(json!({"role": "assistant", "content": ""}), Value::Null)
            }
            Some("content_block_start") => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                if b.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let n = self.tool_index.len();
                    self.tool_index.push((idx, n));
                    self.chunk(
                        json!({"tool_calls": [{"index": n, "id": b.get("id"), "type": "function",
                                               "function": {"name": b.get("name"), "arguments": ""}}]}),
                        Value::Null,
                    )
                } else {
                    String::new()
                }
            }
            Some("content_block_delta") => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        self.chunk(json!({"content": d.get("text")}), Value::Null)
                    }
                    Some("input_json_delta") => {
                        let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let n = self
                            .tool_index
                            .iter()
                            .find(|(a, _)| *a == idx)
                            .map_or(0, |(_, n)| *n);
                        self.chunk(
                            json!({"tool_calls": [{"index": n, "function": {"arguments": d.get("partial_json")}}]}),
                            Value::Null,
                        )
                    }
                    _ => String::new(),
                }
            }
            Some("message_delta") => {
                if let (Some(u), Value::Object(cur)) =
                    (v.get("usage").and_then(Value::as_object), &mut self.usage)
                {
                    for (k, x) in u {
                        if !x.is_null() {
                            cur.insert(k.clone(), x.clone());
                        }
                    }
                }
                let stop = v.pointer("/delta/stop_reason").and_then(Value::as_str);
                self.chunk(json!({}), finish_reason(stop))
            }
            Some("message_stop") => {
                let mut s = String::new();
                if self.include_usage {
                    let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                                   "model": self.model, "choices": [], "usage": usage_of(&self.usage)});
                    s.push_str(&format!("data: {c}\n\n"));
                }
                s.push_str("data: [DONE]\n\n");
                s
            }
            Some("error") => format!("data: {}\n\n", error_to_openai(&v)),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_translate_with_system_tools_and_results() {
        let req = json!({"model": "claude-x", "max_tokens": 50, "temperature": 0.2, "stop": "END", "user": "u1",
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "4°C"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"});
        let m = request_to_messages(&req, "claude-x").expect("ok");
        assert_eq!(m["system"], "Be terse.");
        assert_eq!(m["max_tokens"], 50);
        assert_eq!(m["stop_sequences"], json!(["END"]));
        assert_eq!(m["metadata"]["user_id"], "u1");
        assert_eq!(
            m["messages"][0]["content"][1]["source"]["media_type"],
            "image/png"
        );
        assert_eq!(m["messages"][1]["content"][0]["input"]["city"], "Oslo");
        assert_eq!(m["messages"][2]["content"][0]["tool_use_id"], "t1");
        assert_eq!(m["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(m["tool_choice"]["type"], "any");
        let bad = json!({"messages": [{"role": "robot", "content": "x"}]});
        assert!(request_to_messages(&bad, "c").is_err());
    }

    #[test]
    fn streams_translate_to_chunks_with_usage() {
        let sse = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/providers/anthropic_stream.sse"
        ))
        .expect("fixture");
        let mut t = StreamTranslator::new(true);
        let mut out = String::new();
        for ev in sse.split("\n\n") {
            if let Some(d) = crate::sse::data_of(ev.as_bytes()) {
                out.push_str(&t.event(&d));
            }
        }
        let chunks: Vec<Value> = out
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).expect("json"))
            .collect();
        assert!(out.ends_with("data: [DONE]\n\n"));
        let text: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert!(!text.is_empty());
        let last = chunks.last().expect("usage chunk");
        assert_eq!(last["choices"], json!([]));
        assert!(
            last["usage"]["prompt_tokens"]
                .as_i64()
                .is_some_and(|p| p >= 1800)
        );
        assert!(chunks.iter().any(|c| {
            c.pointer("/choices/0/finish_reason")
                .is_some_and(|f| f == "stop")
        }));
    }
}
