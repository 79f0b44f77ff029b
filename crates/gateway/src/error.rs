//! Errors of the gateway itself (not the provider's, which pass through unchanged), answered in
//! the shape of the API the client called.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use loupe_model::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    /// The provider could not be reached or broke the connection.
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Config(String),
    /// A Loupe rate limit refused the call (429).
    #[error("{0}")]
    RateLimited(String),
    /// A Loupe dependency (rate-limit store) failed and the config says fail closed (503).
    #[error("{0}")]
    Unavailable(String),
}

impl GatewayError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::BadRequest(_) => ErrorKind::InvalidInput,
            GatewayError::Unauthorized(_) => ErrorKind::Unauthenticated,
            GatewayError::NotFound(_) => ErrorKind::NotFound,
            GatewayError::TooLarge(_) => ErrorKind::PayloadTooLarge,
            GatewayError::Upstream(_) => ErrorKind::Upstream,
            GatewayError::Timeout(_) => ErrorKind::Timeout,
            GatewayError::Config(_) => ErrorKind::Internal,
            GatewayError::RateLimited(_) => ErrorKind::RateLimited,
            GatewayError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn openai_type(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) | GatewayError::TooLarge(_) => "invalid_request_error",
            GatewayError::Unauthorized(_) => "authentication_error",
            GatewayError::NotFound(_) => "not_found_error",
            GatewayError::Upstream(_) | GatewayError::Timeout(_) => "api_error",
            GatewayError::Config(_) => "server_error",
            GatewayError::RateLimited(_) => "rate_limit_error",
            GatewayError::Unavailable(_) => "api_error",
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}` (OpenAI) or
    /// `{"type": "error", "error": {"type", "message"}}` (Anthropic).
    pub fn into_response_for(self, anthropic: bool) -> Response {
        let status = self.status();
        let ty = self.openai_type();
        let body = if anthropic {
            serde_json::json!({"type": "error", "error": {"type": ty, "message": self.to_string()}})
        } else {
            serde_json::json!({"error": {"message": self.to_string(), "type": ty, "param": null, "code": format!("loupe.{}", self.kind().code())}})
        };
        (status, axum::Json(body)).into_response()
    }
}
