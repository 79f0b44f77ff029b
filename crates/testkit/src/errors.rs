//! Provider error responses in each provider's own style.
//!
//! `error_type` is what Loupe extracts from such a body: `error.type`, else `error.status`
//! (Gemini), else `error.code`; for Mistral's top-level `{"type", "message"}` the `type`.

use serde_json::{Value, json};

use crate::catalog::{Api, ModelSpec};
use crate::rng::Rng;

/// The error classes the generator emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    RateLimited,
    ServerError,
    Overloaded,
    BadRequest,
}

#[derive(Debug, Clone)]
pub(crate) struct ProviderError {
    pub status: i32,
    pub error_type: String,
    pub message: String,
    pub body: Value,
}

fn org_tag(rng: &mut Rng) -> String {
    format!("{:024x}", rng.u128() >> 32)
}

/// A too-long prompt for a context-length error.
fn oversize(rng: &mut Rng, context: i64) -> i64 {
    context + rng.int(1, context / 4 + 1)
}

fn openai_body(message: &str, ty: &str, param: Value, code: Value) -> Value {
    json!({"error": {"message": message, "type": ty, "param": param, "code": code}})
}

pub(crate) fn provider_error(rng: &mut Rng, spec: &ModelSpec, failure: Failure) -> ProviderError {
    let model = spec.model;
    let (status, ty, message, body) = match (spec.api, failure) {
        (Api::Anthropic, f) => {
            let (status, ty, message) = match f {
                Failure::RateLimited => (
                    429,
                    "rate_limit_error",
                    format!(
                        "This request would exceed the rate limit for your organization of {} input tokens per minute. \
                         For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response \
                         headers for current usage. Please reduce the prompt length or the maximum tokens requested, \
                         or try again later.",
                        rng.pick(&["30,000", "80,000", "400,000", "2,000,000"])
                    ),
                ),
                Failure::ServerError => (500, "api_error", "Internal server error".to_owned()),
                Failure::Overloaded => (529, "overloaded_error", "Overloaded".to_owned()),
                Failure::BadRequest => (
                    400,
                    "invalid_request_error",
                    format!(
                        "prompt is too long: {} tokens > {} maximum",
                        oversize(rng, spec.context),
                        spec.context
                    ),
                ),
            };
            let body = json!({
                "type": "error",
                "error": {"type": ty, "message": message},
                "request_id": format!("req_011C{:020x}", rng.u128() >> 48),
            });
            (status, ty.to_owned(), message, body)
        }
        (Api::Gemini, f) => {
            let (status, ty, message) = match f {
                Failure::RateLimited => (
                    429,
                    "RESOURCE_EXHAUSTED",
                    if rng.chance(0.5) {
                        "Resource has been exhausted (e.g. check quota).".to_owned()
                    } else {
                        format!(
                            "You exceeded your current quota, please check your plan and billing details. For more \
                             information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. \
                             Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count, \
                             limit: 2000000, model: {model}"
                        )
                    },
                ),
                Failure::ServerError => (
                    500,
                    "INTERNAL",
                    "An internal error has occurred. Please retry or report in \
                     https://developers.generativeai.google/guide/troubleshooting"
                        .to_owned(),
                ),
                Failure::Overloaded => (
                    503,
                    "UNAVAILABLE",
                    "The model is overloaded. Please try again later.".to_owned(),
                ),
                Failure::BadRequest => (
                    400,
                    "INVALID_ARGUMENT",
                    if rng.chance(0.6) {
                        format!(
                            "The input token count ({}) exceeds the maximum number of tokens allowed ({}).",
                            oversize(rng, spec.context),
                            spec.context
                        )
                    } else {
                        "Request contains an invalid argument.".to_owned()
                    },
                ),
            };
            let body = json!({"error": {"code": status, "message": message, "status": ty}});
            (status, ty.to_owned(), message, body)
        }
        (Api::Mistral, f) => {
            let (status, ty, code, message) = match f {
                Failure::RateLimited => (429, "rate_limited", "1300", "Requests rate limit exceeded".to_owned()),
                Failure::ServerError => (500, "internal_server_error", "3000", "Internal server error".to_owned()),
                Failure::Overloaded => (
                    503,
                    "service_tier_capacity_exceeded",
                    "3505",
                    "Service tier capacity exceeded for this model.".to_owned(),
                ),
                Failure::BadRequest => (
                    400,
                    "invalid_request_message_order",
                    "3230",
                    "Expected last role User or Tool (or Assistant with prefix True) for serving but got assistant"
                        .to_owned(),
                ),
            };
            let body = json!({"object": "error", "message": message, "type": ty, "param": null, "code": code});
            (status, ty.to_owned(), message, body)
        }
        (Api::DeepSeek, f) => {
            let (status, ty, message) = match f {
                Failure::RateLimited => (
                    429,
                    "rate_limit_reached_error",
                    "Rate Limit Reached".to_owned(),
                ),
                Failure::ServerError => (500, "server_error", "Server Error".to_owned()),
                Failure::Overloaded => (
                    503,
                    "server_overloaded_error",
                    "Server Overloaded".to_owned(),
                ),
                Failure::BadRequest => {
                    let completion = rng.int(1000, 8192);
                    let prompt = oversize(rng, spec.context);
                    (
                        400,
                        "invalid_request_error",
                        format!(
                            "This model's maximum context length is {} tokens. However, you requested {} tokens \
                             ({prompt} in the messages, {completion} in the completion). Please reduce the length of \
                             the messages or completion.",
                            spec.context,
                            prompt + completion
                        ),
                    )
                }
            };
            let body = openai_body(&message, ty, Value::Null, Value::Null);
            (status, ty.to_owned(), message, body)
        }
        (Api::Groq, f) => {
            let (status, ty, code, message) = match f {
                Failure::RateLimited => {
                    let limit = *rng.pick(&[6000, 8000, 30_000, 250_000]);
                    let requested = rng.int(200, limit / 2);
                    let used = rng.int(limit - requested + 1, limit);
                    (
                        429,
                        "tokens",
                        json!("rate_limit_exceeded"),
                        format!(
                            "Rate limit reached for model `{model}` in organization `org_{}` service tier `on_demand` \
                             on tokens per minute (TPM): Limit {limit}, Used {used}, Requested {requested}. Please try \
                             again in {:.3}s. Need more tokens? Upgrade to Dev Tier today at \
                             https://console.groq.com/settings/billing",
                            &org_tag(rng)[..20],
                            rng.uniform(0.2, 9.0)
                        ),
                    )
                }
                Failure::ServerError => (500, "internal_server_error", Value::Null, "Internal Server Error".to_owned()),
                Failure::Overloaded => (
                    503,
                    "service_unavailable",
                    Value::Null,
                    "Service Unavailable: the model is currently over capacity, please try again later".to_owned(),
                ),
                Failure::BadRequest => (
                    400,
                    "invalid_request_error",
                    json!("context_length_exceeded"),
                    "Please reduce the length of the messages or completion.".to_owned(),
                ),
            };
            let body = openai_body(&message, ty, Value::Null, code);
            (status, ty.to_owned(), message, body)
        }
        (Api::OpenAi, f) => {
            let (status, ty, param, code, message) = match f {
                Failure::RateLimited if rng.chance(0.1) => (
                    429,
                    "insufficient_quota",
                    Value::Null,
                    json!("insufficient_quota"),
                    "You exceeded your current quota, please check your plan and billing details. For more \
                     information on this error, read the docs: \
                     https://platform.openai.com/docs/guides/error-codes/api-errors."
                        .to_owned(),
                ),
                Failure::RateLimited => {
                    let per_request = rng.chance(0.3);
                    let tag = org_tag(rng);
                    let message = if per_request {
                        format!(
                            "Rate limit reached for {model} in organization org-{tag} on requests per min (RPM): \
                             Limit 500, Used 500, Requested 1. Please try again in {}ms. Visit \
                             https://platform.openai.com/account/rate-limits to learn more.",
                            rng.int(20, 900)
                        )
                    } else {
                        let limit = *rng.pick(&[30_000, 200_000, 2_000_000, 10_000_000]);
                        let requested = rng.int(200, limit / 4);
                        let used = rng.int(limit - requested + 1, limit);
                        format!(
                            "Rate limit reached for {model} in organization org-{tag} on tokens per min (TPM): \
                             Limit {limit}, Used {used}, Requested {requested}. Please try again in {}ms. Visit \
                             https://platform.openai.com/account/rate-limits to learn more.",
                            rng.int(20, 2000)
                        )
                    };
                    (
                        429,
                        if per_request { "requests" } else { "tokens" },
                        Value::Null,
                        json!("rate_limit_exceeded"),
                        message,
                    )
                }
                Failure::ServerError => (
                    500,
                    "server_error",
                    Value::Null,
                    Value::Null,
                    "The server had an error while processing your request. Sorry about that!".to_owned(),
                ),
                Failure::Overloaded => (
                    503,
                    "server_error",
                    Value::Null,
                    Value::Null,
                    "The server is overloaded or not ready yet.".to_owned(),
                ),
                Failure::BadRequest if spec.max_output == 0 => {
                    let requested = oversize(rng, spec.context);
                    (
                        400,
                        "invalid_request_error",
                        Value::Null,
                        Value::Null,
                        format!(
                            "This model's maximum context length is {} tokens, however you requested {requested} \
                             tokens ({requested} in your prompt; 0 for the completion). Please reduce your prompt; or \
                             completion length.",
                            spec.context
                        ),
                    )
                }
                Failure::BadRequest => (
                    400,
                    "invalid_request_error",
                    json!("messages"),
                    json!("context_length_exceeded"),
                    format!(
                        "This model's maximum context length is {} tokens. However, your messages resulted in {} \
                         tokens. Please reduce the length of the messages.",
                        spec.context,
                        oversize(rng, spec.context)
                    ),
                ),
            };
            let body = openai_body(&message, ty, param, code);
            (status, ty.to_owned(), message, body)
        }
    };
    ProviderError {
        status,
        error_type: ty,
        message,
        body,
    }
}
