//! OTLP trace bodies, protobuf and OTLP/JSON: decode, then map every span (records and rows).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use loupe_ingest::otlp::{OtlpFormat, decode_traces, map_traces};

fuzz_target!(|data: &[u8]| {
    let ctx = common::ctx();
    for format in [OtlpFormat::Protobuf, OtlpFormat::Json] {
        if let Ok(req) = decode_traces(data, format)
            && let Ok(out) = map_traces(&req, &ctx)
        {
            // Every mapped span has a row; every record is an LLM span's.
            assert!(out.spans.len() >= out.records.len());
            let _ = loupe_model::records_to_batch(&out.records);
            let _ = loupe_model::spans_to_batch(&out.spans);
        }
    }
});
