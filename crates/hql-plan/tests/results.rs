//! Result tests: `testdata/hql/results/*.slt` run over the fixed dataset (see `common::dataset`).
//!
//! The format, a small cousin of sqllogictest:
//!
//! ```text
//! # a comment
//! query [rowsort]
//! requests | where status == 429 | count
//! ----
//! count
//! 12
//!
//! error hql.unknown_column
//! requests | project nope
//! ```
//!
//! A `query` block is HQL lines, `----`, a header line (tab-separated column names) and the rows
//! (tab-separated, nulls as `NULL`), ended by a blank line. `rowsort` compares the rows sorted.
//! An `error CODE` block expects compiling to fail with that code. `HQL_SLT_UPDATE=1` rewrites
//! the expected output of query blocks with what the engine returns (then check it by hand).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fmt::Write as _;

use datafusion::prelude::SessionContext;
use loupe_hql_plan::compile;

enum Kind {
    Query { rowsort: bool },
    Error(String),
}

struct Block {
    kind: Kind,
    hql: String,
    expected: Vec<String>,
    line: usize,
}

fn parse(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < lines.len() {
        let l = lines[i].trim_end();
        if l.is_empty() || l.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let kind = if let Some(rest) = l.strip_prefix("query") {
            Kind::Query {
                rowsort: rest.trim() == "rowsort",
            }
        } else if let Some(code) = l.strip_prefix("error ") {
            Kind::Error(code.trim().to_string())
        } else {
            panic!("line {start}: expected 'query' or 'error', got {l:?}");
        };
        i += 1;
        let mut hql = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim_end() != "----" {
            hql.push(lines[i]);
            i += 1;
        }
        let mut expected = Vec::new();
        if i < lines.len() && lines[i].trim_end() == "----" {
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() {
                expected.push(lines[i].trim_end_matches(['\r', '\n']).to_string());
                i += 1;
            }
        }
        out.push(Block {
            kind,
            hql: hql.join("\n"),
            expected,
            line: start,
        });
    }
    out
}

fn render(blocks: &[Block], actual: &[Option<Vec<String>>], original: &str) -> String {
    // Keep comments: rebuild the file by replacing each query block's expected lines.
    let lines: Vec<&str> = original.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut b = 0;
    while i < lines.len() {
        if b < blocks.len() && i + 1 == blocks[b].line {
            let block = &blocks[b];
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() && lines[i].trim_end() != "----" {
                out.push_str(lines[i]);
                out.push('\n');
                i += 1;
            }
            if i < lines.len() && lines[i].trim_end() == "----" {
                i += 1;
                while i < lines.len() && !lines[i].trim().is_empty() {
                    i += 1;
                }
            }
            if let (Kind::Query { .. }, Some(rows)) = (&block.kind, &actual[b]) {
                out.push_str("----\n");
                for r in rows {
                    out.push_str(r);
                    out.push('\n');
                }
            }
            b += 1;
            continue;
        }
        out.push_str(lines[i]);
        out.push('\n');
        i += 1;
    }
    out
}

#[tokio::test]
async fn results() {
    let update = std::env::var("HQL_SLT_UPDATE").is_ok_and(|v| v == "1");
    run_all(common::dataset_table(), update).await;
}

/// The same files over a table that presents strings as `Utf8View` (as Delta may): same
/// results.
#[tokio::test]
async fn results_utf8view() {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::datasource::TableProvider as _;
    let table = common::dataset_table_view();
    let schema = table.schema();
    assert_eq!(
        schema.field_with_name("model").unwrap().data_type(),
        &DataType::Utf8View
    );
    let props = schema.field_with_name("properties").unwrap().data_type();
    assert!(format!("{props}").contains("Utf8View"), "{props}");
    run_all(table, false).await;
}

async fn run_all(table: std::sync::Arc<datafusion::datasource::MemTable>, update: bool) {
    let catalog = common::catalog_of(table);
    let ctx = SessionContext::new();
    let files = common::files("results", "slt");
    assert!(!files.is_empty());
    let mut failures = String::new();
    let mut count = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let blocks = parse(&text);
        let mut actual: Vec<Option<Vec<String>>> = Vec::new();
        for block in &blocks {
            count += 1;
            let at = format!("{}:{}", path.display(), block.line);
            let result = compile(&block.hql, &catalog, &common::opts());
            match (&block.kind, result) {
                (Kind::Error(code), Err(e)) => {
                    actual.push(None);
                    if e.code != code {
                        let _ = writeln!(
                            failures,
                            "{at}: expected error {code}, got {}\n{}",
                            e.code,
                            e.render(&block.hql)
                        );
                    }
                }
                (Kind::Error(code), Ok(_)) => {
                    actual.push(None);
                    let _ = writeln!(failures, "{at}: expected error {code}, but it planned");
                }
                (Kind::Query { .. }, Err(e)) => {
                    actual.push(None);
                    let _ = writeln!(failures, "{at}: {}", e.render(&block.hql));
                }
                (Kind::Query { rowsort }, Ok(plan)) => {
                    let schema = plan.schema().as_arrow().clone();
                    match common::execute(&ctx, plan).await {
                        Err(e) => {
                            actual.push(None);
                            let _ = writeln!(failures, "{at}: execution failed: {e}");
                        }
                        Ok(batches) => {
                            let (header, mut rows) = common::format_rows(&batches, &schema);
                            let mut expected_rows =
                                block.expected.iter().skip(1).cloned().collect::<Vec<_>>();
                            if *rowsort {
                                rows.sort();
                                expected_rows.sort();
                            }
                            let mut got = vec![header.clone()];
                            got.extend(rows.iter().cloned());
                            let expected_header =
                                block.expected.first().cloned().unwrap_or_default();
                            if header != expected_header || rows != expected_rows {
                                let _ = writeln!(
                                    failures,
                                    "{at}: {}\n--- expected\n{}\n--- got\n{}\n",
                                    block.hql,
                                    block.expected.join("\n"),
                                    got.join("\n")
                                );
                            }
                            actual.push(Some(got));
                        }
                    }
                }
            }
        }
        if update {
            std::fs::write(&path, render(&blocks, &actual, &text)).unwrap();
        }
    }
    assert!(count > 0);
    assert!(failures.is_empty(), "{failures}");
}

/// Writes the dataset as JSON lines to `$HQL_DUMP` (for checking expected values with another
/// tool): `cargo test -p loupe-hql-plan --test results dump -- --ignored`.
#[test]
#[ignore]
fn dump() {
    let Ok(path) = std::env::var("HQL_DUMP") else {
        return;
    };
    let mut out = String::new();
    for r in common::dataset() {
        let v = serde_json::json!({
            "request_id": r.request_id.to_string(),
            "org_id": r.org_id,
            "created_at": r.created_at.timestamp_micros(),
            "completed_at": r.completed_at.timestamp_micros(),
            "latency_ms": r.latency_ms,
            "ttft_ms": r.ttft_ms,
            "provider": r.provider,
            "model": r.model,
            "response_model": r.response_model,
            "path": r.path,
            "status": r.status,
            "error_type": r.error_type,
            "error_message": r.error_message,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.total_tokens,
            "cost_usd": r.cost_usd.map(|c| c.to_string()),
            "price_known": r.price_known,
            "user_id": r.user_id,
            "session_id": r.session_id,
            "session_name": r.session_name,
            "properties": r.properties,
            "cache_hit": r.cache_hit,
            "stream": r.stream,
        });
        out.push_str(&v.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}
