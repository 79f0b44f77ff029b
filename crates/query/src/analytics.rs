//! Dashboard analytics: summary cards, time series, breakdowns, users, sessions (as a tree),
//! paged requests and property pickers, for one org over a time range and a set of filters.
//!
//! Every function builds HQL and runs it through [`QueryEngine::hql_at`], so tenant scoping,
//! limits and the hourly roll-ups apply as for any HQL query. Counts, errors, costs and tokens use
//! roll-up-eligible shapes (`count()`, `countif(<dimension predicate>)`, `sum(<summed column>)`,
//! `by` dimensions or whole-hour bins) and are answered from `requests_hourly` when the filters
//! only touch roll-up dimensions (model, provider, status). Percentiles are read from log-scale
//! histograms, answered from `requests_latency_hourly` / `requests_ttft_hourly` when the filter is
//! only a time range, and top users from `requests_users_hourly` (filters on users and status
//! too); otherwise both scan raw rows, sliced by day partition. Filter
//! values are never spliced into HQL unescaped: [`hql_string`] writes every value as an HQL
//! string literal with every special character escaped (tested by parsing it back).
//!
//! Sessions are built from `session_path` (`Helicone-Session-Path`): one node per path segment,
//! the requests as leaves. The node shape has a `kind` so OTel spans (`kind: "span"`) can be hung
//! under the same tree once the `spans` table exists.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use loupe_model::schema::{HIST_PER_DECADE, log_bucket_hql};
use serde_json::{Map, Value, json};

use crate::{QueryEngine, QueryError, format};

/// A row of a result as `{column: value}`.
pub type Row = Map<String, Value>;

const MICROS_PER_SEC: i64 = 1_000_000;
const HOUR: i64 = 3_600 * MICROS_PER_SEC;

/// Status class filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// `status < 400`.
    Ok,
    /// `status >= 400`.
    Error,
    /// `2xx`, `3xx`, `4xx`, `5xx`: the hundred.
    Hundred(i32),
}

impl std::str::FromStr for StatusClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ok" => Ok(StatusClass::Ok),
            "error" => Ok(StatusClass::Error),
            "1xx" | "2xx" | "3xx" | "4xx" | "5xx" => Ok(StatusClass::Hundred(
                i32::from(s.as_bytes()[0] - b'0') * 100,
            )),
            _ => Err(format!(
                "status must be one of ok, error, 1xx, 2xx, 3xx, 4xx, 5xx (found {s:?})"
            )),
        }
    }
}

/// Time range and filters shared by every endpoint. The range is `[from, to)` in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from: i64,
    pub to: i64,
    pub models: Vec<String>,
    pub providers: Vec<String>,
    pub users: Vec<String>,
    pub status: Option<StatusClass>,
    /// `(key, value)`: `properties[key] == value`, all of them.
    pub properties: Vec<(String, String)>,
    pub session: Option<String>,
}

/// An HQL string literal holding exactly `s` (the parser's own printer).
pub use loupe_hql_syntax::pretty::string_hql as hql_string;

/// An HQL datetime literal for `micros` since the epoch.
pub fn hql_datetime(micros: i64) -> String {
    format!("datetime({})", rfc3339(micros))
}

fn rfc3339(micros: i64) -> String {
    Utc.timestamp_micros(micros)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| hql_string(v))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Filter {
    /// The `where` predicate of the filter (time range first).
    pub fn predicate(&self) -> String {
        let mut p = vec![
            format!("created_at >= {}", hql_datetime(self.from)),
            format!("created_at < {}", hql_datetime(self.to)),
        ];
        p.extend(self.conditions());
        p.join(" and ")
    }

    /// The conditions besides the time range.
    fn conditions(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.models.is_empty() {
            p.push(format!("model in ({})", list(&self.models)));
        }
        if !self.providers.is_empty() {
            p.push(format!("provider in ({})", list(&self.providers)));
        }
        if !self.users.is_empty() {
            p.push(format!("user_id in ({})", list(&self.users)));
        }
        match self.status {
            Some(StatusClass::Ok) => p.push("status < 400".into()),
            Some(StatusClass::Error) => p.push("status >= 400".into()),
            Some(StatusClass::Hundred(h)) => {
                p.push(format!("status >= {h}"));
                p.push(format!("status < {}", h + 100));
            }
            None => {}
        }
        for (k, v) in &self.properties {
            p.push(format!(
                "properties[{}] == {}",
                hql_string(k),
                hql_string(v)
            ));
        }
        if let Some(s) = &self.session {
            p.push(format!("session_id == {}", hql_string(s)));
        }
        p
    }

    fn query(&self, extra: &str, rest: &str) -> String {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!(" and {extra}")
        };
        format!("requests\n| where {}{extra}\n{rest}", self.predicate())
    }
}

/// Runs `src` for `org` (with `now()` at the range's end) and returns its rows as objects.
pub async fn rows(
    engine: &QueryEngine,
    org: &str,
    src: &str,
    now: i64,
) -> Result<Vec<Row>, QueryError> {
    let out = engine.hql_at(org, src, now).await?;
    output_rows(&out)
}

fn output_rows(out: &crate::HqlOutput) -> Result<Vec<Row>, QueryError> {
    let json = format::to_json(&out.schema, &out.batches)?;
    let names: Vec<String> = json["columns"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut result = Vec::new();
    if let Some(rows) = json["rows"].as_array() {
        for r in rows {
            let mut m = Map::new();
            if let Some(vals) = r.as_array() {
                for (n, v) in names.iter().zip(vals) {
                    m.insert(n.clone(), v.clone());
                }
            }
            result.push(m);
        }
    }
    Ok(result)
}

fn num(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn ratio(a: f64, b: f64) -> Value {
    if b > 0.0 { json!(a / b) } else { Value::Null }
}

/// Decimal text (as HQL formats `decimal(38,18)`) as an integer of 10^-18 units.
fn dec_units(s: &str) -> Option<i128> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 18 {
        return None;
    }
    let v = int
        .parse::<i128>()
        .ok()?
        .checked_mul(10i128.pow(18))?
        .checked_add(format!("{frac:0<18}").parse::<i128>().ok()?)?;
    Some(if neg { -v } else { v })
}

fn dec_text(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let u = units.unsigned_abs();
    format!("{sign}{}.{:018}", u / 10u128.pow(18), u % 10u128.pow(18))
}

/// A decimal value of a result (its text) in 10^-18 units; `None` for null or non-decimals.
fn dec_of(v: Option<&Value>) -> Option<i128> {
    v.and_then(Value::as_str).and_then(dec_units)
}

/// The exact sum of decimal values as decimal text; null when none of them is a decimal (as
/// `sum()` of nulls is null).
fn dec_sum<'a>(values: impl IntoIterator<Item = Option<&'a Value>>) -> Value {
    values
        .into_iter()
        .filter_map(dec_of)
        .reduce(i128::saturating_add)
        .map_or(Value::Null, |u| json!(dec_text(u)))
}

/// `units × n / d`, rounded half away from zero to a whole unit (10^-18); `None` on overflow or
/// `d <= 0`. Splitting `units` by `d` first keeps the products far inside `i128`.
fn dec_mul_div(units: i128, n: i64, d: i64) -> Option<i128> {
    if d <= 0 {
        return None;
    }
    let (n, d) = (i128::from(n), i128::from(d));
    let whole = (units / d).checked_mul(n)?;
    let part = (units % d).checked_mul(n)?;
    let (q, r) = (part / d, part % d);
    let rounded = if 2 * r.abs() >= d { q + r.signum() } else { q };
    whole.checked_add(rounded)
}

