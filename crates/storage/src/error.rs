//! Errors of the storage crate.

use loupe_model::{ErrorKind, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("delta lake: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("record: {0}")]
    Model(#[from] loupe_model::ModelError),
    #[error("write-ahead log: {0}")]
    Wal(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error(
        "the write-ahead log holds {used} bytes, over its budget of {budget} bytes \
         (storage.wal.disk_budget_bytes): the object store is not keeping up or is unavailable"
    )]
    OverBudget { used: u64, budget: u64 },
    #[error("storage is shutting down")]
    Closed,
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::OverBudget { .. } | StorageError::Closed => ErrorKind::Unavailable,
            StorageError::Config(_) => ErrorKind::InvalidInput,
            StorageError::ObjectStore(_) => ErrorKind::Upstream,
            _ => ErrorKind::Internal,
        }
    }
}

impl From<StorageError> for SinkError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::OverBudget { .. } => SinkError::Unavailable {
                reason: e.to_string(),
                retry_after_secs: 5,
            },
            StorageError::Closed => SinkError::Closed,
            other => SinkError::Failed(other.to_string()),
        }
    }
}
