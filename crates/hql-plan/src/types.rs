//! HQL's view of engine types: a few families that decide what an operator accepts.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr, lit};

/// The type family of a value, as HQL checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fam {
    Null,
    Bool,
    Int,
    Float,
    Decimal,
    String,
    Timestamp,
    Date,
    Duration,
    Map,
    Other,
}

impl Fam {
    pub(crate) fn of(t: &DataType) -> Fam {
        use DataType::*;
        match t {
            Null => Fam::Null,
            Boolean => Fam::Bool,
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => Fam::Int,
            Float16 | Float32 | Float64 => Fam::Float,
            Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => Fam::Decimal,
            Utf8 | LargeUtf8 | Utf8View => Fam::String,
            Timestamp(..) => Fam::Timestamp,
            Date32 | Date64 => Fam::Date,
            Duration(_) | Interval(_) => Fam::Duration,
            Map(..) => Fam::Map,
            Dictionary(_, v) => Fam::of(v),
            _ => Fam::Other,
        }
    }

    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, Fam::Int | Fam::Float | Fam::Decimal)
    }

    pub(crate) fn is_time(self) -> bool {
        matches!(self, Fam::Timestamp | Fam::Date)
    }
}

/// The name of a type in messages (KQL-like: `string`, `long`, `real`, `datetime`, …).
pub(crate) fn type_name(t: &DataType) -> String {
    use DataType::*;
    match t {
        Null => "null".into(),
        Boolean => "bool".into(),
        Int8 | Int16 | Int32 | UInt8 | UInt16 | UInt32 => "int".into(),
        Int64 | UInt64 => "long".into(),
        Float16 | Float32 | Float64 => "real".into(),
        Decimal32(p, s) | Decimal64(p, s) | Decimal128(p, s) | Decimal256(p, s) => {
            format!("decimal({p},{s})")
        }
        Utf8 | LargeUtf8 | Utf8View => "string".into(),
        Timestamp(..) => "datetime".into(),
        Date32 | Date64 => "date".into(),
        Duration(_) | Interval(_) => "timespan".into(),
        Map(..) => "map".into(),
        Dictionary(_, v) => type_name(v),
        other => other.to_string(),
    }
}

/// `Timestamp(µs, "UTC")`, the type of HQL datetimes.
pub(crate) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(crate) fn timestamp_lit(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(
        Some(micros),
        Some("UTC".into()),
    ))
}

pub(crate) fn duration_lit(micros: i64) -> Expr {
    lit(ScalarValue::DurationMicrosecond(Some(micros)))
}

/// A duration as an interval (for `date_bin`).
pub(crate) fn interval_lit(micros: i64) -> Expr {
    lit(ScalarValue::new_interval_mdn(
        0,
        0,
        micros.saturating_mul(1000),
    ))
}

/// A string literal of the same string flavour as `like` (so `Utf8View` columns meet
/// `Utf8View` literals and no cast is needed).
pub(crate) fn string_lit_like(s: &str, like: &DataType) -> Expr {
    match like {
        DataType::Utf8View => lit(ScalarValue::Utf8View(Some(s.to_string()))),
        DataType::LargeUtf8 => lit(ScalarValue::LargeUtf8(Some(s.to_string()))),
        _ => lit(ScalarValue::Utf8(Some(s.to_string()))),
    }
}

/// An exact decimal from a number's text as written (`0.05`, `-1.5e-3`, `42`): the digits and
/// the scale, or `None` when it does not fit in 38 digits.
pub(crate) fn parse_decimal_text(text: &str) -> Option<(i128, i8)> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (mantissa_text, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let (int_part, frac_part) = match mantissa_text.find('.') {
        Some(i) => (&mantissa_text[..i], &mantissa_text[i + 1..]),
        None => (mantissa_text, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let digits: String = format!("{int_part}{frac_part}");
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = digits.trim_start_matches('0');
    let mut scale = i32::try_from(frac_part.len()).ok()? - exp;
    let mut value: i128 = if digits.is_empty() {
        0
    } else {
        if digits.len() > 38 {
            return None;
        }
        digits.parse().ok()?
    };
    // Negative scale: multiply out (`1e3` is 1000 at scale 0).
    while scale < 0 {
        value = value.checked_mul(10)?;
        scale += 1;
    }
    // Drop trailing zeros past the point (`1.50` is 15 at scale 1).
    while scale > 0 && value != 0 && value % 10 == 0 {
        value /= 10;
        scale -= 1;
    }
    if value == 0 {
        scale = 0;
    }
    if scale > 38 {
        return None;
    }
    Some((if neg { -value } else { value }, scale as i8))
}

/// `value × 10^-scale` rescaled to `to_scale` (only ever up), if it fits `precision` digits.
pub(crate) fn rescale(value: i128, scale: i8, to_scale: i8, precision: u8) -> Option<i128> {
    if to_scale < scale {
        return None;
    }
    let mut v = value;
    for _ in 0..(to_scale - scale) {
        v = v.checked_mul(10)?;
    }
    let limit = 10i128.checked_pow(u32::from(precision))?;
    (v.abs() < limit).then_some(v)
}

/// Number of decimal digits of `v` (at least 1).
pub(crate) fn digits(v: i128) -> u8 {
    let mut n = 1u8;
    let mut x = v.unsigned_abs();
    while x >= 10 {
        x /= 10;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text() {
        assert_eq!(parse_decimal_text("0.05"), Some((5, 2)));
        assert_eq!(parse_decimal_text("-1.5e-3"), Some((-15, 4)));
        assert_eq!(parse_decimal_text("1e3"), Some((1000, 0)));
        assert_eq!(parse_decimal_text("1.50"), Some((15, 1)));
        assert_eq!(parse_decimal_text("0.0"), Some((0, 0)));
        assert_eq!(parse_decimal_text("42"), Some((42, 0)));
        assert_eq!(parse_decimal_text("2.5E+2"), Some((250, 0)));
        assert_eq!(parse_decimal_text("abc"), None);
        assert_eq!(rescale(5, 2, 18, 38), Some(50_000_000_000_000_000));
        assert_eq!(rescale(5, 2, 1, 38), None);
        assert_eq!(digits(0), 1);
        assert_eq!(digits(-999), 3);
    }
}
