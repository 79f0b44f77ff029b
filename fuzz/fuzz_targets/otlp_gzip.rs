//! `Content-Encoding` handling: gzip and identity bodies never exceed the limit when inflated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loupe_ingest::otlp::decode_content_encoding;

const LIMIT: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    for enc in [Some("gzip"), None, Some("identity"), Some("br")] {
        if let Ok(body) = decode_content_encoding(data, enc, LIMIT) {
            assert!(body.len() <= LIMIT, "inflated past the limit");
        }
    }
});
