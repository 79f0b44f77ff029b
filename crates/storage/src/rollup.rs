//! The hourly roll-up: a second Delta table, `requests_hourly`, beside `requests`, holding per
//! (org_id, hour, model, provider, status, cache_hit, stream) the number of requests and the sums
//! of cost and tokens. Every flush appends the roll-up of exactly the rows it wrote, in a commit
//! that carries the same WAL sequence number (`txn`) as the flush's commit to `requests`; the two
//! tables are used together only while those numbers are equal. When they differ (a crash between
//! the two commits, a failed roll-up write, a table from before roll-ups existed) the roll-up is
//! rebuilt from `requests` in the background, and until then queries read raw rows.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::functions::datetime::expr_fn::date_bin;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::prelude::{SessionContext, col, lit};
use datafusion::scalar::ScalarValue;
use deltalake::DeltaTable;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use loupe_model::schema::{COST_PRECISION, COST_SCALE, PARTITION_COLUMN};

use crate::StorageError;

/// The roll-up table's name (a directory beside `requests`).
pub const ROLLUP_TABLE: &str = "requests_hourly";

pub use loupe_model::schema::{ROLLUP_DIMENSIONS, ROLLUP_SUMS};

/// The row-count column.
pub const ROLLUP_COUNT: &str = "n";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utf8 = |n: &str| Field::new(n, DataType::Utf8, true);
    let mut fields = vec![
        utf8("org_id"),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        utf8("model"),
        utf8("provider"),
        Field::new("status", DataType::Int32, true),
        Field::new("cache_hit", DataType::Boolean, true),
        Field::new("stream", DataType::Boolean, true),
        Field::new(ROLLUP_COUNT, DataType::Int64, true),
        Field::new(
            "cost_usd",
            DataType::Decimal128(COST_PRECISION, COST_SCALE),
            true,
        ),
    ];
    fields.extend(
        ROLLUP_SUMS[1..]
            .iter()
            .map(|n| Field::new(*n, DataType::Int64, true)),
    );
    fields.push(Field::new(PARTITION_COLUMN, DataType::Date32, true));
    Arc::new(Schema::new(fields))
});

/// The schema of `requests_hourly` (`created_at` is the start of the hour, UTC).
pub fn rollup_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The roll-up rows of `requests` rows (any schema with the requests columns).
pub(crate) async fn aggregate(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, StorageError> {
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    let df = ctx.read_batches(batches)?;
    rollup_of(df).await
}

/// The roll-up of a whole `requests` table (for a rebuild).
pub(crate) async fn aggregate_table(table: &DeltaTable) -> Result<Vec<RecordBatch>, StorageError> {
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    let df = ctx.read_table(table.table_provider().await?)?;
    rollup_of(df).await
}

async fn rollup_of(df: datafusion::dataframe::DataFrame) -> Result<Vec<RecordBatch>, StorageError> {
    let hour = lit(ScalarValue::IntervalMonthDayNano(Some(
        arrow::datatypes::IntervalMonthDayNano::new(0, 0, 3_600_000_000_000),
    )));
    let epoch = lit(ScalarValue::TimestampMicrosecond(
        Some(0),
        Some("UTC".into()),
    ));
    let mut group = vec![
        col("org_id"),
        date_bin(hour, col("created_at"), epoch).alias("created_at"),
    ];
    group.extend(ROLLUP_DIMENSIONS.iter().map(|d| col(*d)));
    let mut aggs = vec![count(lit(1)).alias(ROLLUP_COUNT)];
    aggs.extend(ROLLUP_SUMS.iter().map(|s| sum(col(*s)).alias(*s)));
    let batches = df.aggregate(group, aggs)?.collect().await?;
    batches.iter().map(conform).collect()
}

/// Casts an aggregate batch to exactly [`rollup_schema`], adding `day`.
fn conform(b: &RecordBatch) -> Result<RecordBatch, StorageError> {
    let schema = rollup_schema();
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let src = if f.name() == PARTITION_COLUMN {
            let hour = b
                .column_by_name("created_at")
                .ok_or_else(|| StorageError::Wal("roll-up lacks created_at".into()))?;
            cast(hour, &DataType::Date32)?
        } else {
            b.column_by_name(f.name())
                .ok_or_else(|| StorageError::Wal(format!("roll-up lacks {}", f.name())))?
                .clone()
        };
        cols.push(if src.data_type() == f.data_type() {
            src
        } else {
            cast(&src, f.data_type())?
        });
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

/// Writes roll-up rows in one commit tagged with WAL sequence `seq` (`Overwrite` for a rebuild).
pub(crate) async fn write(
    table: DeltaTable,
    rows: Vec<RecordBatch>,
    app_id: &str,
    seq: i64,
    mode: SaveMode,
) -> Result<DeltaTable, StorageError> {
    let rows = if rows.is_empty() {
        vec![RecordBatch::new_empty(rollup_schema())]
    } else {
        rows
    };
    Ok(table
        .write(rows)
        .with_save_mode(mode)
        .with_partition_columns([PARTITION_COLUMN])
        .with_writer_properties(crate::flush::writer_properties())
        .with_commit_properties(
            CommitProperties::default().with_application_transaction(Transaction::new(app_id, seq)),
        )
        .await?)
}
