//! Every catalog model resolves (or deliberately does not) in the bundled price table.

use loupe_model::PriceTable;
use loupe_testkit::models;

#[test]
fn priced_models_hit_the_bundled_table() {
    let table = PriceTable::bundled().expect("bundled table");
    assert!(models().len() >= 15);
    let mut unpriced = 0;
    for m in models() {
        let hit = table.lookup(m.provider, m.model);
        if m.priced {
            let (key, price) =
                hit.unwrap_or_else(|| panic!("{}/{} is not in the table", m.provider, m.model));
            assert!(price.has_token_price(), "{key}");
            println!("{:10} {:30} -> {key}", m.provider, m.model);
        } else {
            unpriced += 1;
            assert!(
                hit.is_none(),
                "{}/{} was meant to be absent",
                m.provider,
                m.model
            );
            println!("{:10} {:30} -> (absent)", m.provider, m.model);
        }
    }
    assert!(unpriced >= 1);
    let providers: std::collections::HashSet<_> = models().iter().map(|m| m.provider).collect();
    for p in [
        "openai",
        "anthropic",
        "gemini",
        "groq",
        "mistral",
        "deepseek",
    ] {
        assert!(providers.contains(p), "{p}");
    }
}
