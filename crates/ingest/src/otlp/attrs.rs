//! OTLP attribute values (`AnyValue`) as JSON values, strings and numbers.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value as V};
use serde_json::{Map, Number, Value};

/// Nesting deeper than this is cut (replaced by `null`): bounds recursion on hostile input.
const MAX_DEPTH: usize = 32;

/// An attribute list by key; a repeated key keeps its last value (as the OTel SDKs do).
pub(crate) fn by_key(kvs: &[KeyValue]) -> BTreeMap<&str, &AnyValue> {
    let mut m = BTreeMap::new();
    for kv in kvs {
        if let Some(v) = &kv.value {
            m.insert(kv.key.as_str(), v);
        }
    }
    m
}

/// The value as JSON: strings, booleans, numbers (non-finite doubles as strings), arrays and
/// objects; bytes as base64 in a string; an empty or absent value as `null`.
pub(crate) fn to_json(v: &AnyValue) -> Value {
    to_json_at(v, 0)
}

fn to_json_at(v: &AnyValue, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    match &v.value {
        None | Some(V::StringValueStrindex(_)) => Value::Null,
        Some(V::StringValue(s)) => Value::String(s.clone()),
        Some(V::BoolValue(b)) => Value::Bool(*b),
        Some(V::IntValue(i)) => Value::Number((*i).into()),
        Some(V::DoubleValue(d)) => match Number::from_f64(*d) {
            Some(n) => Value::Number(n),
            None => Value::String(d.to_string()),
        },
        Some(V::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|x| to_json_at(x, depth + 1)).collect())
        }
        Some(V::KvlistValue(l)) => {
            let mut m = Map::new();
            for kv in &l.values {
                let val = kv
                    .value
                    .as_ref()
                    .map(|x| to_json_at(x, depth + 1))
                    .unwrap_or(Value::Null);
                m.insert(kv.key.clone(), val);
            }
            Value::Object(m)
        }
        Some(V::BytesValue(b)) => Value::String(base64_encode(b)),
    }
}

/// The value as a property string: a string as it is, anything else as compact JSON.
/// `None` for an empty value.
pub(crate) fn to_property(v: &AnyValue) -> Option<String> {
    match &v.value {
        None | Some(V::StringValueStrindex(_)) => None,
        Some(V::StringValue(s)) => Some(s.clone()),
        _ => match to_json(v) {
            Value::Null => None,
            other => Some(other.to_string()),
        },
    }
}

/// A string value (only `stringValue`).
pub(crate) fn as_str(v: &AnyValue) -> Option<&str> {
    match &v.value {
        Some(V::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// An integer: `intValue`, an integral `doubleValue`, or a decimal string.
pub(crate) fn as_i64(v: &AnyValue) -> Option<i64> {
    match &v.value {
        Some(V::IntValue(i)) => Some(*i),
        Some(V::DoubleValue(d)) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
        Some(V::StringValue(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A number (`doubleValue`, `intValue` or a decimal string).
pub(crate) fn as_f64(v: &AnyValue) -> Option<f64> {
    match &v.value {
        Some(V::IntValue(i)) => Some(*i as f64),
        Some(V::DoubleValue(d)) if d.is_finite() => Some(*d),
        Some(V::StringValue(s)) => s.trim().parse().ok().filter(|d: &f64| d.is_finite()),
        _ => None,
    }
}

/// A boolean (`boolValue`, or the strings `true`/`false`).
pub(crate) fn as_bool(v: &AnyValue) -> Option<bool> {
    match &v.value {
        Some(V::BoolValue(b)) => Some(*b),
        Some(V::StringValue(s)) if s.eq_ignore_ascii_case("true") => Some(true),
        Some(V::StringValue(s)) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A structured value, or a JSON document inside a string (`gen_ai.input.messages` arrives as
/// either). A string that is not JSON is kept as a JSON string.
pub(crate) fn structured(v: &AnyValue) -> Value {
    match &v.value {
        Some(V::StringValue(s)) => {
            let t = s.trim_start();
            if t.starts_with('[') || t.starts_with('{') {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            } else {
                Value::String(s.clone())
            }
        }
        _ => to_json(v),
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn s(x: &str) -> AnyValue {
        AnyValue {
            value: Some(V::StringValue(x.into())),
        }
    }

    #[test]
    fn conversions() {
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert_eq!(base64_encode(b"hi!"), "aGkh");
        let empty_array = AnyValue {
            value: Some(V::ArrayValue(ArrayValue { values: vec![] })),
        };
        assert_eq!(to_json(&empty_array), serde_json::json!([]));
        assert_eq!(to_property(&empty_array).as_deref(), Some("[]"));
        let kv = AnyValue {
            value: Some(V::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "a".into(),
                    value: Some(s("b")),
                    key_strindex: 0,
                }],
            })),
        };
        assert_eq!(to_json(&kv), serde_json::json!({"a": "b"}));
        assert_eq!(as_i64(&s("42")), Some(42));
        assert_eq!(structured(&s("[1, 2]")), serde_json::json!([1, 2]));
        assert_eq!(structured(&s("[oops")), serde_json::json!("[oops"));
        assert_eq!(to_property(&AnyValue { value: None }), None);
    }
}
