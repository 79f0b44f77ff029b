//! Snapshot tests over `testdata/hql`: every file in `parse/` must parse (the snapshot is the
//! tree with spans and the canonical HQL, which must parse back to the same tree), and every file
//! in `parse_errors/` must fail (the snapshot is the error as the CLI prints it, and as JSON).

use std::fs;
use std::path::{Path, PathBuf};

use loupe_hql_syntax::{parse, pretty};

fn cases(dir: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/hql")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .hql files in {}", root.display());
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let src = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, src)
        })
        .collect()
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

#[test]
fn good_queries_parse() {
    let mut failures = Vec::new();
    for (name, src) in cases("parse") {
        let query = match parse(&src) {
            Ok(q) => q,
            Err(e) => {
                failures.push(format!("{name}:\n{}", e.render(&src)));
                continue;
            }
        };
        let canonical = pretty::to_hql(&query);
        match parse(&canonical) {
            Ok(again) => assert_eq!(
                pretty::dump(&again, false),
                pretty::dump(&query, false),
                "{name}: the canonical form parses to a different tree:\n{canonical}"
            ),
            Err(e) => failures.push(format!(
                "{name}: canonical form does not parse:\n{}",
                e.render(&canonical)
            )),
        }
        let out = format!(
            "{src}\n---- tree\n{}---- canonical\n{canonical}\n",
            pretty::dump(&query, true)
        );
        settings().bind(|| insta::assert_snapshot!(format!("parse__{name}"), out));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bad_queries_fail_with_friendly_errors() {
    let mut unexpected = Vec::new();
    for (name, src) in cases("parse_errors") {
        let err = match parse(&src) {
            Ok(q) => {
                unexpected.push(format!("{name} parsed:\n{}", pretty::dump(&q, false)));
                continue;
            }
            Err(e) => e,
        };
        // The position fields agree with the span.
        assert!(
            err.span.start <= err.span.end && err.span.end <= src.len(),
            "{name}"
        );
        assert!(err.line >= 1 && err.column >= 1, "{name}");
        assert!(err.code.starts_with("hql."), "{name}");
        let json = serde_json::to_string_pretty(&err).unwrap_or_default();
        let out = format!(
            "{src}\n---- rendered\n{}---- json\n{json}\n",
            err.render(&src)
        );
        settings().bind(|| insta::assert_snapshot!(format!("error__{name}"), out));
    }
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
}

/// The dashboard questions shipped in `queries/` parse (their results are tested by the planner).
#[test]
fn shipped_queries_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../queries");
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|x| x != "hql") {
            continue;
        }
        let src = fs::read_to_string(&path).unwrap_or_default();
        if let Err(e) = parse(&src) {
            panic!("{}:\n{}", path.display(), e.render(&src));
        }
    }
}
