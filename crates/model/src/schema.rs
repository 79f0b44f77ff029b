//! The Arrow schema of the `requests` table and the conversion from records to record batches.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int32Builder, Int64Builder,
    MapBuilder, MapFieldNames, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;

use crate::{ModelError, RequestRecord};

/// Decimal precision/scale of `cost_usd`: 38 digits, 18 after the point. Exact for every price
/// in the bundled table times any realistic token count.
pub const COST_PRECISION: u8 = 38;
pub const COST_SCALE: i8 = 18;

/// Name of the partition column (UTC day of `created_at`).
pub const PARTITION_COLUMN: &str = "day";

/// Log-scale histogram buckets per decade: bucket `b` holds the values `v` with
/// `toint(log10(v + 1) * 200) == b`, so it is 1.16 % wide and a percentile read from it (the
/// bucket's midpoint) is within 0.6 % of the exact value.
pub const HIST_PER_DECADE: i64 = 200;

/// The HQL expression of the log-scale histogram bucket of `column` (see [`HIST_PER_DECADE`]):
/// what the dashboard groups by for percentiles, and what histogram roll-ups store.
pub fn log_bucket_hql(column: &str) -> String {
    format!("toint(log10({column} + 1) * {HIST_PER_DECADE})")
}

/// One roll-up table of `requests`: per `org_id`, hour of `created_at` (the start of the hour)
/// and, in other rows, UTC day ([`ROLLUP_GRAIN`]), `dimensions` and, for a histogram, the
/// log-scale bucket of one column ([`log_bucket_hql`]), the number of rows `n` and the sums of
/// `sums`. Shared by the storage that writes the tables and the
/// planner that reads them.
#[derive(Debug)]
pub struct RollupSpec {
    /// The Delta table's name (a directory beside `requests`).
    pub table: &'static str,
    /// Columns of `requests` grouped by, besides `org_id` and the hour.
    pub dimensions: &'static [&'static str],
    /// A histogram: the column whose [`log_bucket_hql`] is grouped by (stored as `bucket`).
    pub bucket_of: Option<&'static str>,
    /// Columns of `requests` summed (same names in the roll-up).
    pub sums: &'static [&'static str],
}

/// The name of the bucket column of a histogram roll-up.
pub const ROLLUP_BUCKET: &str = "bucket";

/// The column telling how many hours a roll-up row covers: every roll-up holds the same groups
/// per hour (`created_at` the start of the hour) and per UTC day (`created_at` the midnight).
pub const ROLLUP_GRAIN: &str = "grain";

/// The grains of every roll-up, in hours: an hour and a UTC day.
pub const ROLLUP_GRAINS: [i32; 2] = [1, 24];

/// Every roll-up, smallest first (a query is answered from the first one that can).
///
/// Row counts on the 10M-request, 30-day bench dataset (5 000 users): `requests_hourly` 103 k,
/// `requests_latency_hourly` 430 k, `requests_ttft_hourly` 335 k, `requests_users_hourly`
/// 1.4 M. Histograms keep no other dimension: with model, provider and status they would hold
/// 4.3 M rows (a 2.3× reduction only), so percentiles filtered on those read raw rows.
pub const ROLLUPS: &[RollupSpec] = &[
    RollupSpec {
        table: "requests_hourly",
        dimensions: &["model", "provider", "status", "cache_hit", "stream"],
        bucket_of: None,
        sums: &[
            "cost_usd",
            "cost_saved_usd",
            "prompt_tokens",
            "completion_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "total_tokens",
        ],
    },
    RollupSpec {
        table: "requests_latency_hourly",
        dimensions: &[],
        bucket_of: Some("latency_ms"),
        sums: &["latency_ms"],
    },
    RollupSpec {
        table: "requests_ttft_hourly",
        dimensions: &[],
        bucket_of: Some("ttft_ms"),
        sums: &["ttft_ms"],
    },
    RollupSpec {
        table: "requests_users_hourly",
        dimensions: &["user_id", "status"],
        bucket_of: None,
        sums: &["cost_usd", "total_tokens"],
    },
];