/// Sums the columns of `rows` (ints as ints, decimal text exactly, nulls skipped), leaving out
/// `skip`: a total over groups, exact like the roll-up's own sums.
fn sum_rows(rows: &[Row], skip: &[&str]) -> Row {
    let mut ints: BTreeMap<String, i64> = BTreeMap::new();
    let mut decs: BTreeMap<String, i128> = BTreeMap::new();
    for r in rows {
        for (k, v) in r {
            if skip.contains(&k.as_str()) {
                continue;
            }
            match v {
                Value::Number(n) => *ints.entry(k.clone()).or_default() += n.as_i64().unwrap_or(0),
                Value::String(t) => {
                    if let Some(u) = dec_units(t) {
                        let e = decs.entry(k.clone()).or_default();
                        *e = e.saturating_add(u);
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = Map::new();
    for (k, v) in ints {
        out.insert(k, json!(v));
    }
    for (k, v) in decs {
        out.insert(k, json!(dec_text(v)));
    }
    out
}

/// Columns `requests` has (optional columns such as `cost_saved_usd` or `attempts` are shown
/// when another part of Loupe adds them).
pub async fn columns(engine: &QueryEngine) -> Result<Vec<String>, QueryError> {
    let ctx = engine.session().await?;
    let t = ctx.table("requests").await?;
    Ok(t.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

/// Optional column holding what the gateway cache saved, when present.
const COST_SAVED: &str = "cost_saved_usd";
/// Optional column holding the gateway's attempts (retries / fallbacks), when present.
const ATTEMPTS: &[&str] = &["attempts", "attempt_count"];

const TOTALS: &str = "requests = count(), errors = countif(status >= 400), cost_usd = sum(cost_usd), \
    prompt_tokens = sum(prompt_tokens), completion_tokens = sum(completion_tokens), \
    cache_read_tokens = sum(cache_read_tokens), total_tokens = sum(total_tokens), \
    cache_hits = countif(cache_hit)";

/// Whether an endpoint computes latency percentiles (raw rows) besides its roll-up numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Percentiles {
    /// Both (the default).
    #[default]
    Include,
    /// Only the roll-up numbers: the fast first paint of a dashboard.
    Exclude,
    /// Only the percentiles.
    Only,
}

impl std::str::FromStr for Percentiles {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "true" => Ok(Percentiles::Include),
            "false" => Ok(Percentiles::Exclude),
            "only" => Ok(Percentiles::Only),
            _ => Err(format!(
                "percentiles must be true, false or only (found {s:?})"
            )),
        }
    }
}

/// The value a log-scale histogram bucket ([`log_bucket_hql`], 200 per decade) stands for: its
/// midpoint. A bucket is 1.16 % wide, so a percentile read from the histogram is within 0.6 % of
/// the exact value. The histogram roll-ups store the same buckets.
fn hist_value(bucket: i64) -> f64 {
    10f64.powf((bucket as f64 + 0.5) / HIST_PER_DECADE as f64) - 1.0
}

/// Runs `src` only if a roll-up answers it (see [`QueryEngine::hql_from_rollup`]), as rows.
async fn rollup_rows(
    engine: &QueryEngine,
    org: &str,
    src: &str,
    now: i64,
) -> Result<Option<Vec<Row>>, QueryError> {
    match engine.hql_from_rollup(org, src, now).await? {
        Some(out) => Ok(Some(output_rows(&out)?)),
        None => Ok(None),
    }
}

/// A histogram of one column: bucket → (rows, sum of the column).
#[derive(Debug, Default, Clone)]
struct Hist(BTreeMap<i64, (i64, f64)>);

impl Hist {
    fn add(&mut self, bucket: i64, n: i64, sum: f64) {
        let e = self.0.entry(bucket).or_default();
        e.0 += n;
        e.1 += sum;
    }

    fn count(&self) -> i64 {
        self.0.values().map(|v| v.0).sum()
    }

    /// The `q` quantile (0..1), as the midpoint of the bucket holding that rank.
    fn quantile(&self, q: f64) -> Value {
        let total = self.count();
        if total == 0 {
            return Value::Null;
        }
        let rank = ((q * total as f64).ceil() as i64).clamp(1, total);
        let mut seen = 0;
        for (b, (n, _)) in &self.0 {
            seen += n;
            if seen >= rank {
                return json!((hist_value(*b) * 100.0).round() / 100.0);
            }
        }
        Value::Null
    }

    fn mean(&self) -> Value {
        let n = self.count();
        let s: f64 = self.0.values().map(|v| v.1).sum();
        ratio(s, n as f64)
    }
}

/// The time range split so that raw scans read as little as possible: whole UTC days are
/// selected by the `day` partition column alone (no per-row time filter), the partial days at
/// the edges by `created_at`.
fn raw_slices(f: &Filter) -> Vec<String> {
    const DAY: i64 = 24 * HOUR;
    let first_day = f.from.div_euclid(DAY) * DAY + if f.from % DAY == 0 { 0 } else { DAY };
    let last_day = f.to.div_euclid(DAY) * DAY;
    let mut filters = Vec::new();
    let time = format!(
        "created_at >= {} and created_at < {}",
        hql_datetime(f.from),
        hql_datetime(f.to)
    );
    let rest = f.conditions().join(" and ");
    let with = |p: String| {
        if rest.is_empty() {
            p
        } else {
            format!("{p} and {rest}")
        }
    };
    if first_day >= last_day {
        filters.push(with(time));
        return filters;
    }
    if f.from < first_day {
        filters.push(with(format!(
            "created_at >= {} and created_at < {}",
            hql_datetime(f.from),
            hql_datetime(first_day)
        )));
    }
    filters.push(with(format!(
        "day >= {} and day < {}",
        hql_datetime(first_day),
        hql_datetime(last_day)
    )));
    if last_day < f.to {
        filters.push(with(format!(
            "created_at >= {} and created_at < {}",
            hql_datetime(last_day),
            hql_datetime(f.to)
        )));
    }
    filters
}

/// Histograms of `column` over the filter's rows, per time bucket (`bucket_secs`) or overall
/// (key 0): from the column's histogram roll-up when it answers the query, else computed over
/// the raw slices in parallel and merged.
async fn histograms(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    column: &str,
    bucket_secs: Option<i64>,
) -> Result<BTreeMap<i64, Hist>, QueryError> {
    let by_t = bucket_secs
        .map(|b| format!("t = bin(created_at, {b}s), "))
        .unwrap_or_default();
    let summarize = format!(
        "| summarize n = count(), s = sum({column}) by {by_t}b = {}",
        log_bucket_hql(column)
    );
    // Rows where the column is null fall into the null bucket, which is skipped below.
    let outputs = match engine
        .hql_from_rollup(org, &f.query("", &summarize), f.to)
        .await?
    {
        Some(out) => vec![out],
        None => {
            let queries: Vec<String> = raw_slices(f)
                .into_iter()
                .map(|p| format!("requests\n| where {p} and {column} is not null\n{summarize}"))
                .collect();
            futures::future::try_join_all(queries.iter().map(|q| engine.hql_at(org, q, f.to)))
                .await?
        }
    };
    let mut out: BTreeMap<i64, Hist> = BTreeMap::new();
    for o in &outputs {
        hist_rows(o, bucket_secs.is_some(), &mut out)?;
    }
    Ok(out)
}

/// Adds the rows `(t, b, n, s)` of a histogram query's answer to `out` (key `t`, or 0 without
/// one), read straight from its Arrow columns: a time series has one row per time bucket and
/// histogram bucket (79 k rows for 30 days in 6-hour buckets), too many to go through JSON.
fn hist_rows(
    o: &crate::HqlOutput,
    with_t: bool,
    out: &mut BTreeMap<i64, Hist>,
) -> Result<(), QueryError> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
    for batch in &o.batches {
        let column = |name: &str, ty: &DataType| -> Result<_, QueryError> {
            let c = batch.column_by_name(name).ok_or_else(|| {
                QueryError::Storage(format!("histogram answer lacks column {name}"))
            })?;
            Ok(cast(c, ty)?)
        };
        let t = if with_t {
            Some(column("t", &DataType::Int64)?)
        } else {
            None
        };
        let (b, n, s) = (
            column("b", &DataType::Int64)?,
            column("n", &DataType::Int64)?,
            column("s", &DataType::Float64)?,
        );
        let t = t.as_ref().map(|t| t.as_primitive::<Int64Type>());
        let (b, n, s) = (
            b.as_primitive::<Int64Type>(),
            n.as_primitive::<Int64Type>(),
            s.as_primitive::<Float64Type>(),
        );
        for i in 0..batch.num_rows() {
            if b.is_null(i) || t.is_some_and(|t| t.is_null(i)) {
                continue;
            }
            let key = t.map_or(0, |t| t.value(i));
            let sum = if s.is_null(i) { 0.0 } else { s.value(i) };
            let count = if n.is_null(i) { 0 } else { n.value(i) };
            out.entry(key).or_default().add(b.value(i), count, sum);
        }
    }
    Ok(())
}

/// Summary cards: volume, errors, cost, tokens, cache (from the roll-up), and latency and TTFT
/// percentiles (from raw rows, unless `pct` says otherwise).
pub async fn summary(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    pct: Percentiles,
) -> Result<Value, QueryError> {
    let mut out = Map::new();
    if pct != Percentiles::Only {
        let cols = columns(engine).await?;
        let saved = if cols.iter().any(|c| c == COST_SAVED) {
            format!(", cost_saved_usd = sum({COST_SAVED})")
        } else {
            String::new()
        };
        // One roll-up query; the cache-miss split gives the average cost of a miss.
        let q = f.query("", &format!("| summarize {TOTALS}{saved} by cache_hit"));
        let groups = rows(engine, org, &q, f.to).await?;
        out = sum_rows(&groups, &["cache_hit"]);
        for c in ["requests", "errors", "cache_hits"] {
            out.entry(c).or_insert(json!(0));
        }
        out.entry("cost_usd").or_insert(Value::Null);
        let misses: Vec<Row> = groups
            .iter()
            .filter(|r| r.get("cache_hit") == Some(&json!(false)))
            .cloned()
            .collect();
        let requests = num(out.get("requests"));
        let errors = num(out.get("errors"));
        let cost = num(out.get("cost_usd"));
        let hits = num(out.get("cache_hits"));
        out.insert("error_rate".into(), ratio(errors, requests));
        out.insert("avg_cost_usd".into(), ratio(cost, requests));
        out.insert("cache_hit_rate".into(), ratio(hits, requests));
        let avg_miss = misses
            .first()
            .map(|m| ratio(num(m.get("cost_usd")), num(m.get("requests"))))
            .unwrap_or(Value::Null);
        let estimated = !out.contains_key(COST_SAVED);
        if estimated {
            out.insert(
                COST_SAVED.into(),
                estimated_saving(int(out.get("cache_hits")), misses.first()),
            );
        }
        out.insert("avg_miss_cost_usd".into(), avg_miss);
        out.insert("cost_saved_estimated".into(), json!(estimated));
    }
    if pct != Percentiles::Exclude {
        let (lat, ttft) = futures::try_join!(
            histograms(engine, org, f, "latency_ms", None),
            histograms(engine, org, f, "ttft_ms", None)
        )?;
        let (lat, ttft) = (
            lat.get(&0).cloned().unwrap_or_default(),
            ttft.get(&0).cloned().unwrap_or_default(),
        );
        out.insert("latency_p50_ms".into(), lat.quantile(0.50));
        out.insert("latency_p95_ms".into(), lat.quantile(0.95));
        out.insert("latency_p99_ms".into(), lat.quantile(0.99));
        out.insert("avg_latency_ms".into(), lat.mean());
        out.insert("ttft_p50_ms".into(), ttft.quantile(0.50));
        out.insert("ttft_p95_ms".into(), ttft.quantile(0.95));
    }
    out.insert("from".into(), json!(rfc3339(f.from)));
    out.insert("to".into(), json!(rfc3339(f.to)));
    Ok(Value::Object(out))
}

/// What cache hits saved, estimated as hits × the average cost of a miss, exactly (decimal text
/// rounded to 18 decimals): zero without hits, null when no miss has a price to go by.
fn estimated_saving(hits: i64, misses: Option<&Row>) -> Value {
    if hits == 0 {
        return json!(dec_text(0));
    }
    misses
        .and_then(|m| dec_mul_div(dec_of(m.get("cost_usd"))?, hits, int(m.get("requests"))))
        .map_or(Value::Null, |u| json!(dec_text(u)))
}

/// Bucket sizes a time series may use (seconds).
const BUCKETS: &[i64] = &[
    60, 300, 900, 1_800, 3_600, 10_800, 21_600, 43_200, 86_400, 604_800,
];
/// The most points an automatic time series has.
pub const MAX_POINTS: i64 = 200;

/// The smallest bucket that gives at most [`MAX_POINTS`] points over the range (seconds).
pub fn auto_bucket(from: i64, to: i64) -> i64 {
    let span = (to - from).max(1);
    BUCKETS
        .iter()
        .copied()
        .find(|b| ceil_div(span, b * MICROS_PER_SEC) <= MAX_POINTS)
        .unwrap_or(604_800)
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// Requests, errors, cost, tokens (roll-up) and latency percentiles (raw rows) per bucket;
/// empty buckets are zeros (percentiles null).
pub async fn timeseries(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    bucket_secs: Option<i64>,
    pct: Percentiles,
) -> Result<Value, QueryError> {
    let bucket = bucket_secs.unwrap_or_else(|| auto_bucket(f.from, f.to));
    let b = bucket.max(1) * MICROS_PER_SEC;
    let points = ceil_div((f.to - f.from).max(0), b) + 1;
    if bucket <= 0 || points > 5_000 {
        return Err(QueryError::InvalidInput(format!(
            "bucket={bucket}s gives {points} points over the range: use a bucket of at least {}s",
            (f.to - f.from) / MICROS_PER_SEC / 5_000 + 1
        )));
    }
    let counts_q = f.query(
        "",
        &format!(
            "| summarize requests = count(), errors = countif(status >= 400), cost_usd = sum(cost_usd), \
             total_tokens = sum(total_tokens) by t = bin(created_at, {bucket}s)"
        ),
    );
    let counts = async {
        if pct == Percentiles::Only {
            Ok(Vec::new())
        } else {
            rows(engine, org, &counts_q, f.to).await
        }
    };
    let lat = async {
        if pct == Percentiles::Exclude {
            Ok(BTreeMap::new())
        } else {
            histograms(engine, org, f, "latency_ms", Some(bucket)).await
        }
    };
    let (counts, lat) = futures::try_join!(counts, lat)?;
    let mut by_t: BTreeMap<i64, Row> = BTreeMap::new();
    for r in counts {
        if let Some(t) = micros_of(r.get("t")) {
            by_t.insert(t, r);
        }
    }
    let first = f.from.div_euclid(b) * b;
    let mut out = Vec::new();
    let mut t = first;
    while t < f.to {
        let mut p = Map::new();
        p.insert("t".into(), json!(rfc3339(t)));
        if pct != Percentiles::Only {
            point_counts(&mut p, by_t.remove(&t).as_ref());
        }
        if pct != Percentiles::Exclude {
            let h = lat.get(&t).cloned().unwrap_or_default();
            p.insert("latency_p50_ms".into(), h.quantile(0.50));
            p.insert("latency_p95_ms".into(), h.quantile(0.95));
            p.insert("latency_p99_ms".into(), h.quantile(0.99));
        }
        out.push(Value::Object(p));
        t += b;
    }
    Ok(json!({ "bucket_secs": bucket, "points": out }))
}

/// The roll-up numbers of one time-series point from its bucket's group (`None`: no rows, all
/// zero). The cost is the exact decimal text of the bucket's `sum(cost_usd)`, never a float:
/// null when no row of the bucket has a price.
fn point_counts(p: &mut Row, r: Option<&Row>) {
    let r = match r {
        Some(r) => r,
        None => {
            for c in ["requests", "errors", "total_tokens"] {
                p.insert(c.into(), json!(0));
            }
            p.insert("cost_usd".into(), json!(dec_text(0)));
            return;
        }
    };
    p.insert("requests".into(), json!(int(r.get("requests"))));
    p.insert("errors".into(), json!(int(r.get("errors"))));
    p.insert(
        "cost_usd".into(),
        dec_of(r.get("cost_usd")).map_or(Value::Null, |u| json!(dec_text(u))),
    );
    p.insert("total_tokens".into(), json!(int(r.get("total_tokens"))));
}

/// What a breakdown groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dimension {
    Model,
    Provider,
    User,
    Status,
    Property(String),
}

impl std::str::FromStr for Dimension {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "model" => Dimension::Model,
            "provider" => Dimension::Provider,
            "user" => Dimension::User,
            "status" => Dimension::Status,
            _ => match s.strip_prefix("property.") {
                Some(k) if !k.is_empty() => Dimension::Property(k.to_string()),
                _ => {
                    return Err(format!(
                        "by must be model, provider, user, status or property.<key> (found {s:?})"
                    ));
                }
            },
        })
    }
}

