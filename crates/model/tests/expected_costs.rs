//! The cost test vectors of `testdata/providers/expected_costs.json` (computed from the bundled
//! LiteLLM table with exact decimal arithmetic) are reproduced exactly, with the usage read from
//! the real fixture files through `Usage` (not from the numbers in the vectors).

use std::str::FromStr;

use loupe_model::{PriceTable, Usage, UsageShape};
use rust_decimal::Decimal;
use serde_json::Value;

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../testdata/providers/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The model a fixture names: the response's `model` (OpenAI, Anthropic), `modelVersion`
/// (Gemini), from the body or from the stream's first event that has one.
fn response_model(body: &str, is_sse: bool) -> Option<String> {
    let docs: Vec<Value> = if is_sse {
        body.lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    } else {
        vec![serde_json::from_str(body).ok()?]
    };
    docs.iter().find_map(|v| {
        v.get("model")
            .or_else(|| v.get("message").and_then(|m| m.get("model")))
            .or_else(|| v.get("modelVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

fn count(vector: &Value, field: &str) -> i64 {
    vector
        .get(field)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("vector field {field}"))
}

#[test]
fn expected_costs_reproduce_exactly() {
    let table = PriceTable::bundled().expect("bundled table");
    let vectors: Value =
        serde_json::from_str(&fixture("expected_costs.json")).expect("vectors are JSON");
    let vectors = vectors.as_object().expect("vectors object");
    let mut checked = 0;
    for (name, vector) in vectors {
        if name.starts_with('_') {
            continue;
        }
        let body = fixture(name);
        let is_sse = name.ends_with(".sse");
        let (usage, shape) = if is_sse {
            Usage::from_sse(&body)
        } else {
            Usage::from_response_json(&serde_json::from_str(&body).expect("fixture JSON"))
        }
        .unwrap_or_else(|| panic!("{name}: no usage"));

        let provider = match shape {
            UsageShape::OpenAi => "openai",
            UsageShape::Anthropic => "anthropic",
            UsageShape::Gemini => "gemini",
            UsageShape::Generic => panic!("{name}: unexpected generic usage"),
        };
        assert!(name.starts_with(provider), "{name}: shape {shape:?}");
        let model = response_model(&body, is_sse).unwrap_or_else(|| panic!("{name}: no model"));

        // The token breakdown in the vector matches what Usage computed from the fixture.
        let uncached = usage.prompt_tokens
            - usage.cache_read_tokens
            - usage.cache_write_tokens
            - usage.cache_write_1h_tokens;
        match shape {
            UsageShape::Anthropic => {
                assert_eq!(uncached, count(vector, "input"), "{name}: input");
                assert_eq!(
                    usage.cache_write_tokens,
                    count(vector, "cache_creation_5m"),
                    "{name}: cache write"
                );
                assert_eq!(usage.completion_tokens, count(vector, "output"), "{name}");
            }
            UsageShape::Gemini => {
                assert_eq!(uncached, count(vector, "uncached_input"), "{name}: input");
                assert_eq!(usage.reasoning_tokens, count(vector, "thoughts"), "{name}");
                assert_eq!(
                    usage.completion_tokens - usage.reasoning_tokens,
                    count(vector, "output"),
                    "{name}: output"
                );
            }
            _ => {
                assert_eq!(uncached, count(vector, "uncached_input"), "{name}: input");
                assert_eq!(usage.completion_tokens, count(vector, "output"), "{name}");
            }
        }
        assert_eq!(
            usage.cache_read_tokens,
            count(vector, "cache_read"),
            "{name}: cache read"
        );

        let expected_key = vector
            .get("price_key")
            .and_then(Value::as_str)
            .expect("price_key");
        let expected_usd = vector
            .get("cost_usd")
            .and_then(Value::as_str)
            .map(|s| Decimal::from_str(s).expect("cost_usd decimal"))
            .expect("cost_usd");

        let mut models = vec![model];
        if provider == "gemini" {
            // The request names the model in its URL path: `models/gemini-2.5-flash:generateContent`.
            models.push("gemini-2.5-flash".to_owned());
            models.push("models/gemini-2.5-flash".to_owned());
        }
        for model in models {
            let cost = table.cost(provider, &model, &usage);
            assert_eq!(
                cost.price_key.as_deref(),
                Some(expected_key),
                "{name}: price key for {provider}/{model}"
            );
            let usd = cost
                .usd
                .unwrap_or_else(|| panic!("{name}: no cost for {model}"));
            assert_eq!(
                usd.normalize(),
                expected_usd.normalize(),
                "{name}: cost for {model}"
            );
            // Exactly equal, not just numerically: the normalised decimal prints the same.
            assert_eq!(
                usd.normalize().to_string(),
                expected_usd.normalize().to_string()
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 6, "every vector was checked");
}

#[test]
fn fixture_streams_and_bodies_price_alike_across_line_endings() {
    let table = PriceTable::bundled().expect("bundled table");
    for (name, provider, model) in [
        ("openai_chat_stream.sse", "openai", "gpt-4o-mini-2024-07-18"),
        (
            "anthropic_stream.sse",
            "anthropic",
            "claude-sonnet-4-5-20250929",
        ),
        ("gemini_stream.sse", "gemini", "gemini-2.5-flash"),
    ] {
        let body = fixture(name);
        let normalised = body.replace("\r\n", "\n").replace('\r', "\n");
        let base = Usage::from_sse(&normalised).expect("usage").0;
        for eol in ["\r\n", "\r"] {
            let converted = normalised.replace('\n', eol);
            let (u, _) = Usage::from_sse(&converted).expect("usage");
            assert_eq!(u, base, "{name} with {eol:?}");
            assert_eq!(
                table.cost(provider, model, &u),
                table.cost(provider, model, &base)
            );
        }
    }
}