pub(crate) fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(crate) fn map_names() -> MapFieldNames {
    // The names Parquet and Delta Lake use, so batches round-trip without renaming.
    MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

pub(crate) fn properties_type() -> DataType {
    let entries = Field::new(
        "key_value",
        DataType::Struct(
            vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ]
            .into(),
        ),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use DataType::*;
    let f = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    Arc::new(Schema::new(vec![
        f("request_id", Utf8, false),
        f("org_id", Utf8, false),
        f("created_at", ts(), false),
        f("completed_at", ts(), false),
        f("latency_ms", Int64, false),
        f("ttft_ms", Int64, true),
        f("provider", Utf8, false),
        f("model", Utf8, false),
        f("response_model", Utf8, true),
        f("path", Utf8, false),
        f("status", Int32, false),
        f("error_type", Utf8, true),
        f("error_message", Utf8, true),
        f("prompt_tokens", Int64, false),
        f("completion_tokens", Int64, false),
        f("cache_read_tokens", Int64, false),
        f("cache_write_tokens", Int64, false),
        f("reasoning_tokens", Int64, false),
        f("total_tokens", Int64, false),
        f("cost_usd", Decimal128(COST_PRECISION, COST_SCALE), true),
        f("price_known", Boolean, false),
        f("user_id", Utf8, true),
        f("session_id", Utf8, true),
        f("session_path", Utf8, true),
        f("session_name", Utf8, true),
        f("properties", properties_type(), false),
        f("cache_hit", Boolean, false),
        f("stream", Boolean, false),
        f("source", Utf8, false),
        f("trace_id", Utf8, true),
        f("span_id", Utf8, true),
        f("upstream_headers", properties_type(), false),
        f("attempts", Utf8, true),
        f("attempt", Int32, true),
        f("fallback_index", Int32, true),
        f(
            "cost_saved_usd",
            Decimal128(COST_PRECISION, COST_SCALE),
            true,
        ),
        f("request_body", Utf8, true),
        f("response_body", Utf8, true),
        f(PARTITION_COLUMN, Date32, false),
    ]))
});

/// The schema of the `requests` table as written (the partition column `day` is last).
pub fn requests_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// `cost_usd` as the i128 mantissa at [`COST_SCALE`]; rounds half-even past 18 decimals.
pub fn cost_to_i128(cost: Decimal) -> i128 {
    let mut c = cost;
    c.rescale(COST_SCALE as u32);
    c.mantissa()
}

/// Days since 1970-01-01 of a moment given in microseconds since the epoch (rounds down, so
/// moments before 1970 get negative days); same as [`day_of`].
pub fn day_of_micros(micros: i64) -> i32 {
    micros.div_euclid(86_400_000_000) as i32
}

/// Days since 1970-01-01 of a UTC timestamp (the `day` partition value).
pub fn day_of(t: DateTime<Utc>) -> i32 {
    t.date_naive().num_days_from_ce() - 719_163
}

/// A batch written by an older Loupe (a WAL segment from before a column was added) in the
/// current [`requests_schema`]: columns are matched by name, and a missing column that is
/// nullable is filled with nulls. A batch already in the current schema is returned as is.
pub fn upgrade_batch(batch: RecordBatch) -> Result<RecordBatch, ModelError> {
    upgrade_batch_to(batch, &requests_schema())
}

