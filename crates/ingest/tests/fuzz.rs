//! Neither parser panics, whatever the bytes.

mod common;

use common::ctx;
use loupe_ingest::{HeliconeRoute, parse_helicone_log, parse_native};
use proptest::prelude::*;

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/json"),
    Some("application/x-ndjson"),
    Some("text/plain"),
];

/// JSON-looking text: fragments of valid records mixed with punctuation, so the fuzzer gets past
/// the syntax check often.
fn jsonish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\n",
        "\r\n",
        " ",
        "null",
        "true",
        "-1",
        "0",
        "1e400",
        "18446744073709551616",
        "3.5",
        "\"\"",
        "\"x\"",
        "\"model\"",
        "\"created_at\"",
        "\"2025-01-01T00:00:00Z\"",
        "\"latency_ms\"",
        "\"completed_at\"",
        "\"properties\"",
        "\"cost_usd\"",
        "\"status\"",
        "\"ttft_ms\"",
        "\"request_id\"",
        "\"providerRequest\"",
        "\"providerResponse\"",
        "\"timing\"",
        "\"startTime\"",
        "\"endTime\"",
        "\"seconds\"",
        "\"milliseconds\"",
        "\"meta\"",
        "\"url\"",
        "\"json\"",
        "\"headers\"",
        "\"textBody\"",
        "\"Helicone-Property-\"",
        "\"Helicone-Request-Id\"",
        "\"timeToFirstToken\"",
        "1735689600",
        "\"data: {}\\n\\n\"",
        "\u{feff}",
        "\u{e9}",
    ]);
    prop::collection::vec(pieces, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), ct in 0usize..4) {
        let c = ctx();
        let _ = parse_native(&bytes, CONTENT_TYPES[ct], &c);
        for route in HeliconeRoute::ALL {
            let _ = parse_helicone_log(&bytes, route, &c);
        }
    }

    #[test]
    fn jsonish_text_never_panics(text in jsonish(), ct in 0usize..4) {
        let c = ctx();
        if let Err(e) = parse_native(text.as_bytes(), CONTENT_TYPES[ct], &c) {
            prop_assert!(!e.problems().is_empty());
            prop_assert!(e.problems().len() <= loupe_ingest::MAX_PROBLEMS);
        }
        let _ = parse_helicone_log(text.as_bytes(), HeliconeRoute::Custom, &c);
    }

    #[test]
    fn arbitrary_field_values_never_panic(
        created in prop_oneof![any::<i64>().prop_map(serde_json::Value::from), any::<f64>().prop_map(serde_json::Value::from), ".*".prop_map(serde_json::Value::from)],
        latency in any::<i64>(),
        ttft in any::<i64>(),
        tokens in prop::array::uniform4(any::<i64>()),
        secs in any::<f64>(),
        millis in any::<f64>(),
        tft in any::<f64>(),
    ) {
        let c = ctx();
        let rec = serde_json::json!({
            "created_at": created, "model": "m", "latency_ms": latency, "ttft_ms": ttft,
            "prompt_tokens": tokens[0], "completion_tokens": tokens[1],
            "cache_read_tokens": tokens[2], "reasoning_tokens": tokens[3],
        });
        let _ = parse_native(rec.to_string().as_bytes(), None, &c);
        let log = serde_json::json!({
            "providerRequest": {"url": "u", "json": {}, "meta": {}},
            "providerResponse": {"status": 200, "headers": {}},
            "timing": {"startTime": {"seconds": secs, "milliseconds": millis},
                       "endTime": {"seconds": 1735689601, "milliseconds": 0}, "timeToFirstToken": tft}
        });
        let _ = parse_helicone_log(log.to_string().as_bytes(), HeliconeRoute::Custom, &c);
    }
}
