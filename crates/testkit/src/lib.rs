//! Development-only test kit for Loupe: a deterministic generator of realistic synthetic LLM
//! request logs ([`Generator`], the `loupe-gen` binary and NDJSON output in the native ingest
//! format), and a mock LLM provider on loopback ([`mock_upstream`]) serving the recorded fixtures. Used by benches, fixture
//! datasets and tests; never shipped in the server. It depends only on `loupe-model` and small
//! crates, and must not depend on Loupe's server, storage or query engine (so those crates can
//! use it in their own tests).
//!
//! The data: about fifteen real models across OpenAI, Anthropic, Gemini, Groq, Mistral and
//! DeepSeek with skewed popularity (see [`models`]), two of them deliberately absent from the
//! bundled price table; log-normal token counts and latencies; provider-style errors (~3 %);
//! streaming, prompt caching, reasoning tokens, gateway cache hits, users, sessions, custom
//! properties and trace ids; timestamps with a daily cycle. Costs always come from
//! [`PriceTable::cost`](loupe_model::PriceTable::cost).
//!
//! ```
//! use std::sync::Arc;
//! use loupe_model::PriceTable;
//! use loupe_testkit::{GenOptions, Generator};
//!
//! let prices = Arc::new(PriceTable::bundled().expect("bundled table"));
//! let opts = GenOptions { count: 100, ..GenOptions::default() };
//! let records: Vec<_> = Generator::new(opts, prices).collect();
//! assert_eq!(records.len(), 100);
//! ```

mod bodies;
mod catalog;
mod errors;
mod generator;
mod loopback;
pub mod mock_upstream;
mod native;
mod rng;
mod timeline;

pub use catalog::{ModelKind, ModelSpec, models};
pub use generator::{GenOptions, Generator};
pub use loopback::{CollectSink, serve_loopback};
pub use native::{record_to_native_json, write_ndjson};