impl Dimension {
    fn expr(&self) -> String {
        match self {
            Dimension::Model => "model".into(),
            Dimension::Provider => "provider".into(),
            Dimension::User => "user_id".into(),
            Dimension::Status => "status".into(),
            Dimension::Property(k) => format!("properties[{}]", hql_string(k)),
        }
    }
}

/// The metric a breakdown ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Requests,
    Cost,
    Tokens,
    Errors,
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "requests" => Metric::Requests,
            "cost" => Metric::Cost,
            "tokens" => Metric::Tokens,
            "errors" => Metric::Errors,
            _ => {
                return Err(format!(
                    "metric must be requests, cost, tokens or errors (found {s:?})"
                ));
            }
        })
    }
}

impl Metric {
    fn column(self) -> &'static str {
        match self {
            Metric::Requests => "requests",
            Metric::Cost => "cost_usd",
            Metric::Tokens => "total_tokens",
            Metric::Errors => "errors",
        }
    }
}

const GROUP: &str = "requests = count(), errors = countif(status >= 400), cost_usd = sum(cost_usd), \
    total_tokens = sum(total_tokens)";

/// The top `top` groups by `metric`, and everything else summed as `other`.
pub async fn breakdown(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    dim: &Dimension,
    metric: Metric,
    top: usize,
) -> Result<Value, QueryError> {
    let m = metric.column();
    // Roll-up dimensions have few values: one query for all groups, the top cut here. Others
    // (users, properties) may have millions: the top N and the totals as two queries.
    let few = matches!(
        dim,
        Dimension::Model | Dimension::Provider | Dimension::Status
    );
    let take = if few {
        String::new()
    } else {
        format!("\n| take {top}")
    };
    let q = f.query(
        "",
        &format!(
            "| summarize {GROUP} by key = {}\n| sort by {m} desc, key asc nulls last{take}",
            dim.expr()
        ),
    );
    let (mut groups, totals) = if few {
        let all = rows(engine, org, &q, f.to).await?;
        let totals = sum_rows(&all, &["key"]);
        (all, totals)
    } else {
        let totals_q = f.query("", &format!("| summarize {GROUP}"));
        let top_groups = async {
            match sliced_groups(engine, org, f, dim, metric, top).await {
                Ok(Some(g)) => Ok(g),
                // One slice only, or too many groups to merge: one query with `take`.
                Ok(None) | Err(QueryError::TooManyRows(_)) => rows(engine, org, &q, f.to).await,
                Err(e) => Err(e),
            }
        };
        let (groups, totals) = futures::try_join!(top_groups, rows(engine, org, &totals_q, f.to))?;
        (groups, totals.into_iter().next().unwrap_or_default())
    };
    groups.truncate(top);
    let other = other_bucket(&totals, &groups);
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|mut g| {
            let e = num(g.get("errors"));
            let n = num(g.get("requests"));
            g.insert("error_rate".into(), ratio(e, n));
            Value::Object(g)
        })
        .collect();
    let other = (int(other.get("requests")) > 0).then_some(Value::Object(other));
    Ok(json!({ "groups": groups, "other": other, "totals": totals }))
}

