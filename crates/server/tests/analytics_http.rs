//! The dashboard's analytics API against the real binary, over a generated fixture dataset: every
//! number must match the HQL oracle (`POST /v1/hql` on the same data), with the records first in
//! the memtable and then flushed (answered from the hourly roll-up), for one org only.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use common::{Loupe, client, run_loupe};
use loupe_model::PriceTable;
use loupe_testkit::{GenOptions, Generator, write_ndjson};
use serde_json::{Value, json};

const FROM: &str = "2026-11-01T00:00:00Z";
const TO: &str = "2026-11-03T00:00:00Z";
const COUNT: u64 = 3000;

fn key(dir: &std::path::Path, org: &str) -> String {
    let d = dir.to_str().expect("utf-8 path");
    let (st, out, err) = run_loupe(&["keys", "create", "--org", org, "--data-dir", d], &[]);
    assert!(st.success(), "keys create: {err}");
    out.trim().to_string()
}

fn fixture(seed: u64, count: u64) -> Vec<u8> {
    let opts = GenOptions {
        seed,
        start: Utc
            .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .expect("time"),
        span: chrono::Duration::days(2),
        count,
        users: 50,
        with_bodies: true,
        ..GenOptions::default()
    };
    let prices = Arc::new(PriceTable::bundled().expect("prices"));
    let mut out = Vec::new();
    write_ndjson(Generator::new(opts, prices), &mut out).expect("ndjson");
    out
}

struct Api<'a> {
    l: &'a Loupe,
    key: &'a str,
}

impl Api<'_> {
    async fn get_status(&self, path: &str) -> (u16, Value) {
        let r = client()
            .get(self.l.url(path))
            .bearer_auth(self.key)
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (s, v) = self.get_status(path).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }

    /// `/v1/analytics/<path>` over the fixture's range (`extra` already URL-encoded).
    async fn an(&self, path: &str, extra: &str) -> Value {
        self.get(&format!("/v1/analytics/{path}?from={FROM}&to={TO}{extra}"))
            .await
    }

    /// The oracle: rows of an HQL query, as objects.
    async fn hql(&self, q: &str) -> Vec<serde_json::Map<String, Value>> {
        let r = client()
            .post(self.l.url("/v1/hql"))
            .bearer_auth(self.key)
            .json(&json!({ "query": q }))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{q}");
        let v: Value = r.json().await.expect("json");
        let names: Vec<&str> = v["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                names
                    .iter()
                    .zip(r.as_array().expect("row"))
                    .map(|(n, v)| (n.to_string(), v.clone()))
                    .collect()
            })
            .collect()
    }
}

const RANGE: &str = "created_at >= datetime(2026-11-01) and created_at < datetime(2026-11-03)";

