//! The parser never panics, whatever the input, and what it accepts prints back to HQL that
//! parses to the same tree.

use loupe_hql_syntax::{parse, parse_expr, pretty};
use proptest::prelude::*;

/// Fragments of valid queries and the characters that trip parsers up, so the fuzzer gets deep.
fn hqlish() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "requests",
        " | ",
        "|",
        "where ",
        "summarize ",
        " by ",
        "extend ",
        "project ",
        "project-away ",
        "project-rename ",
        "sort by ",
        "order by ",
        "take ",
        "limit ",
        "top ",
        "distinct ",
        "count",
        " asc",
        " desc",
        " nulls first",
        " nulls last",
        "x",
        "model",
        "cost_usd",
        "properties",
        ".",
        ".Env",
        "[\"a b\"]",
        "`q`",
        "`",
        "(",
        ")",
        "[",
        "]",
        ",",
        " = ",
        "==",
        "!=",
        "=~",
        "<",
        ">=",
        " and ",
        " or ",
        "not ",
        " in ",
        "!in ",
        " in~ ",
        " between ",
        "..",
        " is ",
        "null",
        " is not null",
        " contains ",
        " !contains_cs ",
        " startswith ",
        " matches regex ",
        "+",
        "-",
        "*",
        "/",
        "%",
        "0",
        "42",
        "3.14",
        "1e-3",
        "1e400",
        "9223372036854775808",
        "7d",
        "1.5h",
        "250ms",
        "1mo",
        "0.5us",
        "\"s\"",
        "'s'",
        "\"",
        "'",
        "@\"r\"",
        "\"\\u{1F600}\"",
        "\"\\q\"",
        "datetime(2026-11-01)",
        "datetime(",
        "count()",
        "sum(",
        "iff(",
        "case(",
        "ago(7d)",
        "true",
        "false",
        "//c\n",
        "\n",
        "\t",
        " ",
        "é",
        "&&",
        ";",
        "#",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat())
}

/// Valid queries with one edit: a character deleted, duplicated or replaced.
fn mutated() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![
        "requests\n| where created_at > ago(7d) and properties.Environment == \"production\" and status >= 400\n| summarize requests = count(), cost = sum(cost_usd), p95 = percentile(latency_ms, 95)\n    by model, day = bin(created_at, 1d)\n| sort by cost desc\n| take 20",
        "requests | where model in (\"a\", 'b') and x between (1 .. 2) | top 5 by x asc nulls first",
        "requests | extend s = case(a < 1, \"x\", iff(b, c, d)) | project-away a, `b c` | count",
        "requests | where not (a matches regex @\"\\d+\") or b !startswith_cs 'x' | distinct a",
    ]);
    (base, any::<prop::sample::Index>(), any::<char>(), 0..3u8).prop_map(|(base, idx, c, kind)| {
        let chars: Vec<char> = base.chars().collect();
        let i = idx.index(chars.len());
        let mut out: Vec<char> = chars.clone();
        match kind {
            0 => {
                out.remove(i);
            }
            1 => out.insert(i, chars[i]),
            _ => out[i] = c,
        }
        out.into_iter().collect()
    })
}

fn check(src: &str) {
    match parse(src) {
        Ok(q) => {
            let canonical = pretty::to_hql(&q);
            let again = parse(&canonical).unwrap_or_else(|e| {
                panic!("canonical form of {src:?} fails: {}", e.render(&canonical))
            });
            assert_eq!(
                pretty::dump(&again, false),
                pretty::dump(&q, false),
                "{src:?}"
            );
        }
        Err(e) => {
            assert!(
                e.span.start <= e.span.end && e.span.end <= src.len(),
                "{src:?}: {e:?}"
            );
            assert!(src.is_char_boundary(e.span.start) && src.is_char_boundary(e.span.end));
            let _ = e.render(src);
        }
    }
    let _ = parse_expr(src);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_strings_never_panic(src in ".{0,200}") {
        check(&src);
    }

    #[test]
    fn query_fragments_never_panic(src in hqlish()) {
        check(&src);
    }

    #[test]
    fn mutated_queries_never_panic(src in mutated()) {
        check(&src);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash(depth in 65usize..5_000, open in "[(\\[]") {
        let src = format!("requests | where {}x", open.repeat(depth));
        prop_assert!(parse(&src).is_err());
    }
}