/// What `groups` leave out of `totals`: counts, and the cost exactly (decimal text of
/// totals − groups, null when the totals have no cost).
fn other_bucket(totals: &Row, groups: &[Row]) -> Row {
    let mut other = Map::new();
    for c in ["requests", "errors", "total_tokens"] {
        let rest = int(totals.get(c)) - groups.iter().map(|g| int(g.get(c))).sum::<i64>();
        other.insert(c.into(), json!(rest));
    }
    let rest = dec_of(totals.get("cost_usd")).map(|total| {
        let shown = groups
            .iter()
            .filter_map(|g| dec_of(g.get("cost_usd")))
            .fold(0, i128::saturating_add);
        json!(dec_text(total.saturating_sub(shown)))
    });
    other.insert("cost_usd".into(), rest.unwrap_or(Value::Null));
    other
}

/// The top `top` groups of a high-cardinality dimension by `metric`: from a roll-up when one
/// answers (users), else every group computed per raw slice (whole days without a per-row time
/// filter) and merged, sorted. `None` when neither applies (the range is one slice).
async fn sliced_groups(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    dim: &Dimension,
    metric: Metric,
    top: usize,
) -> Result<Option<Vec<Row>>, QueryError> {
    let q = f.query(
        "",
        &format!(
            "| summarize {GROUP} by key = {}\n| sort by {} desc, key asc nulls last\n| take {top}",
            dim.expr(),
            metric.column()
        ),
    );
    if *dim == Dimension::User
        && let Some(groups) = rollup_rows(engine, org, &q, f.to).await?
    {
        return Ok(Some(groups));
    }
    let slices = raw_slices(f);
    if slices.len() < 2 {
        return Ok(None);
    }
    let queries: Vec<String> = slices
        .iter()
        .map(|p| {
            format!(
                "requests\n| where {p}\n| summarize {GROUP} by key = {}",
                dim.expr()
            )
        })
        .collect();
    let results =
        futures::future::try_join_all(queries.iter().map(|q| rows(engine, org, q, f.to))).await?;
    let mut by_key: BTreeMap<String, (Value, Vec<Row>)> = BTreeMap::new();
    for r in results.into_iter().flatten() {
        let key = r.get("key").cloned().unwrap_or(Value::Null);
        by_key
            .entry(key.to_string())
            .or_insert_with(|| (key, Vec::new()))
            .1
            .push(r);
    }
    let mut merged: Vec<Row> = by_key
        .into_values()
        .map(|(key, parts)| {
            let mut m = sum_rows(&parts, &["key"]);
            m.insert("key".into(), key);
            m
        })
        .collect();
    let m = metric.column();
    let weight = |r: &Row| -> i128 {
        match r.get(m) {
            Some(Value::String(t)) => dec_units(t).unwrap_or(i128::MIN),
            Some(v) => i128::from(v.as_i64().unwrap_or(0)),
            None => i128::MIN,
        }
    };
    merged.sort_by(|a, b| {
        weight(b).cmp(&weight(a)).then_with(|| {
            let (ka, kb) = (a.get("key"), b.get("key"));
            match (ka, kb) {
                (Some(Value::Null), Some(Value::Null)) => std::cmp::Ordering::Equal,
                (Some(Value::Null), _) => std::cmp::Ordering::Greater,
                (_, Some(Value::Null)) => std::cmp::Ordering::Less,
                _ => ka.map(Value::to_string).cmp(&kb.map(Value::to_string)),
            }
        })
    });
    Ok(Some(merged))
}

