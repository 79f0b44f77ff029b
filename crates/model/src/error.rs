//! The error taxonomy every crate maps into; `server` maps [`ErrorKind`] to HTTP once.

/// What kind of failure an error is, independent of the crate that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller sent something malformed or invalid (HTTP 400).
    InvalidInput,
    /// No or a wrong credential (HTTP 401).
    Unauthenticated,
    /// The credential is valid but not allowed to do this (HTTP 403).
    Forbidden,
    /// The thing asked for does not exist (HTTP 404).
    NotFound,
    /// The body is over a configured size limit (HTTP 413).
    PayloadTooLarge,
    /// The request is well-formed but cannot be processed (HTTP 422).
    Unprocessable,
    /// A limit (rate, quota, budget) was hit; retry later (HTTP 429).
    RateLimited,
    /// Loupe is temporarily unable to accept work (disk budget, backpressure) (HTTP 503).
    Unavailable,
    /// A dependency (object store, upstream provider) failed (HTTP 502).
    Upstream,
    /// Took longer than allowed (HTTP 504).
    Timeout,
    /// A bug or an unexpected environment failure (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// Stable machine-readable code, used in JSON error bodies.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Unprocessable => "unprocessable",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Upstream => "upstream_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Errors raised by this crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("price table: {0}")]
    PriceTable(String),
    #[error("record {field}: {reason}")]
    InvalidRecord { field: String, reason: String },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl ModelError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ModelError::PriceTable(_) => ErrorKind::InvalidInput,
            ModelError::InvalidRecord { .. } => ErrorKind::InvalidInput,
            ModelError::Arrow(_) => ErrorKind::Internal,
        }
    }
}
