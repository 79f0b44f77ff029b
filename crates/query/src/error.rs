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
}

impl QueryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::DataFusion(datafusion::error::DataFusionError::ResourcesExhausted(_)) => {
                ErrorKind::Unprocessable
            }
            _ => ErrorKind::Internal,
        }
    }
}
