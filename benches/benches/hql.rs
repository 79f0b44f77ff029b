//! HQL compile cost: parse (text → AST) and parse + plan (→ DataFusion LogicalPlan) of every
//! dashboard query in queries/*.hql, against the `requests` schema. Target: well under 1 ms.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use datafusion::datasource::{MemTable, provider_as_source};
use loupe_benches::smoke;
use loupe_hql_plan::{PlanOptions, TableList};

fn queries() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../queries");
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("queries/")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "hql"))
        .map(|p| {
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("?")
                .to_owned();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    out.sort();
    out
}

fn bench(c: &mut Criterion) {
    let table = MemTable::try_new(loupe_model::requests_schema(), vec![vec![]]).expect("table");
    let spans = MemTable::try_new(loupe_model::spans_schema(), vec![vec![]]).expect("table");
    let catalog = TableList {
        tables: vec![
            ("requests".into(), provider_as_source(Arc::new(table))),
            ("spans".into(), provider_as_source(Arc::new(spans))),
        ],
        rollups: Vec::new(),
    };
    let opts = PlanOptions {
        org_id: "default".into(),
        now_micros: 1_790_000_000_000_000,
    };
    let mut group = c.benchmark_group("hql");
    group.measurement_time(Duration::from_secs(if smoke() { 1 } else { 3 }));
    for (name, src) in queries() {
        group.bench_with_input(BenchmarkId::new("parse", &name), &src, |b, src| {
            b.iter(|| loupe_hql_syntax::parse(src).expect("parse"))
        });
        group.bench_with_input(BenchmarkId::new("parse_plan", &name), &src, |b, src| {
            b.iter(|| loupe_hql_plan::compile(src, &catalog, &opts).expect("plan"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