fn f(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().expect("number"),
        v => v.as_f64().expect("number"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

async fn check_against_oracle(api: &Api<'_>) {
    // Summary.
    let s = api.an("summary", "").await;
    let o = &api
        .hql(&format!(
            "requests | where {RANGE} | summarize requests = count(), errors = countif(status >= 400), \
             cost = sum(cost_usd), tokens = sum(total_tokens), hits = countif(cache_hit), \
             p95 = p95(latency_ms), ttft = p50(ttft_ms)"
        ))
        .await[0];
    assert_eq!(s["requests"], json!(COUNT), "{s}");
    assert_eq!(s["requests"], o["requests"]);
    assert_eq!(s["errors"], o["errors"]);
    assert!(
        s["errors"].as_u64().expect("errors") > 0,
        "fixture has errors"
    );
    assert_eq!(s["cost_usd"], o["cost"], "exact decimal cost");
    assert_eq!(s["total_tokens"], o["tokens"]);
    assert_eq!(s["cache_hits"], o["hits"]);
    assert!(close(f(&s["error_rate"]), f(&o["errors"]) / COUNT as f64));
    // Percentiles are estimates (t-digest): the same engine on the same rows.
    assert!(
        (f(&s["latency_p95_ms"]) - f(&o["p95"])).abs() <= 0.02 * f(&o["p95"]),
        "{s}"
    );
    assert!((f(&s["ttft_p50_ms"]) - f(&o["ttft"])).abs() <= 0.02 * f(&o["ttft"]));

    // Time series: hourly buckets over two days, each equal to the oracle's bin.
    let ts = api.an("timeseries", "&bucket=1h").await;
    let points = ts["points"].as_array().expect("points");
    assert_eq!(points.len(), 48);
    let oracle = api
        .hql(&format!(
            "requests | where {RANGE} | summarize n = count(), cost = sum(cost_usd), e = countif(status >= 400) \
             by t = bin(created_at, 1h)"
        ))
        .await;
    for o in &oracle {
        let p = points
            .iter()
            .find(|p| p["t"] == o["t"])
            .unwrap_or_else(|| panic!("no point at {}", o["t"]));
        assert_eq!(p["requests"], o["n"]);
        assert_eq!(p["errors"], o["e"]);
        assert_eq!(p["cost_usd"], o["cost"], "exact decimal cost per bucket");
    }
    let empty = points
        .iter()
        .filter(|p| p["requests"] == 0)
        .map(|p| &p["cost_usd"]);
    assert!(empty.into_iter().all(|c| *c == "0.000000000000000000"));
    let total: u64 = points
        .iter()
        .map(|p| p["requests"].as_u64().expect("n"))
        .sum();
    assert_eq!(total, COUNT);
    let auto = api.an("timeseries", "").await;
    assert_eq!(auto["bucket_secs"], 900, "two days → 15-minute buckets");

    // Breakdown by model: top 3 by cost, the rest as "other".
    let b = api.an("breakdown", "&by=model&metric=cost&top=3").await;
    let o = api
        .hql(&format!(
            "requests | where {RANGE} | summarize n = count(), cost = sum(cost_usd) by model | top 3 by cost"
        ))
        .await;
    let groups = b["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 3);
    for (g, o) in groups.iter().zip(&o) {
        assert_eq!(g["key"], o["model"]);
        assert_eq!(g["requests"], o["n"]);
        assert_eq!(g["cost_usd"], o["cost"]);
    }
    let top: u64 = groups
        .iter()
        .map(|g| g["requests"].as_u64().expect("n"))
        .sum();
    assert_eq!(f(&b["other"]["requests"]) as u64, COUNT - top);
    // "other" is the exact sum of every other model's cost.
    let shown: Vec<String> = groups.iter().map(|g| format!("{}", g["key"])).collect();
    let o = api
        .hql(&format!(
            "requests | where {RANGE} and (model !in ({}) or model is null) | summarize n = count(), cost = sum(cost_usd)",
            shown.join(", ")
        ))
        .await;
    assert_eq!(b["other"]["requests"], o[0]["n"]);
    assert_eq!(b["other"]["cost_usd"], o[0]["cost"], "{b}");
    assert!(b["other"]["cost_usd"].is_string());

    // Breakdown by a property, filtered by status class.
    let b = api
        .an("breakdown", "&by=property.feature&status=error&top=100")
        .await;
    let o = api
        .hql(&format!(
            "requests | where {RANGE} and status >= 400 | summarize n = count() by v = properties.feature"
        ))
        .await;
    assert_eq!(b["groups"].as_array().expect("groups").len(), o.len());
    for o in &o {
        let g = b["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .find(|g| g["key"] == o["v"])
            .expect("group");
        assert_eq!(g["requests"], o["n"]);
    }

    // Top users over a range that is not whole days (merged from per-slice groups).
    let b = api
        .get("/v1/analytics/breakdown?from=2026-11-01T06:30:00Z&to=2026-11-02T18:00:00Z&by=user&metric=cost&top=5")
        .await;
    let o = api
        .hql(
            "requests | where created_at >= datetime(2026-11-01T06:30:00Z) and created_at < datetime(2026-11-02T18:00:00Z) \
             | summarize n = count(), cost = sum(cost_usd), e = countif(status >= 400) by user_id | top 5 by cost",
        )
        .await;
    let groups = b["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 5);
    for (g, o) in groups.iter().zip(&o) {
        assert_eq!(g["key"], o["user_id"], "{b}");
        assert_eq!(g["requests"], o["n"]);
        assert_eq!(g["errors"], o["e"]);
        assert_eq!(g["cost_usd"], o["cost"]);
    }

    // Users: the first page sorted by cost.
    let u = api.an("users", "&limit=5").await;
    let o = api
        .hql(&format!(
            "requests | where {RANGE} and isnotempty(user_id) | summarize cost = sum(cost_usd), n = count(), \
             models = dcount(model) by user_id | top 5 by cost"
        ))
        .await;
    let users = u["users"].as_array().expect("users");
    assert_eq!(users.len(), 5);
    assert_eq!(u["has_more"], true);
    for (u, o) in users.iter().zip(&o) {
        assert_eq!(u["user_id"], o["user_id"]);
        assert_eq!(u["cost_usd"], o["cost"]);
        assert_eq!(u["requests"], o["n"]);
        assert_eq!(
            u["models_used"].as_array().expect("models").len() as u64,
            o["models"].as_u64().expect("models")
        );
    }
    let page2 = api.an("users", "&limit=5&offset=5").await;
    assert_ne!(page2["users"][0]["user_id"], users[0]["user_id"]);

    // Sessions and one session's tree.
    let ss = api.an("sessions", "&limit=500").await;
    let o = api
        .hql(&format!(
            "requests | where {RANGE} and isnotempty(session_id) | summarize n = count() by session_id"
        ))
        .await;
    let list = ss["sessions"].as_array().expect("sessions");
    assert_eq!(list.len(), o.len().min(500));
    let biggest = o.iter().max_by_key(|r| r["n"].as_u64()).expect("a session");
    let id = biggest["session_id"].as_str().expect("id");
    let t = api.an(&format!("sessions/{id}"), "").await;
    assert_eq!(t["tree"]["request_count"], biggest["n"]);
    let o = api
        .hql(&format!(
            "requests | where {RANGE} and session_id == \"{id}\" | summarize cost = sum(cost_usd)"
        ))
        .await;
    assert_eq!(t["tree"]["cost_usd"], o[0]["cost"], "exact session cost");
    let mut leaves = 0;
    let mut stack = vec![&t["tree"]];
    while let Some(n) = stack.pop() {
        for c in n["children"].as_array().into_iter().flatten() {
            if c["kind"] == "request" {
                leaves += 1;
                let path = c["session_path"].as_str().unwrap_or("/");
                assert!(
                    path.trim_end_matches('/')
                        == n["path"].as_str().expect("path").trim_end_matches('/'),
                    "{path} under {}",
                    n["path"]
                );
            } else {
                stack.push(c);
            }
        }
    }
    assert_eq!(json!(leaves), biggest["n"]);
    let (s, e) = api
        .get_status(&format!("/v1/analytics/sessions/nope?from={FROM}&to={TO}"))
        .await;
    assert_eq!(s, 404, "{e}");

    // Requests: walking every page by cursor sees each request once, newest first.
    let mut seen = HashSet::new();
    let mut last: Option<(String, String)> = None;
    let mut cursor = String::new();
    for _ in 0..100 {
        let p = api.an("requests", &format!("&limit=500{cursor}")).await;
        for r in p["requests"].as_array().expect("requests") {
            let k = (
                r["created_at"].as_str().expect("t").to_string(),
                r["request_id"].as_str().expect("id").to_string(),
            );
            if let Some(prev) = &last {
                assert!(k < *prev, "{k:?} after {prev:?}");
            }
            assert!(seen.insert(k.1.clone()));
            last = Some(k);
        }
        match p["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, COUNT);
    // With a property filter, the list holds exactly the oracle's rows.
    let p = api
        .an(
            "requests",
            "&limit=500&property.feature=chat&model=gpt-4o-mini",
        )
        .await;
    let o = api
        .hql(&format!(
            "requests | where {RANGE} and properties.feature == \"chat\" and model == \"gpt-4o-mini\" | count"
        ))
        .await;
    assert_eq!(
        json!(p["requests"].as_array().expect("rows").len()),
        o[0]["count"]
    );

    // One request: every column, bodies and a cost breakdown that adds up.
    let first = &api.an("requests", "&limit=1&status=ok").await["requests"][0];
    let id = first["request_id"].as_str().expect("id");
    let at = first["created_at"].as_str().expect("t");
    let d = api
        .get(&format!("/v1/analytics/requests/{id}?at={at}"))
        .await;
    let r = &d["request"];
    assert_eq!(r["request_id"], first["request_id"]);
    assert!(r["request_body"].as_str().is_some_and(|b| !b.is_empty()));
    assert!(r.get("upstream_headers").is_some() && r.get("attempts").is_some());
    if r["price_known"] == true
        && let Some(parts) = d["cost_breakdown"].as_object()
    {
        let sum: f64 = parts
            .values()
            .filter_map(|v| v.as_str())
            .map(|v| f(&json!(v)))
            .sum();
        assert!(close(sum, f(&r["cost_usd"])), "{d}");
    }
    let d2 = api.get(&format!("/v1/analytics/requests/{id}")).await;
    assert_eq!(d2["request"], *r, "found without the time hint too");

    // Property keys and values.
    let k = api.an("properties", "").await;
    let feature = k["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["key"] == "feature")
        .expect("feature key");
    let o = api
        .hql(&format!(
            "requests | where {RANGE} and properties.feature is not null | count"
        ))
        .await;
    assert_eq!(feature["requests"], o[0]["count"]);
    let v = api.an("properties/feature", "&limit=3").await;
    assert_eq!(v["values"].as_array().expect("values").len(), 3);
}

#[tokio::test]
async fn analytics_match_the_hql_oracle_before_and_after_flush() {
    let dir = tempfile::tempdir().expect("tmp");
    let acme = key(dir.path(), "acme");
    let globex = key(dir.path(), "globex");
    let l = Loupe::start(dir.path(), &[], &[]);
    for (k, body) in [(&acme, fixture(11, COUNT)), (&globex, fixture(12, 500))] {
        let r = client()
            .post(l.url("/v1/ingest"))
            .bearer_auth(k)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("ingest");
        assert_eq!(r.status(), 200);
    }
    // In the memtable.
    check_against_oracle(&Api { l: &l, key: &acme }).await;
    l.sigterm_and_wait();
    // Flushed to Parquet: counts and costs now come from the hourly roll-up.
    let l = Loupe::start(dir.path(), &[], &[]);
    let api = Api { l: &l, key: &acme };
    check_against_oracle(&api).await;

    // The other org sees only its own rows.
    let g = Api {
        l: &l,
        key: &globex,
    };
    assert_eq!(g.an("summary", "").await["requests"], 500);
    // Filter values cannot change the query (escaped as literals).
    let s = api
        .an(
            "summary",
            "&model=x%22)%20or%20true%20or%20(%22&user=%5C%22",
        )
        .await;
    assert_eq!(s["requests"], 0);
    // Bad parameters are named.
    for (q, needle) in [
        ("summary?status=6xx", "status"),
        ("summary?range=7y", "range"),
        ("summary?from=yesterday", "from"),
        (
            "summary?range=1d&from=2026-11-01T00:00:00Z",
            "either from or range",
        ),
        ("summary?modle=gpt-4o", "unknown parameter \\\"modle\\\""),
        ("breakdown?range=1d", "by is required"),
        ("breakdown?range=1d&by=colour", "by must be"),
        ("users?range=1d&limit=100000", "limit"),
        ("requests?range=1d&cursor=garbage", "cursor"),
        (
            "timeseries?from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z&bucket=1m",
            "bucket",
        ),
    ] {
        let (s, v) = api.get_status(&format!("/v1/analytics/{q}")).await;
        assert_eq!(s, 400, "{q}: {v}");
        assert_eq!(v["error"]["code"], "invalid_input");
        assert!(v.to_string().contains(needle), "{q}: {v}");
    }
    let r = client()
        .get(l.url("/v1/analytics/summary"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);

    // Saved queries, keys, and the dashboard itself.
    let q = api.get("/v1/queries").await;
    assert!(q["queries"].as_array().expect("queries").len() >= 9);
    let keys = api.get("/v1/keys").await;
    assert_eq!(keys["org"], "acme");
    assert_eq!(keys["keys"].as_array().expect("keys").len(), 1);
    assert!(
        !keys.to_string().contains(&acme),
        "the key itself is never returned"
    );
    for (path, ct) in [
        ("/", "text/html"),
        ("/assets/js/main.js", "javascript"),
        ("/assets/vendor/uplot/uPlot.iife.min.js", "javascript"),
        ("/assets/app.css", "text/css"),
    ] {
        let r = client().get(l.url(path)).send().await.expect("send");
        assert_eq!(r.status(), 200, "{path}");
        let got = r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .to_string();
        assert!(got.contains(ct), "{path}: {got}");
    }
    let r = client()
        .get(l.url("/assets/nope.js"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    l.sigterm_and_wait();
}
