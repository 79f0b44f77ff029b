//! Shared by the HQL planner tests: catalogs, the fixed dataset and result formatting.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use loupe_hql_plan::PlanOptions;
use loupe_model::{PriceTable, RequestRecord, records_to_batch, requests_schema};
use loupe_testkit::{GenOptions, Generator};

/// 2025-01-03T12:00:00Z: "now" for every test (the dataset covers 2025-01-01 and -02).
pub const NOW_MICROS: i64 = 1_735_905_600_000_000;
pub const ORG: &str = "org_a";
pub const OTHER_ORG: &str = "org_b";

pub type TestCatalog = loupe_hql_plan::TableList;

pub fn opts() -> PlanOptions {
    PlanOptions {
        org_id: ORG.to_string(),
        now_micros: NOW_MICROS,
    }
}

pub fn memtable(batches: Vec<RecordBatch>) -> Arc<MemTable> {
    Arc::new(MemTable::try_new(requests_schema(), vec![batches]).unwrap())
}

/// `requests` as an empty in-memory table (for plan snapshots).
pub fn empty_catalog() -> TestCatalog {
    TestCatalog {
        tables: vec![("requests".into(), provider_as_source(memtable(vec![])))],
        rollups: Vec::new(),
    }
}

pub fn catalog_of(table: Arc<MemTable>) -> TestCatalog {
    TestCatalog {
        tables: vec![("requests".into(), provider_as_source(table))],
        rollups: Vec::new(),
    }
}

pub fn testdata(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/hql")
        .join(dir)
}

/// The `*.hql` (or other `ext`) files of a testdata folder, sorted.
pub fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The result-test dataset: 2000 generated records over two days for two orgs (seed 7), plus
/// hand-written edge rows for `org_a` (ids `edge-…` in `properties.edge`) and one for `org_b`.
pub fn dataset() -> Vec<RequestRecord> {
    let prices = Arc::new(PriceTable::bundled().unwrap());
    let gen_opts = GenOptions {
        seed: 7,
        start: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap(),
        span: chrono::Duration::days(2),
        count: 2000,
        orgs: vec![ORG.to_string(), OTHER_ORG.to_string()],
        users: 50,
        with_bodies: false,
    };
    let mut records: Vec<RequestRecord> = Generator::new(gen_opts, prices).collect();
    let ids = [
        "00000000-0000-7000-8000-000000000001",
        "00000000-0000-7000-8000-000000000002",
        "00000000-0000-7000-8000-000000000003",
        "00000000-0000-7000-8000-000000000004",
        "00000000-0000-7000-8000-000000000005",
        "00000000-0000-7000-8000-000000000006",
    ];
    let edge = |i: usize, org: &str, created: &str| {
        let mut r = RequestRecord::new(ids[i].parse().unwrap(), org, at(created));
        r.completed_at = r.created_at;
        r.provider = "edgeprov".into();
        r.path = "/edge".into();
        r.properties = BTreeMap::from([("edge".to_string(), format!("e{}", i + 1))]);
        r
    };
    // e1: unknown model, no cost, no ttft, properties with spaces in keys, 429.
    let mut e1 = edge(0, ORG, "2025-01-02T23:59:59.999999Z");
    e1.model = "Mystery-Model_X".into();
    e1.status = 429;
    e1.latency_ms = 10;
    e1.error_type = Some("rate_limit".into());
    e1.error_message = Some("Too Many Requests: 100% used".into());
    e1.properties
        .insert("Workflow Step".into(), "retrieve docs".into());
    e1.properties.insert("odd key".into(), "x".into());
    records.push(e1);
    // e2: status 500, empty-string user, exact cost with 18 decimals.
    let mut e2 = edge(1, ORG, "2025-01-01T00:00:00Z");
    e2.model = "mystery-model_x".into();
    e2.status = 500;
    e2.latency_ms = 20;
    e2.ttft_ms = Some(5);
    e2.user_id = Some(String::new());
    e2.cost_usd = Some("0.000000000000000001".parse().unwrap());
    e2.price_known = true;
    records.push(e2);
    // e3: a model name with LIKE wildcards.
    let mut e3 = edge(2, ORG, "2025-01-01T12:30:00Z");
    e3.model = "100%_sure".into();
    e3.latency_ms = 30;
    e3.cost_usd = Some("1.5".parse().unwrap());
    e3.price_known = true;
    records.push(e3);
    // e4: no properties except `edge`, huge latency.
    let mut e4 = edge(3, ORG, "2025-01-01T23:00:00Z");
    e4.model = "MYSTERY-MODEL_X".into();
    e4.latency_ms = 999_999;
    e4.ttft_ms = Some(999_000);
    e4.cost_usd = Some("0.25".parse().unwrap());
    e4.price_known = true;
    records.push(e4);
    // e5: the other org's edge row; if it ever shows up, scoping is broken.
    let mut e5 = edge(4, OTHER_ORG, "2025-01-01T12:30:00Z");
    e5.model = "Mystery-Model_X".into();
    e5.status = 429;
    e5.latency_ms = 10;
    e5.cost_usd = Some("1000".parse().unwrap());
    records.push(e5);
    records
}

pub fn dataset_table() -> Arc<MemTable> {
    let records = dataset();
    let batches = records
        .chunks(500)
        .map(|c| records_to_batch(c).unwrap())
        .collect();
    memtable(batches)
}

pub async fn execute(ctx: &SessionContext, plan: LogicalPlan) -> Result<Vec<RecordBatch>, String> {
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| e.to_string())?;
    df.collect().await.map_err(|e| e.to_string())
}

/// Header line (tab-separated names), then one tab-separated line per row; nulls as `NULL`.
pub fn format_rows(
    batches: &[RecordBatch],
    schema: &datafusion::arrow::datatypes::Schema,
) -> (String, Vec<String>) {
    let header = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect::<Vec<_>>()
        .join("\t");
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            rows.push(
                fmts.iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join("\t"),
            );
        }
    }
    (header, rows)
}

/// `t` with every string (and the map's keys and values) as `Utf8View`, the way the Delta
/// table provider may present them.
pub fn to_view(
    t: &datafusion::arrow::datatypes::DataType,
) -> datafusion::arrow::datatypes::DataType {
    use datafusion::arrow::datatypes::{DataType, Field};
    match t {
        DataType::Utf8 => DataType::Utf8View,
        DataType::Map(entries, sorted) => {
            let DataType::Struct(fields) = entries.data_type() else {
                return t.clone();
            };
            let fields: Vec<Field> = fields
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(to_view(f.data_type())))
                .collect();
            DataType::Map(
                Arc::new(
                    entries
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Struct(fields.into())),
                ),
                *sorted,
            )
        }
        other => other.clone(),
    }
}

pub fn dataset_table_view() -> Arc<MemTable> {
    use datafusion::arrow::datatypes::{Field, Schema};
    let records = dataset();
    let base = requests_schema();
    let schema = Arc::new(Schema::new(
        base.fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(to_view(f.data_type())))
            .collect::<Vec<Field>>(),
    ));
    let batches: Vec<RecordBatch> = records
        .chunks(500)
        .map(|c| {
            let b = records_to_batch(c).unwrap();
            let cols = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()).unwrap())
                .collect();
            RecordBatch::try_new(schema.clone(), cols).unwrap()
        })
        .collect();
    Arc::new(MemTable::try_new(schema, vec![batches]).unwrap())
}
