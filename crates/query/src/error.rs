//! Errors of the query crate.

use loupe_model::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("{}", .0.message)]
    Hql(loupe_hql_plan::HqlError),
    #[error("the query ran longer than {}s (query.timeout_secs): narrow the time range, add filters or summarize", .0.as_secs())]
    Timeout(std::time::Duration),
    #[error(
        "the result has more than {0} rows (query.max_rows): add `take N`, a narrower `where`, or `summarize`"
    )]
    TooManyRows(usize),
    /// A parameter of an analytics call is not valid (the message names it).
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    NotFound(String),
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::DataFusion(datafusion::error::DataFusionError::ResourcesExhausted(_)) => {
                ErrorKind::Unprocessable
            }
            QueryError::Hql(e) => e.kind(),
            QueryError::Timeout(_) | QueryError::TooManyRows(_) => ErrorKind::Unprocessable,
            QueryError::InvalidInput(_) => ErrorKind::InvalidInput,
            QueryError::NotFound(_) => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        }
    }
}

impl QueryError {
    /// Stable code for JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Hql(e) => e.code,
            QueryError::Timeout(_) => "hql.timeout",
            QueryError::TooManyRows(_) => "hql.too_many_rows",
            QueryError::DataFusion(datafusion::error::DataFusionError::ResourcesExhausted(_)) => {
                "hql.out_of_memory"
            }
            _ => self.kind().code(),
        }
    }
}