/// How users are sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSort {
    Cost,
    Requests,
    LastSeen,
    ErrorRate,
}

impl std::str::FromStr for UserSort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "cost" => UserSort::Cost,
            "requests" => UserSort::Requests,
            "last_seen" => UserSort::LastSeen,
            "error_rate" => UserSort::ErrorRate,
            _ => {
                return Err(format!(
                    "sort must be cost, requests, last_seen or error_rate (found {s:?})"
                ));
            }
        })
    }
}

/// Offsets past this are refused: page with narrower filters instead.
pub const MAX_OFFSET: usize = 10_000;

/// Users with requests, cost, latency, error rate, models used, first and last seen.
pub async fn users(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    sort: UserSort,
    limit: usize,
    offset: usize,
) -> Result<Value, QueryError> {
    let s = match sort {
        UserSort::Cost => "cost_usd",
        UserSort::Requests => "requests",
        UserSort::LastSeen => "last_seen",
        UserSort::ErrorRate => "error_rate",
    };
    let q = f.query(
        "isnotempty(user_id)",
        &format!(
            "| summarize requests = count(), cost_usd = sum(cost_usd), avg_latency_ms = avg(latency_ms), \
             errors = countif(status >= 400), error_rate = ratio(status >= 400), models = dcount(model), \
             first_seen = min(created_at), last_seen = max(created_at) by user_id\n\
             | sort by {s} desc, user_id asc\n| take {}",
            offset + limit + 1
        ),
    );
    let mut page: Vec<Row> = rows(engine, org, &q, f.to)
        .await?
        .into_iter()
        .skip(offset)
        .collect();
    let has_more = page.len() > limit;
    page.truncate(limit);
    if !page.is_empty() {
        let ids: Vec<String> = page
            .iter()
            .filter_map(|r| r.get("user_id").and_then(Value::as_str).map(String::from))
            .collect();
        let mq = f.query(
            &format!("user_id in ({})", list(&ids)),
            "| summarize requests = count() by user_id, model\n| sort by requests desc, model asc",
        );
        let mut models: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for r in rows(engine, org, &mq, f.to).await? {
            if let (Some(u), Some(m)) = (
                r.get("user_id").and_then(Value::as_str),
                r.get("model").cloned(),
            ) {
                models.entry(u.to_string()).or_default().push(m);
            }
        }
        for r in &mut page {
            let u = r
                .get("user_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            r.insert(
                "models_used".into(),
                Value::Array(models.remove(&u).unwrap_or_default()),
            );
        }
    }
    Ok(json!({ "users": page, "has_more": has_more, "offset": offset, "limit": limit }))
}

fn micros_of(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_micros())
}

/// Sessions (most recent first) with requests, cost, duration, users and errors.
pub async fn sessions(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    limit: usize,
    offset: usize,
) -> Result<Value, QueryError> {
    let q = f.query(
        "isnotempty(session_id)",
        &format!(
            "| summarize requests = count(), cost_usd = sum(cost_usd), errors = countif(status >= 400), \
             users = dcount(user_id), session_name = max(session_name), started = min(created_at), \
             ended = max(completed_at) by session_id\n\
             | sort by started desc, session_id asc\n| take {}",
            offset + limit + 1
        ),
    );
    let mut page: Vec<Row> = rows(engine, org, &q, f.to)
        .await?
        .into_iter()
        .skip(offset)
        .collect();
    let has_more = page.len() > limit;
    page.truncate(limit);
    for r in &mut page {
        let d = match (micros_of(r.get("started")), micros_of(r.get("ended"))) {
            (Some(a), Some(b)) => json!((b - a) as f64 / 1e3),
            _ => Value::Null,
        };
        r.insert("duration_ms".into(), d);
    }
    Ok(json!({ "sessions": page, "has_more": has_more, "offset": offset, "limit": limit }))
}

/// Most requests one session tree holds.
pub const MAX_SESSION_REQUESTS: usize = 10_000;

#[derive(Default)]
struct Node {
    requests: Vec<Value>,
    children: BTreeMap<String, Node>,
    order: Vec<String>,
}

impl Node {
    fn to_json(&self, name: &str, path: &str) -> Value {
        let mut children: Vec<Value> = self
            .order
            .iter()
            .filter_map(|seg| {
                let p = format!("{}/{seg}", path.trim_end_matches('/'));
                self.children.get(seg).map(|c| c.to_json(seg, &p))
            })
            .collect();
        children.extend(self.requests.iter().cloned());
        // Children in time order.
        children.sort_by_key(|c| micros_of(c.get("start")).unwrap_or(i64::MAX));
        let start = children
            .iter()
            .filter_map(|c| micros_of(c.get("start")))
            .min();
        let end = children
            .iter()
            .filter_map(|c| micros_of(c.get("end")))
            .max();
        let cost = dec_sum(children.iter().map(|c| c.get("cost_usd")));
        let int = |k: &str| -> i64 {
            children
                .iter()
                .filter_map(|c| c.get(k).and_then(Value::as_i64))
                .sum()
        };
        let (count, errors) = (int("request_count"), int("errors"));
        json!({
            "kind": "path",
            "name": name,
            "path": path,
            "start": start.map(rfc3339),
            "end": end.map(rfc3339),
            "duration_ms": match (start, end) { (Some(a), Some(b)) => json!((b - a) as f64 / 1e3), _ => Value::Null },
            "cost_usd": cost,
            "request_count": count,
            "errors": errors,
            "children": children,
        })
    }
}

/// One session as a tree: a node per `session_path` segment, requests as leaves.
pub async fn session(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    id: &str,
) -> Result<Value, QueryError> {
    let mut f = f.clone();
    f.session = Some(id.to_string());
    let q = f.query(
        "",
        &format!(
            "| project request_id, created_at, completed_at, latency_ms, provider, model, status, error_type, \
             cost_usd, total_tokens, user_id, session_path, session_name, trace_id\n\
             | sort by created_at asc, request_id asc\n| take {}",
            MAX_SESSION_REQUESTS + 1
        ),
    );
    let mut reqs = rows(engine, org, &q, f.to).await?;
    let truncated = reqs.len() > MAX_SESSION_REQUESTS;
    reqs.truncate(MAX_SESSION_REQUESTS);
    let (traces, spans_truncated) = session_spans(engine, org, &f, id, &reqs).await?;
    if reqs.is_empty() && traces.is_empty() {
        return Err(QueryError::NotFound(format!(
            "no requests or spans of session {id:?} in the time range: widen from/to"
        )));
    }
    let name = reqs.iter().find_map(|r| {
        r.get("session_name")
            .and_then(Value::as_str)
            .map(String::from)
    });
    let mut root = Node::default();
    for r in reqs {
        let path = r
            .get("session_path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut node = &mut root;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            if !node.children.contains_key(seg) {
                node.order.push(seg.to_string());
            }
            node = node.children.entry(seg.to_string()).or_default();
        }
        let start = r.get("created_at").cloned().unwrap_or(Value::Null);
        let end = r.get("completed_at").cloned().unwrap_or(Value::Null);
        let err = r
            .get("status")
            .and_then(Value::as_i64)
            .is_some_and(|s| s >= 400);
        let mut leaf = Map::new();
        leaf.insert("kind".into(), json!("request"));
        leaf.insert("start".into(), start);
        leaf.insert("end".into(), end);
        leaf.insert("request_count".into(), json!(1));
        leaf.insert("errors".into(), json!(u8::from(err)));
        for (k, v) in r {
            if !matches!(k.as_str(), "created_at" | "completed_at" | "session_name") {
                leaf.insert(k, v);
            }
        }
        node.requests.push(Value::Object(leaf));
    }
    let mut tree = root.to_json("", "/");
    tree["kind"] = json!("session");
    Ok(json!({
        "session_id": id,
        "session_name": name,
        "truncated": truncated,
        "tree": tree,
        "traces": traces,
        "spans_truncated": spans_truncated,
    }))
}

