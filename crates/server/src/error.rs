//! The one place where error kinds become HTTP statuses and JSON bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loupe_model::{ErrorKind, SinkError};
use serde_json::{Value, json};

/// An error answered to an HTTP client: `{"error":{"code","message",...}}`.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    /// A more specific code than the kind's (e.g. `hql.unknown_column`).
    pub code: Option<&'static str>,
    pub message: String,
    /// Extra fields merged into the `error` object (e.g. `problems`).
    pub details: Option<Value>,
    pub retry_after_secs: Option<u64>,
}

pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            code: None,
            message: message.into(),
            details: None,
            retry_after_secs: None,
        }
    }
}

impl From<SinkError> for ApiError {
    fn from(e: SinkError) -> Self {
        let retry = match &e {
            SinkError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            SinkError::Closed => Some(1),
            SinkError::Failed(_) => None,
        };
        ApiError {
            code: None,
            kind: e.kind(),
            message: e.to_string(),
            details: None,
            retry_after_secs: retry,
        }
    }
}

impl From<loupe_ingest::IngestError> for ApiError {
    fn from(e: loupe_ingest::IngestError) -> Self {
        let details = serde_json::to_value(&e).ok();
        ApiError {
            code: None,
            kind: e.kind(),
            message: e.to_string(),
            details,
            retry_after_secs: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.kind);
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), message = %self.message, "request failed");
        }
        let code = self.code.unwrap_or(self.kind.code());
        let mut err = json!({ "code": code, "message": self.message });
        if let (Some(Value::Object(extra)), Some(obj)) = (self.details, err.as_object_mut()) {
            for (k, v) in extra {
                obj.entry(k).or_insert(v);
            }
        }
        let mut resp = (status, axum::Json(json!({ "error": err }))).into_response();
        if let Some(s) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<loupe_query::QueryError> for ApiError {
    fn from(e: loupe_query::QueryError) -> Self {
        let details = match &e {
            loupe_query::QueryError::Hql(h) => serde_json::to_value(h).ok(),
            _ => None,
        };
        ApiError {
            kind: e.kind(),
            code: Some(e.code()),
            message: e.to_string(),
            details,
            retry_after_secs: None,
        }
    }
}

impl From<crate::keys::KeyError> for ApiError {
    fn from(e: crate::keys::KeyError) -> Self {
        use crate::keys::KeyError;
        let (kind, details) = match &e {
            KeyError::Invalid { field, .. } => {
                (ErrorKind::InvalidInput, Some(json!({ "field": field })))
            }
            KeyError::NotFound(_) => (ErrorKind::NotFound, None),
            KeyError::Forbidden(_) => (ErrorKind::Forbidden, None),
            KeyError::Storage(_) => (ErrorKind::Internal, None),
        };
        ApiError {
            kind,
            code: None,
            message: e.to_string(),
            details,
            retry_after_secs: None,
        }
    }
}
