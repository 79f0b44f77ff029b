//! Property tests: tenant scoping holds for any query, and no query text makes the planner panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, LazyLock};

use datafusion::prelude::SessionContext;
use loupe_hql_plan::compile;
use loupe_model::{RequestRecord, records_to_batch};
use proptest::prelude::*;

struct Fixture {
    rt: tokio::runtime::Runtime,
    /// Both orgs.
    both: common::TestCatalog,
    /// org_a's rows only.
    own: common::TestCatalog,
    /// Empty table (for the no-panic test).
    empty: common::TestCatalog,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let records: Vec<RequestRecord> = common::dataset().into_iter().step_by(4).collect();
    let own: Vec<RequestRecord> = records
        .iter()
        .filter(|r| r.org_id == common::ORG)
        .cloned()
        .collect();
    assert!(own.len() > 100 && own.len() < records.len());
    let table = |rs: &[RequestRecord]| common::memtable(vec![records_to_batch(rs).unwrap()]);
    Fixture {
        rt: tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
        both: common::catalog_of(table(&records)),
        own: common::catalog_of(table(&own)),
        empty: common::empty_catalog(),
    }
});

/// Rows as sorted text lines, or the error code.
fn run(catalog: &common::TestCatalog, hql: &str) -> Result<(String, Vec<String>), String> {
    let plan = compile(hql, catalog, &common::opts()).map_err(|e| e.code.to_string())?;
    let schema = Arc::new(plan.schema().as_arrow().clone());
    let ctx = SessionContext::new();
    let batches = FIXTURE
        .rt
        .block_on(common::execute(&ctx, plan))
        .map_err(|e| format!("execution: {e}"))?;
    let (header, mut rows) = common::format_rows(&batches, &schema);
    rows.sort();
    Ok((header, rows))
}

