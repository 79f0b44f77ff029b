//! Small JSON helpers shared by both parsers: describing values in messages, JSON paths,
//! locating syntax and UTF-8 errors, and reading typed values with precise reasons.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

/// How a value looks in an error message: its JSON type and, for scalars, a short rendering.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", quote_short(s)),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

/// The JSON type name of a value, without its content (for values that may be secret).
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `s` quoted as JSON, cut to about 40 characters.
pub(crate) fn quote_short(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        serde_json::to_string(s).unwrap_or_default()
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{}…", serde_json::to_string(&cut).unwrap_or_default())
    }
}

/// `base.key`, or `base["key"]` when the key is not a plain identifier.
pub(crate) fn join_key(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    let sep = if base.is_empty() || base.ends_with(", ") {
        ""
    } else {
        "."
    };
    if plain {
        format!("{base}{sep}{key}")
    } else {
        format!("{base}[{}]", serde_json::to_string(key).unwrap_or_default())
    }
}

/// A serde_json error's message without its " at line L column C" suffix.
pub(crate) fn syntax_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    full.strip_suffix(&suffix)
        .map(str::to_owned)
        .unwrap_or(full)
}

/// 1-based (line, column) of byte offset `at` in `bytes`; the column counts bytes.
pub(crate) fn line_col(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, before.len() - line_start + 1)
}

/// Reason text for bytes that are not UTF-8.
pub(crate) fn utf8_reason(bytes: &[u8], e: &std::str::Utf8Error, with_line: bool) -> String {
    let at = e.valid_up_to();
    let (line, col) = line_col(bytes, at);
    let pos = if with_line {
        format!("line {line}, column {col}")
    } else {
        format!("column {col}")
    };
    format!(
        "not valid UTF-8: invalid byte at {pos} (byte offset {at}); send the body as UTF-8 encoded JSON"
    )
}

/// Reads a JSON body that must be one value (Helicone log, array or single object batch).
pub(crate) fn parse_value(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("the body is {}", utf8_reason(bytes, &e, true)))?;
    serde_json::from_str(text).map_err(|e| {
        format!(
            "malformed JSON at line {}, column {}: {}",
            e.line(),
            e.column(),
            syntax_message(&e)
        )
    })
}

/// Strips a leading UTF-8 byte-order mark.
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// An integer, also accepting a float with no fractional part (as Python and JavaScript may
/// emit). `Err` holds "expected …, found …"-free detail: the caller words the message.
pub(crate) fn as_integer(v: &Value) -> Option<Result<i64, &'static str>> {
    let Value::Number(n) = v else { return None };
    if let Some(i) = n.as_i64() {
        return Some(Ok(i));
    }
    if n.as_u64().is_some() {
        return Some(Err("is too large (the maximum is 9223372036854775807)"));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(Ok(f as i64)),
        Some(f) if f.fract() == 0.0 => Some(Err("is too large to be an exact integer")),
        _ => Some(Err("is not a whole number")),
    }
}

/// A decimal from a JSON number or a decimal string (`"0.0012"`, `"1.2e-3"`).
pub(crate) fn as_decimal(v: &Value) -> Result<Decimal, String> {
    let text = match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Decimal::from(i));
            }
            match n.as_f64() {
                // `Display` of f64 is the shortest string that reads back to the same f64, and
                // never uses an exponent, so 0.1 stays "0.1".
                Some(f) => format!("{f}"),
                None => n.to_string(),
            }
        }
        Value::String(s) => s.trim().to_owned(),
        other => {
            return Err(format!(
                "expected a decimal number or a decimal string, found {}",
                describe(other)
            ));
        }
    };
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(&text)
    } else {
        Decimal::from_str(&text)
    };
    parsed.map_err(|_| {
        if text.parse::<f64>().is_ok_and(f64::is_finite) {
            format!(
                "{} cannot be held exactly: at most 28 significant digits and 28 decimal places",
                describe(v)
            )
        } else {
            format!(
                "expected a decimal number or a decimal string such as \"0.00042\", found {}",
                describe(v)
            )
        }
    })
}

/// The earliest time Loupe accepts.
pub(crate) fn min_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `Err(reason)` unless `t` lies in [2000-01-01, now + 1 day].
pub(crate) fn check_time_window(t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    let max = now + chrono::Duration::days(1);
    if t < min_time() {
        return Err(format!(
            "{} is before 2000-01-01T00:00:00Z; Loupe only accepts times from 2000 on",
            rfc3339(t)
        ));
    }
    if t > max {
        return Err(format!(
            "{} is more than one day in the future (the server's clock says {}); check the sender's clock and \
             the unit",
            rfc3339(t),
            rfc3339(now)
        ));
    }
    Ok(())
}

/// A time from microseconds since the Unix epoch.
pub(crate) fn from_micros(us: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros(us)
}

/// RFC 3339 with microseconds, for messages.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Serialises a body field: strings are kept verbatim, anything else as compact JSON; `null` is
/// no body.
pub(crate) fn body_string(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Levenshtein distance (ASCII case-insensitive), for did-you-mean hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `camelCase` / `kebab-case` / `Title Case` → `snake_case`.
pub(crate) fn to_snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_lower = false;
    for c in s.chars() {
        if c == '-' || c == ' ' || c == '.' {
            out.push('_');
            prev_lower = false;
        } else if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        assert_eq!(
            join_key("records[3].properties", "env"),
            "records[3].properties.env"
        );
        assert_eq!(
            join_key("records[3].properties", "my key"),
            "records[3].properties[\"my key\"]"
        );
        assert_eq!(join_key("", "model"), "model");
        assert_eq!(join_key("line 4, ", "model"), "line 4, model");
    }

    #[test]
    fn decimals_keep_their_digits() {
        assert_eq!(as_decimal(&json!(0.1)).ok(), Decimal::from_str("0.1").ok());
        assert_eq!(
            as_decimal(&json!(0.00080352)).ok(),
            Decimal::from_str("0.00080352").ok()
        );
        assert_eq!(
            as_decimal(&json!("1.5e-3")).ok(),
            Decimal::from_str("0.0015").ok()
        );
        assert_eq!(as_decimal(&json!(3)).ok(), Some(Decimal::from(3)));
        assert!(as_decimal(&json!("abc")).is_err());
        assert!(as_decimal(&json!(1e300)).is_err());
        assert!(as_decimal(&json!(true)).is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(as_integer(&json!(5)), Some(Ok(5)));
        assert_eq!(as_integer(&json!(5.0)), Some(Ok(5)));
        assert!(matches!(as_integer(&json!(5.5)), Some(Err(_))));
        assert!(matches!(as_integer(&json!(u64::MAX)), Some(Err(_))));
        assert_eq!(as_integer(&json!("5")), None);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("modle", "model"), 2);
        assert_eq!(edit_distance("prompt_token", "prompt_tokens"), 1);
        assert_eq!(edit_distance("MODEL", "model"), 0);
        assert_eq!(to_snake_case("createdAt"), "created_at");
        assert_eq!(to_snake_case("promptTokens"), "prompt_tokens");
        assert_eq!(to_snake_case("request-id"), "request_id");
    }

    #[test]
    fn locations() {
        assert_eq!(line_col(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_col(b"", 0), (1, 1));
        let bad = b"{\"a\":\"\xff\"}";
        let err = parse_value(bad).err().unwrap_or_default();
        assert!(err.contains("line 1, column 7"), "{err}");
        let err = parse_value(b"{\n \"a\": }").err().unwrap_or_default();
        assert!(
            err.starts_with("malformed JSON at line 2, column 7"),
            "{err}"
        );
    }
}
