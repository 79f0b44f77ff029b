//! Domain types shared by every Loupe crate: the request record and its Arrow schema, the model
//! price table and exact cost computation, provider usage extraction, the [`ErrorKind`] taxonomy
//! and the [`EventSink`] through which producers (ingest, gateway) hand records to storage.
//!
//! This crate must not depend on DataFusion, object_store, axum or any other Loupe crate: it is
//! the bottom of the dependency graph.

pub mod error;
pub mod price;
pub mod record;
pub mod schema;
pub mod sink;
pub mod span;
pub mod usage;

pub use error::{ErrorKind, ModelError};
pub use price::{Cost, ModelPrice, PriceTable};
pub use record::{Attempt, RequestRecord, Source, keep_upstream_header};
pub use schema::{records_to_batch, requests_schema};
pub use sink::{AppendAck, EventSink, SinkError, TableRow};
pub use span::{SpanRecord, spans_schema, spans_to_batch};
pub use usage::{Usage, UsageShape};