fn predicate() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(r#"org_id == "org_b""#.to_string()),
        Just(r#"org_id != "org_a""#.to_string()),
        Just(r#"org_id == "org_a""#.to_string()),
        Just(r#"org_id =~ "ORG_B""#.to_string()),
        Just(r#"org_id in ("org_a", "org_b")"#.to_string()),
        Just(r#"org_id !in ("org_a")"#.to_string()),
        Just(r#"org_id contains "b""#.to_string()),
        Just(r#"org_id startswith "org""#.to_string()),
        Just(r#"org_id matches regex ".*""#.to_string()),
        Just("true".to_string()),
        Just("status >= 400".to_string()),
        Just("latency_ms > 1000".to_string()),
        Just(r#"model contains "gpt""#.to_string()),
        Just(r#"isnotempty(org_id)"#.to_string()),
        Just("cost_usd > 0.001".to_string()),
        Just("ttft_ms is null".to_string()),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

fn stage() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => predicate().prop_map(|p| format!("where {p}")),
        1 => Just("project-away org_id".to_string()),
        1 => Just("project-rename o = org_id".to_string()),
        1 => Just(r#"extend org_id = "org_b""#.to_string()),
        1 => Just(r#"extend tenant = strcat(org_id, "!")"#.to_string()),
        1 => Just("sort by request_id asc | take 25".to_string()),
        1 => Just("top 10 by latency_ms desc, request_id asc".to_string()),
    ]
}

fn tail() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("| count".to_string()),
        Just(
            "| summarize n = count(), s = sum(latency_ms), c = sum(cost_usd), u = dcount(user_id)"
                .to_string()
        ),
        Just("| summarize n = count(), c = sum(cost_usd) by model".to_string()),
        Just("| distinct model".to_string()),
        Just("| project request_id, model, latency_ms".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever the query says, its result over both orgs' rows equals its result over org_a's
    /// rows alone: no row of org_b is returned and every aggregate covers org_a only.
    #[test]
    fn tenant_scoping(stages in prop::collection::vec(stage(), 0..4), tail in tail()) {
        let mut hql = "requests".to_string();
        for s in &stages {
            hql.push_str(" | ");
            hql.push_str(s);
        }
        hql.push(' ');
        hql.push_str(&tail);
        let both = run(&FIXTURE.both, &hql);
        let own = run(&FIXTURE.own, &hql);
        prop_assert_eq!(&both, &own, "{}", hql);
        // And an org_id column, where the query did not overwrite it, is only ever org_a.
        if let Ok((header, rows)) = &both {
            let cols: Vec<&str> = header.split('\t').collect();
            let overwritten = stages.iter().any(|s| s.contains("extend org_id"));
            if let Some(i) = cols.iter().position(|c| *c == "org_id" || *c == "o")
                && !overwritten
            {
                for r in rows {
                    prop_assert_eq!(r.split('\t').nth(i), Some(common::ORG), "{}", hql);
                }
            }
            if let Some(i) = cols.iter().position(|c| *c == "tenant")
                && !overwritten
            {
                for r in rows {
                    prop_assert_eq!(r.split('\t').nth(i), Some("org_a!"), "{}", hql);
                }
            }
        }
    }
}

/// Valid queries to mutate.
static CORPUS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut v: Vec<String> = common::files("plan", "hql")
        .into_iter()
        .chain(common::files("plan_errors", "hql"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    v.push(r#"requests | where cost_usd > 0.5 and day == datetime(2025-01-01) | extend x = iff(status > 1, 1.5, 2) | top 3 by x"#.into());
    v
});

const TOKENS: &[&str] = &[
    " ",
    "|",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "..",
    "=",
    "==",
    "!=",
    "=~",
    "<",
    ">",
    "+",
    "-",
    "*",
    "/",
    "%",
    "\"",
    "'",
    "`",
    "@\"x\"",
    "1",
    "0",
    "-1",
    "1.5",
    "1e308",
    "1d",
    "0s",
    "-1h",
    "null",
    "true",
    "and",
    "or",
    "not",
    "in",
    "in~",
    "!in",
    "between",
    "is",
    "by",
    "asc",
    "desc",
    "nulls",
    "first",
    "contains",
    "!contains_cs",
    "matches regex",
    "where",
    "summarize",
    "extend",
    "project",
    "project-away",
    "project-rename",
    "sort",
    "top",
    "take",
    "distinct",
    "count",
    "count()",
    "sum(",
    "avg(",
    "percentile(",
    "p99(",
    "bin(",
    "ago(",
    "now()",
    "iff(",
    "case(",
    "datetime(2025-01-01)",
    "model",
    "status",
    "cost_usd",
    "created_at",
    "day",
    "properties",
    "properties.x",
    "properties[\"a b\"]",
    "latency_ms",
    "ttft_ms",
    "org_id",
    "é",
    "\n",
    "round(",
    "substring(",
    "strcat(",
    "coalesce(",
    "todouble(",
    "tolong(",
    "datetime_diff(",
    "\"second\"",
    "floor(",
    "max_of(",
];

fn mutate(src: &str, ops: &[(u8, usize, usize)]) -> String {
    let mut s: Vec<char> = src.chars().collect();
    for &(kind, a, b) in ops {
        let n = s.len().max(1);
        let (i, j) = (a % n, b % n);
        let (lo, hi) = (i.min(j), i.max(j));
        match kind % 5 {
            0 => {
                if hi <= s.len() {
                    s.drain(lo..hi);
                }
            }
            1 => {
                let t: Vec<char> = TOKENS[b % TOKENS.len()].chars().collect();
                let at = lo.min(s.len());
                s.splice(at..at, t);
            }
            2 => {
                if lo < s.len() {
                    let t: Vec<char> = TOKENS[b % TOKENS.len()].chars().collect();
                    s.splice(lo..lo + 1, t);
                }
            }
            3 => {
                if hi <= s.len() {
                    let dup: Vec<char> = s[lo..hi].to_vec();
                    s.splice(hi..hi, dup);
                }
            }
            _ => s.truncate(hi),
        }
    }
    s.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Mutated queries never panic the planner, errors point inside the text, and what plans
    /// also runs (over an empty table).
    #[test]
    fn mutated_text_never_panics(
        pick in 0usize..1000,
        ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..6),
    ) {
        let src = mutate(&CORPUS[pick % CORPUS.len()], &ops);
        match compile(&src, &FIXTURE.empty, &common::opts()) {
            Err(e) => {
                prop_assert!(e.span.start <= e.span.end && e.span.end <= src.len(), "{src:?}: {e:?}");
                let _ = e.render(&src);
            }
            Ok(plan) => {
                let ctx = SessionContext::new();
                let r = FIXTURE.rt.block_on(common::execute(&ctx, plan));
                prop_assert!(r.is_ok(), "{src:?} planned but failed: {:?}", r.err());
            }
        }
    }

    /// Token soup never panics either.
    #[test]
    fn token_soup_never_panics(toks in prop::collection::vec(0usize..TOKENS.len(), 0..30)) {
        let mut src = "requests |".to_string();
        for t in toks {
            src.push(' ');
            src.push_str(TOKENS[t]);
        }
        if let Ok(plan) = compile(&src, &FIXTURE.empty, &common::opts()) {
            let ctx = SessionContext::new();
            let r = FIXTURE.rt.block_on(common::execute(&ctx, plan));
            prop_assert!(r.is_ok(), "{src:?} planned but failed: {:?}", r.err());
        }
    }
}
