//! Shared by the fuzz targets: one ingest context (the bundled prices load once).

use std::sync::{Arc, OnceLock};

use loupe_ingest::IngestContext;
use loupe_model::PriceTable;

pub fn ctx() -> IngestContext {
    static CTX: OnceLock<IngestContext> = OnceLock::new();
    CTX.get_or_init(|| {
        let prices = PriceTable::bundled().unwrap_or_else(|e| panic!("bundled prices: {e}"));
        IngestContext::new("org_fuzz", Arc::new(prices))
    })
    .clone()
}
