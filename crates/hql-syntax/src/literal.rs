//! Literal values: string escapes, numbers, durations and datetimes.

use crate::ast::{Literal, Span};
use crate::error::{Diagnostic, codes};

pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;

/// Duration units and their length in microseconds. Months and years are not units: they vary.
pub(crate) const DURATION_UNITS: [(&str, i64); 9] = [
    ("us", 1),
    ("ms", 1_000),
    ("s", MICROS_PER_SECOND),
    ("sec", MICROS_PER_SECOND),
    ("m", 60 * MICROS_PER_SECOND),
    ("min", 60 * MICROS_PER_SECOND),
    ("h", 3_600 * MICROS_PER_SECOND),
    ("d", 86_400 * MICROS_PER_SECOND),
    ("w", 7 * 86_400 * MICROS_PER_SECOND),
];

/// The value of a string token (`"…"`, `'…'`, `@"…"`, `@'…'`); `span` is the token's span in `src`.
pub(crate) fn string_value(src: &str, text: &str, span: Span) -> Result<String, Diagnostic> {
    if let Some(body) = text.strip_prefix('@') {
        let quote = &body[..1];
        let inner = &body[1..body.len() - 1];
        return Ok(inner.replace(&quote.repeat(2), quote));
    }
    let inner = &text[1..text.len() - 1];
    let base = span.start + 1;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let bad = |len: usize, message: String| {
            Diagnostic::new(
                src,
                Span::new(base + i, base + i + len),
                codes::INVALID_ESCAPE,
                message,
            )
            .with_hint(
                "escapes are \\\" \\' \\\\ \\n \\r \\t \\0 and \\u{…}; for regexes and paths \
                 a raw string such as @\"\\d+\" keeps backslashes as they are",
            )
        };
        let Some((_, e)) = chars.next() else {
            return Err(bad(1, "a string cannot end with a lone '\\'".into()));
        };
        match e {
            '"' => out.push('"'),
            '\'' => out.push('\''),
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'u' => {
                let rest = &inner[i + 2..];
                let close = rest.find('}');
                let (Some(hex), Some(close)) = (rest.strip_prefix('{'), close) else {
                    return Err(bad(2, "invalid escape '\\u': write \\u{hex digits}".into()));
                };
                let digits = &hex[..close - 1];
                let value = if (1..=6).contains(&digits.len())
                    && digits.chars().all(|c| c.is_ascii_hexdigit())
                {
                    u32::from_str_radix(digits, 16)
                        .ok()
                        .and_then(char::from_u32)
                } else {
                    None
                };
                let len = 2 + close + 1;
                match value {
                    Some(ch) => out.push(ch),
                    None => {
                        return Err(bad(
                            len,
                            format!("invalid unicode escape '\\u{{{digits}}}'"),
                        ));
                    }
                }
                // Skip the `{…}` we consumed.
                for _ in 0..close + 1 {
                    chars.next();
                }
            }
            other => {
                return Err(bad(
                    1 + other.len_utf8(),
                    format!("invalid escape '\\{other}' in string"),
                ));
            }
        }
    }
    Ok(out)
}

/// The name inside a backtick-quoted identifier.
pub(crate) fn quoted_name(src: &str, text: &str, span: Span) -> Result<String, Diagnostic> {
    let inner = &text[1..text.len() - 1];
    if inner.is_empty() {
        return Err(
            Diagnostic::new(src, span, codes::SYNTAX, "empty quoted name ``")
                .with_hint("write the name between the backticks: `my column`"),
        );
    }
    Ok(inner.replace("``", "`"))
}

