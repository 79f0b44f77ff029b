//! `POST /v1/ingest` bodies (JSON object, array or NDJSON, by content type).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use loupe_ingest::parse_native;

fuzz_target!(|data: &[u8]| {
    let ctx = common::ctx();
    for ct in [None, Some("application/json"), Some("application/x-ndjson")] {
        if let Ok(records) = parse_native(data, ct, &ctx) {
            let _ = loupe_model::records_to_batch(&records);
        }
    }
});