/// [`upgrade_batch`] to any table's schema.
pub fn upgrade_batch_to(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ModelError> {
    let schema = schema.clone();
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let n = batch.num_rows();
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => cols.push(c.clone()),
            Some(c) => cols.push(arrow::compute::cast(c, f.data_type())?),
            None if f.is_nullable() => cols.push(arrow::array::new_null_array(f.data_type(), n)),
            None => {
                return Err(ModelError::InvalidRecord {
                    field: f.name().clone(),
                    reason: "a stored batch lacks this required column".into(),
                });
            }
        }
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// Builds one record batch (schema [`requests_schema`]) from records.
pub fn records_to_batch(records: &[RequestRecord]) -> Result<RecordBatch, ModelError> {
    let n = records.len();
    let strs = || StringBuilder::with_capacity(n, n * 16);
    let mut request_id = strs();
    let mut org_id = strs();
    let mut created_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut completed_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut latency_ms = Int64Builder::with_capacity(n);
    let mut ttft_ms = Int64Builder::with_capacity(n);
    let mut provider = strs();
    let mut model = strs();
    let mut response_model = strs();
    let mut path = strs();
    let mut status = Int32Builder::with_capacity(n);
    let mut error_type = strs();
    let mut error_message = strs();
    let mut tokens: [Int64Builder; 6] = std::array::from_fn(|_| Int64Builder::with_capacity(n));
    let mut cost =
        Decimal128Builder::with_capacity(n).with_precision_and_scale(COST_PRECISION, COST_SCALE)?;
    let mut price_known = BooleanBuilder::with_capacity(n);
    let mut user_id = strs();
    let mut session_id = strs();
    let mut session_path = strs();
    let mut session_name = strs();
    let string_map = || {
        MapBuilder::new(
            Some(map_names()),
            StringBuilder::new(),
            StringBuilder::new(),
        )
        .with_keys_field(Arc::new(Field::new("key", DataType::Utf8, false)))
        .with_values_field(Arc::new(Field::new("value", DataType::Utf8, true)))
    };
    let mut properties = string_map();
    let mut upstream_headers = string_map();
    let mut cache_hit = BooleanBuilder::with_capacity(n);
    let mut stream = BooleanBuilder::with_capacity(n);
    let mut source = strs();
    let mut trace_id = strs();
    let mut span_id = strs();
    let mut attempts = strs();
    let mut attempt = Int32Builder::with_capacity(n);
    let mut fallback_index = Int32Builder::with_capacity(n);
    let mut cost_saved =
        Decimal128Builder::with_capacity(n).with_precision_and_scale(COST_PRECISION, COST_SCALE)?;
    let mut request_body = strs();
    let mut response_body = strs();
    let mut day = Date32Builder::with_capacity(n);

    let mut uuid_buf = uuid::Uuid::encode_buffer();
    for r in records {
        request_id.append_value(r.request_id.hyphenated().encode_lower(&mut uuid_buf));
        org_id.append_value(&r.org_id);
        created_at.append_value(r.created_at.timestamp_micros());
        completed_at.append_value(r.completed_at.timestamp_micros());
        latency_ms.append_value(r.latency_ms);
        ttft_ms.append_option(r.ttft_ms);
        provider.append_value(&r.provider);
        model.append_value(&r.model);
        response_model.append_option(r.response_model.as_deref());
        path.append_value(&r.path);
        status.append_value(r.status);
        error_type.append_option(r.error_type.as_deref());
        error_message.append_option(r.error_message.as_deref());
        for (b, v) in tokens.iter_mut().zip([
            r.prompt_tokens,
            r.completion_tokens,
            r.cache_read_tokens,
            r.cache_write_tokens,
            r.reasoning_tokens,
            r.total_tokens,
        ]) {
            b.append_value(v);
        }
        cost.append_option(r.cost_usd.map(cost_to_i128));
        price_known.append_value(r.price_known);
        user_id.append_option(r.user_id.as_deref());
        session_id.append_option(r.session_id.as_deref());
        session_path.append_option(r.session_path.as_deref());
        session_name.append_option(r.session_name.as_deref());
        for (k, v) in &r.properties {
            properties.keys().append_value(k);
            properties.values().append_value(v);
        }
        properties.append(true)?;
        cache_hit.append_value(r.cache_hit);
        stream.append_value(r.stream);
        source.append_value(r.source.as_str());
        trace_id.append_option(r.trace_id.as_deref());
        span_id.append_option(r.span_id.as_deref());
        for (k, v) in &r.upstream_headers {
            upstream_headers.keys().append_value(k);
            upstream_headers.values().append_value(v);
        }
        upstream_headers.append(true)?;
        if r.attempts.is_empty() {
            attempts.append_null();
        } else {
            attempts.append_value(serde_json::to_string(&r.attempts).unwrap_or_default());
        }
        attempt.append_option(r.attempt);
        fallback_index.append_option(r.fallback_index);
        cost_saved.append_option(r.cost_saved_usd.map(cost_to_i128));
        request_body.append_option(r.request_body.as_deref());
        response_body.append_option(r.response_body.as_deref());
        day.append_value(day_of(r.created_at));
    }
    let [t0, t1, t2, t3, t4, t5] = tokens.map(|mut b| std::sync::Arc::new(b.finish()) as ArrayRef);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(request_id.finish()),
        Arc::new(org_id.finish()),
        Arc::new(created_at.finish()),
        Arc::new(completed_at.finish()),
        Arc::new(latency_ms.finish()),
        Arc::new(ttft_ms.finish()),
        Arc::new(provider.finish()),
        Arc::new(model.finish()),
        Arc::new(response_model.finish()),
        Arc::new(path.finish()),
        Arc::new(status.finish()),
        Arc::new(error_type.finish()),
        Arc::new(error_message.finish()),
        t0,
        t1,
        t2,
        t3,
        t4,
        t5,
        Arc::new(cost.finish()),
        Arc::new(price_known.finish()),
        Arc::new(user_id.finish()),
        Arc::new(session_id.finish()),
        Arc::new(session_path.finish()),
        Arc::new(session_name.finish()),
        Arc::new(properties.finish()),
        Arc::new(cache_hit.finish()),
        Arc::new(stream.finish()),
        Arc::new(source.finish()),
        Arc::new(trace_id.finish()),
        Arc::new(span_id.finish()),
        Arc::new(upstream_headers.finish()),
        Arc::new(attempts.finish()),
        Arc::new(attempt.finish()),
        Arc::new(fallback_index.finish()),
        Arc::new(cost_saved.finish()),
        Arc::new(request_body.finish()),
        Arc::new(response_body.finish()),
        Arc::new(day.finish()),
    ];
    Ok(RecordBatch::try_new(requests_schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_from_before_a_new_column_are_upgraded_by_name() {
        let mut r = RequestRecord::new(uuid::Uuid::new_v4(), "org", Utc::now());
        r.model = "m".into();
        let b = records_to_batch(&[r]).expect("batch");
        let keep: Vec<usize> = (0..b.num_columns())
            .filter(|i| {
                !["attempts", "cost_saved_usd"].contains(&b.schema().field(*i).name().as_str())
            })
            .collect();
        let old = b.project(&keep).expect("project");
        let up = upgrade_batch(old).expect("upgrade");
        assert_eq!(up.schema(), requests_schema());
        assert_eq!(
            up.column_by_name("attempts").map(|c| c.null_count()),
            Some(1)
        );
        assert_eq!(up.column_by_name("model").map(|c| c.len()), Some(1));
        let current = records_to_batch(&[]).expect("empty");
        assert_eq!(
            upgrade_batch(current.clone()).expect("same").schema(),
            current.schema()
        );
        let no_model = b.project(&[0, 1, 2, 3]).expect("project");
        assert!(
            upgrade_batch(no_model).is_err(),
            "a required column cannot be made up"
        );
    }
    use chrono::TimeZone;

    #[test]
    fn batch_matches_schema_and_days() {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
            .single()
            .expect("valid time");
        let mut r = RequestRecord::new(uuid::Uuid::nil(), "default", t);
        r.properties.insert("env".into(), "prod".into());
        r.cost_usd = Some(Decimal::new(1359, 7));
        let b = records_to_batch(&[r.clone(), r]).expect("batch");
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.schema(), requests_schema());
        assert_eq!(day_of(t), 20780);
        assert_eq!(cost_to_i128(Decimal::new(1359, 7)), 135_900_000_000_000);
    }
}