/// A number literal: `body` is digits with optional fraction and exponent, `suffix` a duration
/// unit if any; `negative` when a minus sign was folded into it. `span` covers the whole literal.
pub(crate) fn number_value(
    src: &str,
    body: &str,
    suffix: Option<(&str, Span)>,
    negative: bool,
    span: Span,
) -> Result<Literal, Diagnostic> {
    let out_of_range = |what: &str| {
        Diagnostic::new(
            src,
            span,
            codes::NUMBER_OUT_OF_RANGE,
            format!("{what} '{}' is out of range", span.text(src)),
        )
    };
    if let Some((unit, unit_span)) = suffix {
        let Some(&(_, micros)) = DURATION_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(bad_suffix(src, unit, unit_span));
        };
        return match scaled(body, micros, negative) {
            Scaled::Exact(v) => Ok(Literal::Duration(v)),
            Scaled::Fraction => Err(Diagnostic::new(
                src,
                span,
                codes::INVALID_DURATION,
                format!(
                    "duration '{}' is not a whole number of microseconds",
                    span.text(src)
                ),
            )
            .with_hint("the smallest unit is 1us")),
            Scaled::Overflow => Err(out_of_range("duration")),
        };
    }
    let is_float = body.contains(['.', 'e', 'E']);
    let signed = if negative {
        format!("-{body}")
    } else {
        body.to_string()
    };
    if is_float {
        match signed.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Literal::Float {
                value: v,
                text: signed,
            }),
            _ => Err(out_of_range("number")),
        }
    } else {
        signed.parse::<i64>().map(Literal::Int).map_err(|_| {
            out_of_range("integer").with_hint(
                "whole numbers are 64-bit (up to 9223372036854775807); write 1e20 for a real number",
            )
        })
    }
}

fn bad_suffix(src: &str, unit: &str, span: Span) -> Diagnostic {
    let d = Diagnostic::new(
        src,
        span,
        codes::INVALID_NUMBER,
        format!("'{unit}' is not a duration unit"),
    );
    let lower = unit.to_ascii_lowercase();
    let hint = if ["mo", "mon", "month", "months", "y", "yr", "year", "years"]
        .contains(&lower.as_str())
    {
        "months and years vary in length: use 30d or 365d, or startofmonth()/startofyear() with bin"
            .to_string()
    } else if lower == "ns" || lower.starts_with("nano") || lower == "tick" || lower == "ticks" {
        "timestamps have microsecond precision: the smallest unit is 1us".to_string()
    } else if let Some(u) =
        crate::suggest::did_you_mean(unit, DURATION_UNITS.iter().map(|(u, _)| *u))
    {
        format!("did you mean '{u}'? units are w, d, h, m (min), s (sec), ms and us")
    } else {
        "durations are a number and a unit: w, d, h, m (min), s (sec), ms or us, e.g. 7d".into()
    };
    d.with_hint(hint)
}

enum Scaled {
    Exact(i64),
    Fraction,
    Overflow,
}

/// `body` (digits, optional fraction and exponent) times `unit`, exactly, in i128.
fn scaled(body: &str, unit: i64, negative: bool) -> Scaled {
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => match body[i + 1..].parse::<i32>() {
            Ok(e) => (&body[..i], e),
            Err(_) => return Scaled::Overflow,
        },
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Scaled::Overflow;
    }
    let Ok(mut value) = (if digits.is_empty() {
        Ok(0)
    } else {
        digits.parse::<i128>()
    }) else {
        return Scaled::Overflow;
    };
    value *= i128::from(unit);
    let scale = i64::from(exp) - frac.len() as i64;
    if scale > 0 {
        for _ in 0..scale {
            value = match value.checked_mul(10) {
                Some(v) if v <= i128::from(i64::MAX) => v,
                _ => return Scaled::Overflow,
            };
        }
    } else {
        for _ in 0..-scale {
            if value == 0 {
                break;
            }
            if value % 10 != 0 {
                return Scaled::Fraction;
            }
            value /= 10;
        }
    }
    let value = if negative { -value } else { value };
    match i64::try_from(value) {
        Ok(v) => Scaled::Exact(v),
        Err(_) => Scaled::Overflow,
    }
}