/// Most spans one session's traces show.
pub const MAX_SESSION_SPANS: usize = 10_000;
/// Deepest level of a session's span tree; deeper spans are listed flat at this level.
pub const MAX_SPAN_DEPTH: usize = 64;
/// Most traces (of the session's requests) whose spans are looked up by trace id.
const MAX_SESSION_TRACES: usize = 200;

/// The OpenTelemetry spans of a session as one tree per trace: spans whose `session_id` is the
/// session's, and every span of a trace one of its requests belongs to. A span whose parent is
/// not among them is a root; an LLM span carries its request's model, cost, tokens and status.
async fn session_spans(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    id: &str,
    reqs: &[Row],
) -> Result<(Vec<Value>, bool), QueryError> {
    if !engine.has_spans() {
        return Ok((Vec::new(), false));
    }
    let mut trace_ids: Vec<String> = reqs
        .iter()
        .filter_map(|r| r.get("trace_id").and_then(Value::as_str).map(String::from))
        .collect();
    trace_ids.sort();
    trace_ids.dedup();
    trace_ids.truncate(MAX_SESSION_TRACES);
    let mut linked = format!("session_id == {}", hql_string(id));
    if !trace_ids.is_empty() {
        linked = format!("{linked} or trace_id in ({})", list(&trace_ids));
    }
    let q = format!(
        "spans\n| where created_at >= {} and created_at < {} and ({linked})\n\
         | sort by created_at asc, span_id asc\n\
         | project span_id, parent_span_id, trace_id, name, kind, status, status_message, created_at, \
         completed_at, duration_ms, is_llm, request_id, service_name\n| take {}",
        hql_datetime(f.from),
        hql_datetime(f.to),
        MAX_SESSION_SPANS + 1
    );
    let mut spans = rows(engine, org, &q, f.to).await?;
    let truncated = spans.len() > MAX_SESSION_SPANS;
    spans.truncate(MAX_SESSION_SPANS);
    let by_request: HashMap<&str, &Row> = reqs
        .iter()
        .filter_map(|r| Some((r.get("request_id")?.as_str()?, r)))
        .collect();
    Ok((span_forest(spans, &by_request), truncated))
}

/// Spans (in start order) as trees, without recursion (traces can be deep) and safe against
/// parent cycles in the input (a span on a cycle becomes a root).
fn span_forest(spans: Vec<Row>, requests: &HashMap<&str, &Row>) -> Vec<Value> {
    let key = |r: &Row, col: &str| -> Option<(String, String)> {
        Some((
            r.get("trace_id")?.as_str()?.to_owned(),
            r.get(col)?.as_str()?.to_owned(),
        ))
    };
    let index: HashMap<(String, String), usize> = spans
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((key(r, "span_id")?, i)))
        .collect();
    let n = spans.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut has_parent = vec![false; n];
    for (i, r) in spans.iter().enumerate() {
        if let Some(&p) = key(r, "parent_span_id").and_then(|k| index.get(&k))
            && p != i
        {
            children[p].push(i);
            has_parent[i] = true;
        }
    }
    let mut nodes: Vec<Option<Map<String, Value>>> = spans
        .into_iter()
        .map(|mut r| {
            // `kind` tells tree nodes apart (session, path, request, span); the OTel span kind
            // (client, internal, …) becomes `span_kind`.
            if let Some(k) = r.insert("kind".into(), json!("span")) {
                r.insert("span_kind".into(), k);
            }
            if let Some(v) = r.remove("created_at") {
                r.insert("start".into(), v);
            }
            if let Some(v) = r.remove("completed_at") {
                r.insert("end".into(), v);
            }
            if let Some(req) = r
                .get("request_id")
                .and_then(Value::as_str)
                .and_then(|id| requests.get(id))
            {
                for col in [
                    "model",
                    "provider",
                    "cost_usd",
                    "total_tokens",
                    "status",
                    "error_type",
                ] {
                    if let Some(v) = req.get(col) {
                        let name = if col == "status" { "http_status" } else { col };
                        r.insert(name.into(), v.clone());
                    }
                }
            }
            Some(r)
        })
        .collect();
    // Pre-order over every root, then over whatever a cycle kept unreachable. Spans deeper than
    // MAX_SPAN_DEPTH hang, flattened, under their ancestor at that depth (JSON that deep would
    // be unreadable and recursive to print).
    let mut visited = vec![false; n];
    let mut parent_of: Vec<Option<usize>> = vec![None; n];
    let mut depth = vec![0usize; n];
    let mut order = Vec::with_capacity(n);
    let mut roots = Vec::new();
    let starts: Vec<usize> = (0..n).filter(|&i| !has_parent[i]).chain(0..n).collect();
    for start in starts {
        if visited[start] {
            continue;
        }
        roots.push(start);
        visited[start] = true;
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            order.push(i);
            for &c in children[i].iter().rev() {
                if visited[c] {
                    continue;
                }
                visited[c] = true;
                let (p, d) = if depth[i] < MAX_SPAN_DEPTH {
                    (i, depth[i] + 1)
                } else {
                    if let Some(node) = nodes[c].as_mut() {
                        node.insert("flattened".into(), json!(true));
                    }
                    (parent_of[i].unwrap_or(i), depth[i])
                };
                parent_of[c] = Some(p);
                depth[c] = d;
                stack.push(c);
            }
        }
    }
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &i in &order {
        if let Some(p) = parent_of[i] {
            kids[p].push(i);
        }
    }
    let mut built: Vec<Option<Value>> = vec![None; n];
    for &i in order.iter().rev() {
        let mut list: Vec<Value> = kids[i].iter().filter_map(|&c| built[c].take()).collect();
        list.sort_by_key(|c| micros_of(c.get("start")).unwrap_or(i64::MAX));
        if let Some(mut node) = nodes[i].take() {
            node.insert("children".into(), Value::Array(list));
            built[i] = Some(Value::Object(node));
        }
    }
    roots.into_iter().filter_map(|i| built[i].take()).collect()
}

/// Position in the requests list: `(created_at, request_id)` of the last row shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub request_id: String,
}

