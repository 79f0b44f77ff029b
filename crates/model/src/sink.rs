//! [`EventSink`]: where producers (ingest, gateway, OTLP) hand finished records.
//!
//! The contract is durability: when `append` returns `Ok`, every accepted record survives a crash
//! (in the default fsync mode). Producers know nothing of WAL or Parquet.

use futures::future::BoxFuture;

use crate::{ErrorKind, RequestRecord};

/// What an append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AppendAck {
    /// Records newly stored (durable when the call returned).
    pub accepted: usize,
    /// Records skipped because a record with the same `request_id` was already stored.
    pub duplicates: usize,
}

/// Why an append failed. Nothing of a failed append was acknowledged.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    /// Backpressure: e.g. the write-ahead log is over its disk budget. Retry after the hint.
    #[error("storage is not accepting writes right now: {reason}")]
    Unavailable {
        reason: String,
        retry_after_secs: u64,
    },
    /// The sink is shutting down.
    #[error("storage is shutting down")]
    Closed,
    /// The records could not be stored (I/O error, encoding bug).
    #[error("storage failed: {0}")]
    Failed(String),
}

impl SinkError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SinkError::Unavailable { .. } | SinkError::Closed => ErrorKind::Unavailable,
            SinkError::Failed(_) => ErrorKind::Internal,
        }
    }
}

/// A durable destination for request records.
pub trait EventSink: Send + Sync + 'static {
    /// Store `records`; resolves once they are durable. Records whose `request_id` was already
    /// stored are skipped and counted as duplicates.
    fn append(&self, records: Vec<RequestRecord>) -> BoxFuture<'_, Result<AppendAck, SinkError>>;

    /// Store records that are each a new event by construction (the gateway's own calls: every
    /// proxied call really happened and is recorded, even when a client reuses a
    /// `Helicone-Request-Id`). They are not checked against, nor added to, the dedup index, so
    /// that index does not grow with gateway traffic. Defaults to [`EventSink::append`].
    fn append_unique(
        &self,
        records: Vec<RequestRecord>,
    ) -> BoxFuture<'_, Result<AppendAck, SinkError>> {
        self.append(records)
    }
}

/// A row type that a table stores: its identity for deduplication (unique per org) and its
/// Arrow form. Implemented by [`RequestRecord`] (`requests`) and [`crate::SpanRecord`]
/// (`spans`).
pub trait TableRow: Send + Sync + Sized + 'static {
    /// The table the rows belong to.
    const TABLE: &'static str;
    fn org_id(&self) -> &str;
    /// Unique per org; a second row with the same id is a duplicate.
    fn row_id(&self) -> uuid::Uuid;
    fn created_at(&self) -> chrono::DateTime<chrono::Utc>;
    fn to_batch(rows: &[Self]) -> Result<arrow::array::RecordBatch, crate::ModelError>;
}

impl TableRow for RequestRecord {
    const TABLE: &'static str = "requests";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn row_id(&self) -> uuid::Uuid {
        self.request_id
    }
    fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.created_at
    }
    fn to_batch(rows: &[Self]) -> Result<arrow::array::RecordBatch, crate::ModelError> {
        crate::records_to_batch(rows)
    }
}

impl TableRow for crate::SpanRecord {
    const TABLE: &'static str = "spans";
    fn org_id(&self) -> &str {
        &self.org_id
    }
    fn row_id(&self) -> uuid::Uuid {
        self.span_uid
    }
    fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.created_at
    }
    fn to_batch(rows: &[Self]) -> Result<arrow::array::RecordBatch, crate::ModelError> {
        crate::spans_to_batch(rows)
    }
}
