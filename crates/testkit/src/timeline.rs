//! Placing records in time: a daily and weekly traffic cycle over `[start, start + span)`.
//!
//! The span is cut at UTC hour boundaries; each piece gets a mass `duration × weight(hour, day)`.
//! A position `q ∈ [0, 1)` in "traffic mass" maps to the instant where the cumulative mass
//! reaches `q`. Placing record `i` of `n` at `q = (i + u) / n` (`u` uniform) covers the whole
//! span in sequence order, keeps the records sorted, and still gives busier working hours.

use chrono::{DateTime, Datelike, Duration, TimeDelta, Timelike, Utc};

/// Relative traffic per UTC hour: low at night, a broad peak over European afternoon and US
/// morning.
const HOUR_WEIGHT: [f64; 24] = [
    0.35, 0.30, 0.27, 0.25, 0.27, 0.33, 0.45, 0.65, 0.90, 1.10, 1.25, 1.35, 1.45, 1.55, 1.65, 1.70,
    1.65, 1.50, 1.30, 1.10, 0.90, 0.70, 0.55, 0.42,
];

/// Weekend days carry this share of a weekday's traffic.
const WEEKEND_FACTOR: f64 = 0.5;

/// Above this many hourly pieces (about 23 years) the cycle is dropped: traffic is uniform.
const MAX_PIECES: i64 = 200_000;

const MICROS_PER_HOUR: i64 = 3_600_000_000;

#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    start: DateTime<Utc>,
    /// Length of the span in microseconds (≥ 1).
    span_us: i64,
    /// Offset (µs from `start`) where each piece begins; `bounds[0] == 0`.
    bounds: Vec<i64>,
    /// Traffic weight of each piece.
    weights: Vec<f64>,
    /// Cumulative mass before each piece; same length as `bounds`.
    cum: Vec<f64>,
    total: f64,
}

fn weight_at(t: DateTime<Utc>) -> f64 {
    let day = if t.weekday().number_from_monday() >= 6 {
        WEEKEND_FACTOR
    } else {
        1.0
    };
    HOUR_WEIGHT[t.hour() as usize % 24] * day
}

impl Timeline {
    /// `start` must already be at microsecond precision. A non-positive span becomes 1 µs.
    pub(crate) fn new(start: DateTime<Utc>, span: Duration) -> Self {
        let span_us = span.num_microseconds().unwrap_or(i64::MAX).max(1);
        // Fits in i64 only when the end is representable; otherwise clamp the span.
        let span_us = match start.checked_add_signed(TimeDelta::microseconds(span_us)) {
            Some(_) => span_us,
            None => (DateTime::<Utc>::MAX_UTC - start)
                .num_microseconds()
                .unwrap_or(i64::MAX)
                .max(1),
        };
        let mut bounds = Vec::new();
        let mut weights = Vec::new();
        if span_us / MICROS_PER_HOUR > MAX_PIECES {
            bounds.push(0);
            weights.push(1.0);
        } else {
            // First boundary: the next full UTC hour after start.
            let into_hour = i64::from(start.minute()) * 60_000_000
                + i64::from(start.second()) * 1_000_000
                + i64::from(start.timestamp_subsec_micros());
            let mut offset = 0i64;
            let mut next = MICROS_PER_HOUR - into_hour;
            while offset < span_us {
                bounds.push(offset);
                weights.push(weight_at(start + TimeDelta::microseconds(offset)));
                offset = next;
                next = next.saturating_add(MICROS_PER_HOUR);
            }
        }
        let mut cum = Vec::with_capacity(bounds.len());
        let mut total = 0.0;
        for (i, w) in weights.iter().enumerate() {
            cum.push(total);
            let end = bounds.get(i + 1).copied().unwrap_or(span_us);
            total += (end - bounds[i]) as f64 * w;
        }
        Timeline {
            start,
            span_us,
            bounds,
            weights,
            cum,
            total,
        }
    }

    /// The instant at traffic position `q` (clamped to `[0, 1)`), in `[start, start + span)`.
    pub(crate) fn at(&self, q: f64) -> DateTime<Utc> {
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let target = q * self.total;
        let k = self
            .cum
            .partition_point(|c| *c <= target)
            .saturating_sub(1)
            .min(self.bounds.len() - 1);
        let within = (target - self.cum[k]) / self.weights[k];
        let offset = (self.bounds[k] as f64 + within).floor() as i64;
        let offset = offset.clamp(0, self.span_us - 1);
        self.start + TimeDelta::microseconds(offset)
    }

    /// The last instant of the span.
    #[cfg(test)]
    pub(crate) fn last(&self) -> DateTime<Utc> {
        self.start + TimeDelta::microseconds(self.span_us - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn covers_span_monotonically() {
        let start = t("2025-03-03T10:17:00Z"); // a Monday
        let tl = Timeline::new(start, Duration::days(7));
        let end = start + Duration::days(7);
        let mut prev = start;
        for i in 0..10_000 {
            let at = tl.at(i as f64 / 10_000.0);
            assert!(at >= prev && at < end);
            prev = at;
        }
        assert_eq!(tl.at(0.0), start);
        assert!(tl.at(0.999_999) > start + Duration::days(6));
        assert_eq!(tl.at(1.0), tl.last());
        assert_eq!(tl.last(), end - Duration::microseconds(1));
    }

    #[test]
    fn working_hours_are_busier() {
        let start = t("2025-03-03T00:00:00Z");
        let tl = Timeline::new(start, Duration::days(1));
        let n = 24_000;
        let mut per_hour = [0u32; 24];
        for i in 0..n {
            per_hour[tl.at(i as f64 / n as f64).hour() as usize] += 1;
        }
        assert!(per_hour[15] > 4 * per_hour[3], "{per_hour:?}");
    }

    #[test]
    fn degenerate_spans() {
        let start = t("2025-01-01T00:00:00Z");
        let tl = Timeline::new(start, Duration::zero());
        assert_eq!(tl.at(0.5), start);
        let tl = Timeline::new(start, Duration::minutes(-5));
        assert_eq!(tl.at(0.9), start);
        let tl = Timeline::new(start, Duration::MAX);
        assert!(tl.at(0.5) > start);
    }
}