/// Parses `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM[:SS[.fraction]]`, and an
/// optional `Z` or `±HH:MM` offset (no offset means UTC). Returns microseconds since the Unix
/// epoch; fractions past microseconds are truncated.
pub(crate) fn parse_datetime(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        if s.bytes().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            s.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) || year < 1 {
        return None;
    }
    let mut micros = days_from_civil(year, month, day) * 86_400 * MICROS_PER_SECOND;
    let mut i = 10;
    if i < b.len() && (b[i] == b'T' || b[i] == b't' || b[i] == b' ') {
        i += 1;
        if b.len() < i + 5 || b[i + 2] != b':' {
            return None;
        }
        let (h, m) = (num(i..i + 2)?, num(i + 3..i + 5)?);
        i += 5;
        let mut s = 0;
        if i < b.len() && b[i] == b':' {
            s = num(i + 1..i + 3)?;
            i += 3;
            if i < b.len() && b[i] == b'.' {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let frac = &text[start..i];
                if frac.is_empty() || frac.len() > 9 {
                    return None;
                }
                let padded = format!("{:0<6}", &frac[..frac.len().min(6)]);
                micros += padded.parse::<i64>().ok()?;
            }
        }
        if h > 23 || m > 59 || s > 59 {
            return None;
        }
        micros += ((h * 60 + m) * 60 + s) * MICROS_PER_SECOND;
    }
    if i < b.len() {
        match b[i] {
            b'Z' | b'z' if i + 1 == b.len() => {}
            b'+' | b'-' => {
                let sign = if b[i] == b'+' { 1 } else { -1 };
                let rest = &text[i + 1..];
                let (oh, om) = match rest.len() {
                    5 if rest.as_bytes()[2] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                    4 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                    2 => (num(i + 1..i + 3)?, 0),
                    _ => return None,
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                micros -= sign * (oh * 60 + om) * 60 * MICROS_PER_SECOND;
            }
            _ => return None,
        }
    }
    Some(micros)
}

/// `2026-11-01T10:30:00Z`, with `.ffffff` only when there are sub-second digits.
pub(crate) fn format_datetime(micros: i64) -> String {
    let day_us = 86_400 * MICROS_PER_SECOND;
    let days = micros.div_euclid(day_us);
    let rem = micros.rem_euclid(day_us);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / MICROS_PER_SECOND;
    let frac = rem % MICROS_PER_SECOND;
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:06}Z")
    }
}

/// A duration in its largest exact unit: `7d`, `90m`, `1500ms`, `-1h`.
pub(crate) fn format_duration(micros: i64) -> String {
    const UNITS: [(&str, i64); 6] = [
        ("d", 86_400 * MICROS_PER_SECOND),
        ("h", 3_600 * MICROS_PER_SECOND),
        ("m", 60 * MICROS_PER_SECOND),
        ("s", MICROS_PER_SECOND),
        ("ms", 1_000),
        ("us", 1),
    ];
    for (unit, len) in UNITS {
        if micros % len == 0 {
            return format!("{}{unit}", micros / len);
        }
    }
    format!("{micros}us")
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("1970-01-01"), Some(0));
        assert_eq!(
            parse_datetime("2000-03-01"),
            Some(951_868_800 * MICROS_PER_SECOND)
        );
        assert_eq!(
            parse_datetime("2026-11-01T10:30:00Z"),
            Some(1_793_529_000 * MICROS_PER_SECOND)
        );
        assert_eq!(
            parse_datetime("2026-11-01 12:30:00+02:00"),
            parse_datetime("2026-11-01T10:30:00Z")
        );
        assert_eq!(
            parse_datetime("2026-11-01T10:30:00.123456789"),
            Some(1_793_529_000 * MICROS_PER_SECOND + 123_456)
        );
        assert_eq!(
            parse_datetime("2026-11-01T10:30"),
            parse_datetime("2026-11-01T10:30:00")
        );
        assert_eq!(
            parse_datetime("2024-02-29"),
            Some(19_782 * 86_400 * MICROS_PER_SECOND)
        );
        for text in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.000001Z",
            "1969-12-31T12:00:00Z",
        ] {
            let micros = parse_datetime(text).expect("valid");
            assert_eq!(format_datetime(micros), text);
        }
        assert_eq!(format_duration(7 * 86_400 * MICROS_PER_SECOND), "7d");
        assert_eq!(format_duration(-90 * 60 * MICROS_PER_SECOND), "-90m");
        assert_eq!(format_duration(1_500), "1500us");
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-1",
            "2026-11-01T25:00",
            "2026-11-01T10:30:00X",
            "yesterday",
            "2026-11-01T",
            "",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        let d = |body: &str, unit: i64| match scaled(body, unit, false) {
            Scaled::Exact(v) => Some(v),
            _ => None,
        };
        assert_eq!(d("1.5", 3_600 * MICROS_PER_SECOND), Some(5_400_000_000));
        assert_eq!(d("250", 1_000), Some(250_000));
        assert_eq!(d("0.5", 1), None);
        assert_eq!(d("1e3", 1_000), Some(1_000_000));
        assert_eq!(d("99999999999999999999", 1), None);
    }
}
