//! The public API's promises: the error JSON shape, caret rendering, limits, spans, defaults.

use loupe_hql_syntax::ast::{ExprKind, Literal, NullsOrder, OpKind, SortOrder};
use loupe_hql_syntax::{MAX_NESTING, MAX_QUERY_BYTES, codes, parse, parse_expr, pretty};

#[test]
fn error_json_has_the_documented_shape() {
    let src = "requests\n| summarise count()";
    let err = parse(src).expect_err("typo");
    let json = serde_json::to_value(&err).unwrap_or_default();
    assert_eq!(
        json,
        serde_json::json!({
            "code": "hql.unknown_operator",
            "message": "unknown operator 'summarise'",
            "line": 2,
            "column": 3,
            "span": [11, 20],
            "hint": "did you mean 'summarize'?"
        })
    );
    assert_eq!(
        err.to_string(),
        "unknown operator 'summarise' (line 2, column 3)"
    );
}

#[test]
fn render_underlines_the_span() {
    let src = "requests\n| summarise count()";
    let err = parse(src).expect_err("typo");
    assert_eq!(
        err.render(src),
        "error[hql.unknown_operator]: unknown operator 'summarise'\n \
         --> line 2, column 3\n  |\n2 | | summarise count()\n  |   ^^^^^^^^^\n  \
         = hint: did you mean 'summarize'?\n"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let src = "requests | where model == \"é\" and ü == 1";
    let err = parse(src).expect_err("non-ASCII name");
    assert_eq!(err.code, codes::UNEXPECTED_CHARACTER);
    assert_eq!(err.column, 35);
    assert_eq!(err.span.start, 35);
}

#[test]
fn limits() {
    let long = format!(
        "requests | where model == \"{}\"",
        "x".repeat(MAX_QUERY_BYTES)
    );
    assert_eq!(
        parse(&long).expect_err("too long").code,
        codes::QUERY_TOO_LONG
    );

    let nest = |n: usize| format!("requests | where {}1{} == 1", "(".repeat(n), ")".repeat(n));
    assert!(parse(&nest(MAX_NESTING)).is_ok());
    assert_eq!(
        parse(&nest(MAX_NESTING + 1)).expect_err("deep").code,
        codes::TOO_DEEPLY_NESTED
    );
    // Far deeper than any stack could take if it reached pest.
    assert_eq!(
        parse(&nest(20_000)).expect_err("deep").code,
        codes::TOO_DEEPLY_NESTED
    );
    let brackets = format!("requests | where {}", "properties[".repeat(5_000));
    assert_eq!(
        parse(&brackets).expect_err("deep").code,
        codes::TOO_DEEPLY_NESTED
    );

    // Long chains are loops, not recursion, but the tree they build is bounded too.
    let chain = |n: usize| format!("requests | where {}", vec!["a"; n].join(" or "));
    assert!(parse(&chain(200)).is_ok());
    assert_eq!(
        parse(&chain(5_000)).expect_err("long").code,
        codes::TOO_DEEPLY_NESTED
    );
    let nots = format!("requests | where {}x", "not ".repeat(5_000));
    assert_eq!(
        parse(&nots).expect_err("long").code,
        codes::TOO_DEEPLY_NESTED
    );
    let negs = format!("requests | where {}x", "-".repeat(20_000));
    assert_eq!(
        parse(&negs).expect_err("long").code,
        codes::TOO_DEEPLY_NESTED
    );
    // Signs in front of a number fold into the literal whatever their count.
    let folded = format!("requests | where {}1 == 1", "-".repeat(20_000));
    assert!(parse(&folded).is_ok());
    // Wide is fine.
    let wide = format!("requests | where x in ({})", vec!["1"; 5_000].join(", "));
    assert!(parse(&wide).is_ok());
}

/// The deepest accepted query parses on a thread with half of tokio's default 2 MiB stack, even
/// in a debug build (a release build needs about 256 KiB).
#[test]
fn deepest_query_fits_a_small_stack() {
    let deep = format!(
        "requests | where {}x{} == 1 | extend y = {}1{}",
        "f(".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING),
        "(-".repeat(MAX_NESTING),
        ")".repeat(MAX_NESTING)
    );
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || parse(&deep).map(|q| q.ops.len()))
        .expect("spawn");
    assert_eq!(handle.join().expect("no stack overflow"), Ok(2));
}

#[test]
fn sort_defaults_are_desc_nulls_last() {
    let q = parse("requests | sort by a, b asc, c nulls first").expect("parses");
    let OpKind::Sort { keys } = &q.ops[0].kind else {
        panic!("not a sort")
    };
    let got: Vec<_> = keys.iter().map(|k| (k.order, k.nulls)).collect();
    assert_eq!(
        got,
        vec![
            (SortOrder::Desc, NullsOrder::Last),
            (SortOrder::Asc, NullsOrder::Last),
            (SortOrder::Desc, NullsOrder::First),
        ]
    );
}

#[test]
fn spans_point_at_the_source() {
    let src = "requests | where properties[\"Workflow Step\"] == 'a b' // c\n| take 5 ";
    let q = parse(src).expect("parses");
    let OpKind::Where { predicate } = &q.ops[0].kind else {
        panic!("not a where")
    };
    assert_eq!(
        predicate.span.text(src),
        "properties[\"Workflow Step\"] == 'a b'"
    );
    let ExprKind::Binary { left, right, .. } = &predicate.kind else {
        panic!("not binary")
    };
    let ExprKind::Property { key, key_span, .. } = &left.kind else {
        panic!("not a property")
    };
    assert_eq!(key, "Workflow Step");
    assert_eq!(key_span.text(src), "\"Workflow Step\"");
    assert_eq!(right.span.text(src), "'a b'");
    assert_eq!(
        q.ops[0].span.text(src),
        "where properties[\"Workflow Step\"] == 'a b'"
    );
    assert_eq!(q.ops[1].span.text(src), "take 5");
    assert_eq!(q.span.text(src), src.trim_end());
}

#[test]
fn parse_expr_and_literals() {
    let e = parse_expr("datetime(2026-11-01T10:30:00Z) + 90m").expect("parses");
    let ExprKind::Binary { left, right, .. } = &e.kind else {
        panic!("not binary")
    };
    assert_eq!(
        left.kind,
        ExprKind::Literal {
            value: Literal::DateTime(1_793_529_000_000_000)
        }
    );
    assert_eq!(
        right.kind,
        ExprKind::Literal {
            value: Literal::Duration(5_400_000_000)
        }
    );
    assert_eq!(
        parse_expr("x |").expect_err("not an expression").code,
        codes::SYNTAX
    );
    assert_eq!(
        pretty::expr_to_hql(&parse_expr("-(1)").expect("ok")),
        "-(1)"
    );
}

#[test]
fn output_names() {
    let q = parse(
        "requests | summarize count(), sum(cost_usd), p95(latency_ms), percentile(latency_ms, 99), \
         countif(status >= 400), x = max(a) by model, bin(created_at, 1h), properties.Env, a + 1",
    )
    .expect("parses");
    let OpKind::Summarize { aggregates, by } = &q.ops[0].kind else {
        panic!("not summarize")
    };
    let names: Vec<_> = aggregates
        .iter()
        .chain(by)
        .map(|n| n.output_name())
        .collect();
    let want = [
        Some("count"),
        Some("sum_cost_usd"),
        Some("p95_latency_ms"),
        Some("percentile_latency_ms_99"),
        Some("countif"),
        Some("x"),
        Some("model"),
        Some("created_at"),
        Some("Env"),
        None,
    ];
    assert_eq!(names, want.map(|w| w.map(String::from)));
}
