//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use loupe_ingest::{IngestContext, IngestError};
use loupe_model::{PriceTable, RequestRecord};
use serde_json::Value;

/// The fixed "now" of every test: 2025-06-01T00:00:00Z.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

/// A context for org `org_test` with the bundled price table and default limits.
pub fn ctx() -> IngestContext {
    static PRICES: OnceLock<Arc<PriceTable>> = OnceLock::new();
    let prices =
        PRICES.get_or_init(|| Arc::new(PriceTable::bundled().expect("bundled price table")));
    IngestContext {
        now: now(),
        ..IngestContext::new("org_test", Arc::clone(prices))
    }
}

/// The error as the server returns it (`{"error": …}`).
pub fn err_json(e: &IngestError) -> Value {
    serde_json::json!({ "error": e })
}

/// A record as JSON with its `request_id` replaced by a placeholder (for snapshots), after
/// checking it is a random (v4) UUID.
pub fn record_json_random_id(r: &RequestRecord) -> Value {
    assert_eq!(
        r.request_id.get_version_num(),
        4,
        "expected a generated UUIDv4"
    );
    let mut v = serde_json::to_value(r).expect("record serialises");
    v["request_id"] = Value::String("[generated uuid v4]".into());
    v
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/providers")
        .join(name)
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The expected cost of a fixture from `expected_costs.json`.
pub fn expected_cost(name: &str) -> rust_decimal::Decimal {
    let all = fixture_json("expected_costs.json");
    let s = all[name]["cost_usd"]
        .as_str()
        .unwrap_or_else(|| panic!("no expected cost for {name}"));
    s.parse().expect("decimal")
}
