//! Snapshot of the unoptimized logical plan of every `testdata/hql/plan/*.hql`, and of the
//! rendered error (caret + JSON) of every `testdata/hql/plan_errors/*.hql`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use loupe_hql_plan::compile;

#[test]
fn plans() {
    let catalog = common::empty_catalog();
    let files = common::files("plan", "hql");
    assert!(!files.is_empty());
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let plan = match compile(&src, &catalog, &common::opts()) {
            Ok(p) => p,
            Err(e) => panic!("{}: {}", path.display(), e.render(&src)),
        };
        let schema: Vec<String> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect();
        let out = format!(
            "{}\n--- output columns ---\n{}\n",
            plan.display_indent(),
            schema.join("\n")
        );
        insta::with_settings!({
            snapshot_path => "snapshots",
            prepend_module_to_snapshot => false,
            description => src.trim_end(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("plan__{name}"), out);
        });
    }
}

#[test]
fn plan_errors() {
    let catalog = common::empty_catalog();
    let files = common::files("plan_errors", "hql");
    assert!(!files.is_empty());
    for path in files {
        let src = std::fs::read_to_string(&path).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let err = match compile(&src, &catalog, &common::opts()) {
            Ok(p) => panic!(
                "{}: expected an error, got\n{}",
                path.display(),
                p.display_indent()
            ),
            Err(e) => e,
        };
        assert_eq!(err.kind(), loupe_model::ErrorKind::InvalidInput);
        let json = serde_json::to_string_pretty(&err).unwrap();
        let out = format!("{}\n{json}\n", err.render(&src));
        insta::with_settings!({
            snapshot_path => "snapshots",
            prepend_module_to_snapshot => false,
            description => src.trim_end(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(format!("error__{name}"), out);
        });
    }
}
