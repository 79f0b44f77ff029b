//! OTLP log bodies, protobuf and OTLP/JSON: decode, then read the GenAI event logs.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use loupe_ingest::otlp::{OtlpFormat, decode_logs, map_logs};

fuzz_target!(|data: &[u8]| {
    let ctx = common::ctx();
    for format in [OtlpFormat::Protobuf, OtlpFormat::Json] {
        if let Ok(req) = decode_logs(data, format) {
            let _ = map_logs(&req, &ctx);
        }
    }
});