impl Cursor {
    /// `<micros>~<request_id>`.
    pub fn encode(&self) -> String {
        format!("{}~{}", self.created_at, self.request_id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("cursor {s:?} is not valid: pass next_cursor from the previous page");
        let (t, id) = s.split_once('~').ok_or_else(bad)?;
        Ok(Cursor {
            created_at: t.parse().map_err(|_| bad())?,
            request_id: id.to_string(),
        })
    }
}

const LIST_COLUMNS: &str = "request_id, created_at, latency_ms, ttft_ms, provider, model, path, status, \
    error_type, prompt_tokens, completion_tokens, total_tokens, cost_usd, price_known, user_id, session_id, \
    session_path, cache_hit, stream, source, properties";

/// Windows (µs) the list looks back through before scanning the whole range: the newest rows
/// are found by reading only the newest files (rows are sorted by time in each file).
const WINDOWS: &[i64] = &[HOUR, 24 * HOUR, 7 * 24 * HOUR];

/// A page of requests, newest first, after `cursor`.
pub async fn requests(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Value, QueryError> {
    let upper = match cursor {
        Some(c) => f.to.min(c.created_at.saturating_add(1)),
        None => f.to,
    };
    let after = cursor.map(|c| {
        format!(
            "(created_at < {t} or (created_at == {t} and request_id < {id}))",
            t = hql_datetime(c.created_at),
            id = hql_string(&c.request_id)
        )
    });
    let mut page = Vec::new();
    for lower in WINDOWS
        .iter()
        .map(|w| upper.saturating_sub(*w))
        .filter(|l| *l > f.from)
        .chain([f.from])
    {
        let mut extra = vec![format!("created_at >= {}", hql_datetime(lower))];
        extra.extend(after.clone());
        let q = f.query(
            &extra.join(" and "),
            &format!(
                "| project {LIST_COLUMNS}\n| sort by created_at desc, request_id desc\n| take {}",
                limit + 1
            ),
        );
        page = rows(engine, org, &q, f.to).await?;
        if page.len() > limit {
            break;
        }
    }
    let has_more = page.len() > limit;
    page.truncate(limit);
    let next = if has_more {
        page.last().and_then(|r| {
            Some(
                Cursor {
                    created_at: micros_of(r.get("created_at"))?,
                    request_id: r.get("request_id")?.as_str()?.to_string(),
                }
                .encode(),
            )
        })
    } else {
        None
    };
    Ok(json!({ "requests": page, "next_cursor": next }))
}

/// One request with every column (bodies, kept headers, tokens, cost, cache, attempts when
/// recorded). `at` (its `created_at`, µs) makes the lookup read one file instead of all.
pub async fn request(
    engine: &QueryEngine,
    org: &str,
    id: &str,
    at: Option<i64>,
) -> Result<Row, QueryError> {
    let at = at
        .map(|t| format!(" and created_at == {}", hql_datetime(t)))
        .unwrap_or_default();
    let q = format!(
        "requests\n| where request_id == {}{at}\n| take 1",
        hql_string(id)
    );
    let now = Utc::now().timestamp_micros();
    let mut r = rows(engine, org, &q, now)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| QueryError::NotFound(format!("no request with request_id {id:?}")))?;
    if !ATTEMPTS.iter().any(|a| r.contains_key(*a)) {
        r.insert("attempts".into(), Value::Null);
    }
    // The gateway stores its failed attempts as a JSON array in a text column: answer it as JSON.
    if let Some(Value::String(text)) = r.get("attempts")
        && let Ok(parsed) = serde_json::from_str::<Value>(text)
    {
        r.insert("attempts".into(), parsed);
    }
    Ok(r)
}

/// Property keys seen in the range, most used first.
pub async fn property_keys(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    limit: usize,
) -> Result<Value, QueryError> {
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::functions_nested::expr_fn::map_keys;
    use datafusion::prelude::{col, lit};
    let ctx = engine.session().await?;
    let ts = |m: i64| {
        lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
            Some(m),
            Some("UTC".into()),
        ))
    };
    let df = engine
        .requests(&ctx, org)
        .await?
        .filter(
            col("created_at")
                .gt_eq(ts(f.from))
                .and(col("created_at").lt(ts(f.to))),
        )?
        .select(vec![map_keys(col("properties")).alias("key")])?
        .unnest_columns(&["key"])?
        .filter(col("key").is_not_null())?
        .aggregate(vec![col("key")], vec![count(lit(1)).alias("requests")])?
        .sort(vec![
            col("requests").sort(false, true),
            col("key").sort(true, true),
        ])?
        .limit(0, Some(limit))?;
    let batches = engine.collect(df).await?;
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| std::sync::Arc::new(datafusion::arrow::datatypes::Schema::empty()));
    let json = format::to_json(&schema, &batches)?;
    let keys: Vec<Value> = json["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| json!({ "key": r[0], "requests": r[1] }))
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({ "keys": keys }))
}

