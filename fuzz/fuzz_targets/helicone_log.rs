//! Helicone async-log bodies on every route.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use loupe_ingest::{HeliconeRoute, parse_helicone_log};

fuzz_target!(|data: &[u8]| {
    let ctx = common::ctx();
    for route in HeliconeRoute::ALL {
        if let Ok(r) = parse_helicone_log(data, route, &ctx) {
            let _ = loupe_model::records_to_batch(std::slice::from_ref(&r));
        }
    }
});
