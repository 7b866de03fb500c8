//! Event times: where they come from, how they are parsed, and the time zone partitions use.
//!
//! Every event time is carried as microseconds since the Unix epoch (UTC) from here on.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// Where a table takes each record's event time from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimestampSource {
    /// The Kafka record timestamp (CreateTime or LogAppendTime).
    Kafka,
    /// A JSON field, by path (`["detail", "time"]` for `detail.time`).
    Field {
        path: Vec<String>,
        unit: TimestampUnit,
    },
}

/// How a timestamp field is written (`timestamp = { field = …, unit = … }`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum TimestampUnit {
    /// RFC 3339 strings, or epoch numbers whose unit is told by their magnitude.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// RFC 3339 / ISO 8601 strings only.
    #[serde(rename = "rfc3339", alias = "iso8601")]
    Rfc3339,
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "ms")]
    Millis,
    #[serde(rename = "us")]
    Micros,
}

/// Why a timestamp field could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("timestamp `{0}` is not RFC 3339 / ISO 8601")]
    BadString(String),
    #[error("timestamp `{0}` is not a number of the configured unit")]
    BadNumber(String),
    #[error("timestamp `{0}` is out of range")]
    OutOfRange(String),
}

const MICROS_PER_SEC: i64 = 1_000_000;

/// Parses a timestamp string (RFC 3339, ISO 8601 with `T` or space, `Z` or an offset; a
/// date-time without offset is read in `tz`; a string of digits is an epoch number).
pub fn parse_time_str(
    s: &str,
    unit: TimestampUnit,
    tz: &TimeZoneSpec,
) -> Result<i64, TimestampError> {
    let t = s.trim();
    if matches!(
        unit,
        TimestampUnit::Seconds | TimestampUnit::Millis | TimestampUnit::Micros
    ) || (unit == TimestampUnit::Auto
        && !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !t[1..].contains('-'))
    {
        return parse_time_number(t, unit);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return to_micros(dt.timestamp(), dt.timestamp_subsec_nanos(), s);
    }
    // ISO 8601 with a space instead of `T`, or without an offset.
    let normalized: String;
    let t2 = if t.len() > 10 && t.as_bytes()[10] == b' ' {
        normalized = format!("{}T{}", &t[..10], &t[11..]);
        normalized.as_str()
    } else {
        t
    };
    if let Ok(dt) = DateTime::parse_from_rfc3339(t2) {
        return to_micros(dt.timestamp(), dt.timestamp_subsec_nanos(), s);
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(t2, fmt) {
            let utc = tz
                .naive_to_utc(naive)
                .ok_or_else(|| TimestampError::BadString(s.to_string()))?;
            return to_micros(utc.timestamp(), utc.timestamp_subsec_nanos(), s);
        }
    }
    Err(TimestampError::BadString(s.to_string()))
}

fn to_micros(secs: i64, nanos: u32, original: &str) -> Result<i64, TimestampError> {
    secs.checked_mul(MICROS_PER_SEC)
        .and_then(|v| v.checked_add(i64::from(nanos / 1000)))
        .ok_or_else(|| TimestampError::OutOfRange(original.to_string()))
}

/// Parses an epoch number written as JSON text (`1704157323`, `1704157323123`, `1.7e9`).
pub fn parse_time_number(raw: &str, unit: TimestampUnit) -> Result<i64, TimestampError> {
    let bad = || TimestampError::BadNumber(raw.to_string());
    let value: f64 = if let Ok(i) = raw.parse::<i64>() {
        // Integers stay exact below.
        return scale_int(i, unit).ok_or_else(|| TimestampError::OutOfRange(raw.to_string()));
    } else {
        raw.parse().map_err(|_| bad())?
    };
    if !value.is_finite() {
        return Err(bad());
    }
    let factor = match effective_unit(value.abs(), unit) {
        TimestampUnit::Seconds => 1e6,
        TimestampUnit::Millis => 1e3,
        TimestampUnit::Micros => 1.0,
        _ => return Err(bad()),
    };
    let micros = value * factor;
    if micros.abs() > 9.0e18 {
        return Err(TimestampError::OutOfRange(raw.to_string()));
    }
    Ok(micros.round() as i64)
}

fn effective_unit(magnitude: f64, unit: TimestampUnit) -> TimestampUnit {
    match unit {
        TimestampUnit::Auto | TimestampUnit::Rfc3339 => {
            // Seconds until the year 5138, milliseconds until then in ms, and so on.
            if magnitude < 1e11 {
                TimestampUnit::Seconds
            } else if magnitude < 1e14 {
                TimestampUnit::Millis
            } else {
                TimestampUnit::Micros
            }
        }
        u => u,
    }
}

fn scale_int(i: i64, unit: TimestampUnit) -> Option<i64> {
    match effective_unit(i.unsigned_abs() as f64, unit) {
        TimestampUnit::Seconds => i.checked_mul(MICROS_PER_SEC),
        TimestampUnit::Millis => i.checked_mul(1000),
        _ => Some(i),
    }
}

/// The time zone a table's `{event_time:…}` placeholders are rendered in.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeZoneSpec {
    Fixed(FixedOffset),
    Named(Tz),
}

impl TimeZoneSpec {
    pub const UTC: TimeZoneSpec = TimeZoneSpec::Fixed(match FixedOffset::east_opt(0) {
        Some(o) => o,
        None => unreachable!(),
    });

