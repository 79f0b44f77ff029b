//! Result formats: JSON (`{"columns":[{name,type}],"rows":[[…]]}`), CSV, Arrow IPC, text table.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value, json};

use crate::QueryError;

fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => "string".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "int".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "int".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "float".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::Boolean => "bool".into(),
        DataType::Timestamp(..) => "datetime".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Duration(_) | DataType::Interval(_) => "duration".into(),
        DataType::Map(..) => "map".into(),
        other => other.to_string().to_lowercase(),
    }
}

fn value(col: &ArrayRef, fmt: &ArrayFormatter<'_>, i: usize) -> Result<Value, QueryError> {
    if col.is_null(i) {
        return Ok(Value::Null);
    }
    use datafusion::arrow::datatypes::*;
    Ok(match col.data_type() {
        DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
        DataType::Int8 => json!(col.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => json!(col.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => json!(col.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => json!(col.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => json!(col.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => json!(col.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => json!(col.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => json!(col.as_primitive::<UInt64Type>().value(i)),
        DataType::Float32 => finite(f64::from(col.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => finite(col.as_primitive::<Float64Type>().value(i)),
        DataType::Map(..) => {
            let m = col.as_map();
            let entries = m.value(i);
            let (k, v) = (entries.column(0).clone(), entries.column(1).clone());
            let (kf, vf) = (formatter(&k)?, formatter(&v)?);
            let mut obj = Map::new();
            for j in 0..entries.len() {
                let key = kf.value(j).to_string();
                obj.insert(
                    key,
                    if v.is_null(j) {
                        Value::Null
                    } else {
                        Value::String(vf.value(j).to_string())
                    },
                );
            }
            Value::Object(obj)
        }
        // Decimals stay strings so no digit is lost; times are RFC 3339.
        _ => Value::String(fmt.value(i).to_string()),
    })
}

fn finite(f: f64) -> Value {
    if f.is_finite() { json!(f) } else { Value::Null }
}

fn formatter(col: &ArrayRef) -> Result<ArrayFormatter<'_>, QueryError> {
    static OPTS: std::sync::LazyLock<FormatOptions<'static>> = std::sync::LazyLock::new(|| {
        FormatOptions::default()
            .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.6fZ"))
            .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.6f"))
    });
    Ok(ArrayFormatter::try_new(col.as_ref(), &OPTS)?)
}

/// `{"columns":[{"name","type"}],"rows":[[…]]}`.
pub fn to_json(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Value, QueryError> {
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| json!({ "name": f.name(), "type": type_name(f.data_type()) }))
        .collect();
    let mut rows = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter<'_>> = b
            .columns()
            .iter()
            .map(formatter)
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            let mut row = Vec::with_capacity(b.num_columns());
            for (c, f) in b.columns().iter().zip(&fmts) {
                row.push(value(c, f, i)?);
            }
            rows.push(Value::Array(row));
        }
    }
    Ok(json!({ "columns": columns, "rows": rows }))
}

/// CSV with a header row.
pub fn to_csv(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    {
        let mut w = datafusion::arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if batches.is_empty() {
            w.write(&RecordBatch::new_empty(schema.clone()))?;
        }
        for b in batches {
            w.write(&flatten_maps(b)?)?;
        }
    }
    Ok(out)
}

/// CSV cannot hold maps: render them as JSON text.
fn flatten_maps(b: &RecordBatch) -> Result<RecordBatch, QueryError> {
    if !b
        .schema()
        .fields()
        .iter()
        .any(|f| matches!(f.data_type(), DataType::Map(..)))
    {
        return Ok(b.clone());
    }
    let json = to_json(&b.schema(), std::slice::from_ref(b))?;
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (idx, f) in b.schema().fields().iter().enumerate() {
        if matches!(f.data_type(), DataType::Map(..)) {
            let texts: Vec<Option<String>> = json["rows"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| (!r[idx].is_null()).then(|| r[idx].to_string()))
                        .collect()
                })
                .unwrap_or_default();
            fields.push(datafusion::arrow::datatypes::Field::new(
                f.name(),
                DataType::Utf8,
                true,
            ));
            cols.push(std::sync::Arc::new(
                datafusion::arrow::array::StringArray::from(texts),
            ));
        } else {
            fields.push(f.as_ref().clone());
            cols.push(b.column(idx).clone());
        }
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
        cols,
    )?)
}

/// Arrow IPC stream.
pub fn to_arrow(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::new();
    {
        let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    Ok(out)
}

/// A text table for terminals.
pub fn to_table(batches: &[RecordBatch]) -> Result<String, QueryError> {
    Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
}