/// The top values of one property key.
pub async fn property_values(
    engine: &QueryEngine,
    org: &str,
    f: &Filter,
    key: &str,
    limit: usize,
) -> Result<Value, QueryError> {
    let k = format!("properties[{}]", hql_string(key));
    let q = f.query(
        &format!("isnotempty({k})"),
        &format!(
            "| summarize requests = count(), cost_usd = sum(cost_usd), errors = countif(status >= 400) \
             by value = {k}\n| sort by requests desc, value asc\n| take {limit}"
        ),
    );
    let values = rows(engine, org, &q, f.to).await?;
    Ok(json!({ "key": key, "values": values }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_parse_back_to_the_same_value() {
        for s in [
            "plain",
            "quote \" and ' and \\ backslash",
            "new\nline\ttab\r\0nul",
            "\u{7}bell \u{1b}esc",
            "\") or true or (\"",
            "emoji 😀 and ünïcode",
            "",
        ] {
            let lit = hql_string(s);
            let e = loupe_hql_syntax::parse_expr(&lit).expect("parses");
            match e.kind {
                loupe_hql_syntax::ast::ExprKind::Literal {
                    value: loupe_hql_syntax::ast::Literal::String(v),
                } => assert_eq!(v, s),
                other => panic!("{lit}: not a string literal: {other:?}"),
            }
        }
    }

    #[test]
    fn filters_become_one_predicate() {
        let f = Filter {
            from: 0,
            to: HOUR,
            models: vec!["gpt-4o".into(), "a\"b".into()],
            status: Some(StatusClass::Hundred(400)),
            properties: vec![("Workflow Step".into(), "x".into())],
            ..Filter::default()
        };
        let p = f.predicate();
        assert_eq!(
            p,
            "created_at >= datetime(1970-01-01T00:00:00.000000Z) and created_at < datetime(1970-01-01T01:00:00.000000Z) \
             and model in (\"gpt-4o\", \"a\\\"b\") and status >= 400 and status < 500 \
             and properties[\"Workflow Step\"] == \"x\""
        );
        loupe_hql_syntax::parse(&format!("requests | where {p}")).expect("parses");
    }

    #[test]
    fn raw_scans_select_whole_days_by_partition() {
        let day = 24 * HOUR;
        let f = Filter {
            from: 2 * day + HOUR,
            to: 5 * day + 2 * HOUR,
            models: vec!["m".into()],
            ..Filter::default()
        };
        let s = raw_slices(&f);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0].starts_with("created_at >= datetime(1970-01-03T01:00:00.000000Z) and created_at < datetime(1970-01-04T00:00:00.000000Z) and model in"));
        assert!(s[1].starts_with("day >= datetime(1970-01-04T00:00:00.000000Z) and day < datetime(1970-01-06T00:00:00.000000Z) and model in"));
        assert!(s[2].starts_with("created_at >= datetime(1970-01-06T00:00:00.000000Z) and created_at < datetime(1970-01-06T02:00:00.000000Z)"));
        let whole = Filter {
            from: day,
            to: 3 * day,
            ..Filter::default()
        };
        assert_eq!(raw_slices(&whole).len(), 1);
        let short = Filter {
            from: HOUR,
            to: 2 * HOUR,
            ..Filter::default()
        };
        assert_eq!(raw_slices(&short), vec![short.predicate()]);
    }

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let mut h = Hist::default();
        for v in 1..=1000i64 {
            let b = (((v + 1) as f64).log10() * HIST_PER_DECADE as f64) as i64;
            h.add(b, 1, v as f64);
        }
        for (q, exact) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q).as_f64().expect("value");
            assert!(
                (got - exact).abs() / exact < 0.012,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.mean(), json!(500.5));
        assert_eq!(Hist::default().quantile(0.5), Value::Null);
    }

    fn forest_len(nodes: &[Value]) -> usize {
        let mut stack: Vec<&Value> = nodes.iter().collect();
        let mut n = 0;
        while let Some(v) = stack.pop() {
            n += 1;
            stack.extend(v["children"].as_array().into_iter().flatten());
        }
        n
    }

    #[test]
    fn spans_become_trees_and_cycles_do_not_lose_spans() {
        let span = |id: &str, parent: Option<&str>, req: Option<&str>| -> Row {
            let v = json!({"trace_id": "t", "span_id": id, "parent_span_id": parent,
                "name": format!("op {id}"), "kind": "internal", "created_at": "2026-11-01T00:00:00Z",
                "completed_at": "2026-11-01T00:00:01Z", "request_id": req});
            v.as_object().cloned().unwrap_or_default()
        };
        let req: Row =
            json!({"request_id": "r1", "model": "gpt-4o-mini", "cost_usd": "0.5", "status": 200})
                .as_object()
                .cloned()
                .unwrap_or_default();
        let reqs: HashMap<&str, &Row> = HashMap::from([("r1", &req)]);
        let spans = vec![
            span("a", None, None),
            span("b", Some("a"), Some("r1")),
            span("c", Some("b"), None),
            // x and y point at each other; z's parent is not in the set.
            span("x", Some("y"), None),
            span("y", Some("x"), None),
            span("z", Some("missing"), None),
        ];
        let forest = span_forest(spans, &reqs);
        let ids: Vec<&str> = forest
            .iter()
            .filter_map(|n| n["span_id"].as_str())
            .collect();
        assert_eq!(ids, ["a", "z", "x"], "{forest:#?}");
        let b = &forest[0]["children"][0];
        assert_eq!(b["span_id"], "b");
        assert_eq!(
            (b["kind"].as_str(), b["span_kind"].as_str()),
            (Some("span"), Some("internal"))
        );
        assert_eq!(b["model"], "gpt-4o-mini");
        assert_eq!(b["http_status"], 200);
        assert_eq!(b["start"], "2026-11-01T00:00:00Z");
        assert_eq!(b["children"][0]["span_id"], "c");
        assert_eq!(forest[2]["children"][0]["span_id"], "y");
        // A long chain does not recurse.
        let mut chain = vec![span("0", None, None)];
        for i in 1..20_000 {
            let (id, parent) = (i.to_string(), (i - 1).to_string());
            chain.push(span(&id, Some(&parent), None));
        }
        let forest = span_forest(chain, &HashMap::new());
        assert_eq!(forest.len(), 1);
        let mut node = &forest[0];
        let mut levels = 0;
        while let Some(next) = node["children"].as_array().and_then(|c| c.first()) {
            node = next;
            levels += 1;
        }
        assert_eq!(levels, MAX_SPAN_DEPTH);
        let capped = forest_len(&forest);
        assert_eq!(capped, 20_000, "no span lost");
        assert!(serde_json::to_string(&forest).is_ok());
    }

    #[test]
    fn group_totals_are_exact() {
        let rows: Vec<Row> = [
            json!({"k": true, "n": 2, "c": "0.100000000000000001", "z": null}),
            json!({"k": false, "n": 3, "c": "12.900000000000000002"}),
            json!({"k": null, "n": 1, "c": "-0.000000000000000003"}),
        ]
        .into_iter()
        .filter_map(|v| v.as_object().cloned())
        .collect();
        let t = sum_rows(&rows, &["k"]);
        assert_eq!(
            Value::Object(t),
            json!({"n": 6, "c": "13.000000000000000000"})
        );
        assert_eq!(dec_units("1.5"), Some(1_500_000_000_000_000_000));
        assert_eq!(dec_units("x"), None);
    }

    fn row(v: Value) -> Row {
        v.as_object().cloned().expect("an object")
    }

    #[test]
    fn the_other_bucket_is_exact() {
        // Floats get both wrong: 0.3 - 0.1 - 0.2 is -2.8e-17, and the old rounding to 1e-9
        // turned the sub-nano-dollar remainder of per-token prices into 0.
        let groups = [
            row(
                json!({"key": "a", "requests": 5, "errors": 1, "total_tokens": 50, "cost_usd": "0.100000000000000000"}),
            ),
            row(
                json!({"key": "b", "requests": 3, "errors": 0, "total_tokens": 30, "cost_usd": "0.200000000000000000"}),
            ),
            row(
                json!({"key": "c", "requests": 1, "errors": 0, "total_tokens": 0, "cost_usd": null}),
            ),
        ];
        let totals = row(
            json!({"requests": 10, "errors": 2, "total_tokens": 90, "cost_usd": "0.300000000150000001"}),
        );
        assert_eq!(
            Value::Object(other_bucket(&totals, &groups)),
            json!({"requests": 1, "errors": 1, "total_tokens": 10, "cost_usd": "0.000000000150000001"})
        );
        let totals = row(json!({"requests": 9, "cost_usd": "0.300000000000000000"}));
        assert_eq!(
            other_bucket(&totals, &groups)["cost_usd"],
            json!("0.000000000000000000")
        );
        // Beyond f64's 15-17 significant digits.
        let big = [row(json!({"cost_usd": "98765432109.123456789012345678"}))];
        let totals = row(json!({"cost_usd": "98765432110.123456789012345679"}));
        assert_eq!(
            other_bucket(&totals, &big)["cost_usd"],
            json!("1.000000000000000001")
        );
        let none = row(json!({"requests": 4, "cost_usd": null}));
        assert_eq!(other_bucket(&none, &groups)["cost_usd"], Value::Null);
    }

    #[test]
    fn time_series_costs_are_exact_decimal_text() {
        let mut p = Map::new();
        point_counts(
            &mut p,
            Some(&row(json!({"requests": 7, "errors": 2, "total_tokens": 70,
                "cost_usd": "12345678.123456789012345678"}))),
        );
        // As a float this is 12345678.123456789: nine digits lost.
        assert_eq!(
            Value::Object(p),
            json!({"requests": 7, "errors": 2, "total_tokens": 70, "cost_usd": "12345678.123456789012345678"})
        );
        let mut p = Map::new();
        point_counts(&mut p, None);
        assert_eq!(p["cost_usd"], json!("0.000000000000000000"));
        assert_eq!(p["requests"], json!(0));
        let mut p = Map::new();
        point_counts(&mut p, Some(&row(json!({"requests": 2, "cost_usd": null}))));
        assert_eq!(p["cost_usd"], Value::Null, "no price in the bucket");
    }

    #[test]
    fn session_costs_and_the_estimated_saving_are_exact() {
        let costs = [
            json!("0.100000000000000000"),
            json!(null),
            json!("0.200000000000000001"),
        ];
        assert_eq!(
            dec_sum(costs.iter().map(Some)),
            json!("0.300000000000000001")
        );
        assert_eq!(dec_sum([Some(&Value::Null), None]), Value::Null);
        // 3 hits × (1.000000000000000000 / 3 misses) = 1, not 0.9999999999999999.
        let misses = row(json!({"requests": 3, "cost_usd": "1.000000000000000000"}));
        assert_eq!(
            estimated_saving(3, Some(&misses)),
            json!("1.000000000000000000")
        );
        // 2 hits × (1 / 3): rounded at the 18th decimal.
        assert_eq!(
            estimated_saving(2, Some(&misses)),
            json!("0.666666666666666667")
        );
        assert_eq!(estimated_saving(0, None), json!("0.000000000000000000"));
        assert_eq!(estimated_saving(5, None), Value::Null);
        assert_eq!(dec_mul_div(-10, 1, 4), Some(-3));
        assert_eq!(dec_mul_div(i128::MAX, 2, 1), None);
        assert_eq!(dec_mul_div(1, 1, 0), None);
    }

    #[test]
    fn buckets_keep_series_short() {
        let day = 24 * HOUR;
        assert_eq!(auto_bucket(0, day), 900);
        assert_eq!(auto_bucket(0, 7 * day), 3_600);
        assert_eq!(auto_bucket(0, 30 * day), 21_600);
        assert_eq!(auto_bucket(0, HOUR), 60);
    }

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let c = Cursor {
            created_at: 1_700_000_000_000_000,
            request_id: "abc~def".into(),
        };
        assert_eq!(c.encode().parse::<Cursor>(), Ok(c));
        assert!("nope".parse::<Cursor>().is_err());
        assert!("x~y".parse::<Cursor>().is_err());
        assert_eq!("4xx".parse(), Ok(StatusClass::Hundred(400)));
        assert!("6xx".parse::<StatusClass>().is_err());
        assert!("property.".parse::<Dimension>().is_err());
    }
}