    /// `UTC`, `Z`, an IANA name (`Europe/Berlin`) or an offset (`+02:00`, `-0530`).
    pub fn parse(s: &str) -> Result<TimeZoneSpec, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t == "Z" || t.is_empty() {
            return Ok(TimeZoneSpec::UTC);
        }
        if t.starts_with('+') || t.starts_with('-') {
            let digits: String = t[1..].chars().filter(|c| c.is_ascii_digit()).collect();
            if digits.len() == 4 || digits.len() == 2 {
                let h: i32 = digits[..2]
                    .parse()
                    .map_err(|_| format!("bad timezone offset `{s}`"))?;
                let m: i32 = if digits.len() == 4 {
                    digits[2..].parse().unwrap_or(0)
                } else {
                    0
                };
                let secs = (h * 3600 + m * 60) * if t.starts_with('-') { -1 } else { 1 };
                return FixedOffset::east_opt(secs)
                    .map(TimeZoneSpec::Fixed)
                    .ok_or_else(|| format!("timezone offset `{s}` is out of range"));
            }
            return Err(format!("bad timezone offset `{s}` (use +HH:MM)"));
        }
        t.parse::<Tz>().map(TimeZoneSpec::Named).map_err(|_| {
            format!(
                "unknown timezone `{s}` (use UTC, an IANA name such as Europe/Berlin, or +HH:MM)"
            )
        })
    }

    /// The UTC offset in seconds that applies at `utc_micros` when it is a fixed one.
    pub fn fixed_offset_secs(&self) -> Option<i32> {
        match self {
            TimeZoneSpec::Fixed(o) => Some(o.local_minus_utc()),
            TimeZoneSpec::Named(_) => None,
        }
    }

    /// The local offset in effect at a UTC instant.
    pub fn offset_at(&self, utc: &DateTime<Utc>) -> FixedOffset {
        match self {
            TimeZoneSpec::Fixed(o) => *o,
            TimeZoneSpec::Named(tz) => tz.offset_from_utc_datetime(&utc.naive_utc()).fix(),
        }
    }

    /// The UTC instant of a local time (the earlier one when it occurs twice; `None` in a gap
    /// that is skipped).
    pub fn local_to_utc(&self, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        self.naive_to_utc(naive)
    }

    fn naive_to_utc(&self, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            TimeZoneSpec::Fixed(o) => o
                .from_local_datetime(&naive)
                .earliest()
                .map(|d| d.with_timezone(&Utc)),
            TimeZoneSpec::Named(tz) => tz
                .from_local_datetime(&naive)
                .earliest()
                .map(|d| d.with_timezone(&Utc)),
        }
    }
}

/// Converts microseconds since the epoch to a UTC date-time (saturating at chrono's range).
pub fn micros_to_utc(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_704_157_323; // 2024-01-02T01:02:03Z

    fn p(s: &str) -> Result<i64, TimestampError> {
        parse_time_str(s, TimestampUnit::Auto, &TimeZoneSpec::UTC)
    }

    #[test]
    fn rfc3339_forms() {
        assert_eq!(p("2024-01-02T01:02:03Z"), Ok(T * 1_000_000));
        assert_eq!(p("2024-01-02T01:02:03.250Z"), Ok(T * 1_000_000 + 250_000));
        assert_eq!(p("2024-01-02T03:02:03+02:00"), Ok(T * 1_000_000));
        assert_eq!(p("2024-01-02 01:02:03Z"), Ok(T * 1_000_000));
        assert_eq!(p("2024-01-02T01:02:03"), Ok(T * 1_000_000));
        assert!(p("yesterday").is_err());
        assert!(p("2024-13-02T01:02:03Z").is_err());
    }

    #[test]
    fn naive_times_use_the_table_zone() {
        let berlin = TimeZoneSpec::parse("Europe/Berlin").unwrap();
        assert_eq!(
            parse_time_str("2024-01-02T02:02:03", TimestampUnit::Auto, &berlin),
            Ok(T * 1_000_000)
        );
    }

    #[test]
    fn epoch_numbers() {
        assert_eq!(
            parse_time_number("1704157323", TimestampUnit::Auto),
            Ok(T * 1_000_000)
        );
        assert_eq!(
            parse_time_number("1704157323000", TimestampUnit::Auto),
            Ok(T * 1_000_000)
        );
        assert_eq!(
            parse_time_number("1704157323000000", TimestampUnit::Auto),
            Ok(T * 1_000_000)
        );
        assert_eq!(
            parse_time_number("1704157323.5", TimestampUnit::Auto),
            Ok(T * 1_000_000 + 500_000)
        );
        assert_eq!(
            parse_time_number("1704157323", TimestampUnit::Millis),
            Ok(T * 1_000)
        );
        assert_eq!(p("1704157323"), Ok(T * 1_000_000));
        assert!(parse_time_number("12abc", TimestampUnit::Auto).is_err());
        assert!(parse_time_number("1e300", TimestampUnit::Auto).is_err());
    }

    #[test]
    fn zones() {
        assert_eq!(
            TimeZoneSpec::parse("UTC").unwrap().fixed_offset_secs(),
            Some(0)
        );
        assert_eq!(
            TimeZoneSpec::parse("+05:30").unwrap().fixed_offset_secs(),
            Some(19800)
        );
        assert_eq!(
            TimeZoneSpec::parse("-0800").unwrap().fixed_offset_secs(),
            Some(-28800)
        );
        assert!(TimeZoneSpec::parse("Mars/Olympus").is_err());
    }
}
