//! Route stage: gives each record its event time and its partition path within a table.
//!
//! Pure and synchronous: a [`TableRouter`] borrows the record's bytes, validates them as one JSON
//! object, reads the event-time and partition fields in one pass, and renders the Hive path into
//! a reused buffer. Strings without escapes are borrowed from the record; the JSON pass itself
//! is not allocation-free (serde_json's skip keeps a nesting stack). A path too long for the
//! store is a bad record ([`RouteError::PathTooLong`]).

pub mod escape;
pub mod json;
pub mod template;
pub mod timestamp;

use std::borrow::Cow;

use json::{FieldSet, JsonError};
use std::time::Duration;
use template::{PartitionTemplate, RecordKeys, Renderer};
use timestamp::{
    parse_time_number, parse_time_str, TimeZoneSpec, TimestampError, TimestampSource, TimestampUnit,
};

/// A Kafka record as the route stage sees it.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Kafka timestamp in milliseconds, if the record has one.
    pub kafka_millis: Option<i64>,
    pub payload: Option<&'a [u8]>,
}

/// What a record without a usable event time does (`on_missing_timestamp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingTimestamp {
    /// Use the record's Kafka timestamp (and the wall clock if it has none).
    Kafka,
    /// Stop the daemon with an error naming the record.
    Fail,
    /// Write the record to the dead-letter destination with the reason.
    #[serde(rename = "dlq")]
    DeadLetter,
}

/// How one table routes its records: where the event time comes from and what happens when it
/// is unusable, the partition template and its time zone, and the limits on a record.
#[derive(Clone, Debug)]
pub struct Rules<'a> {
    pub timestamp: &'a TimestampSource,
    pub partition: &'a PartitionTemplate,
    pub timezone: &'a TimeZoneSpec,
    pub on_missing_timestamp: MissingTimestamp,
    pub max_record_bytes: u64,
    pub max_future_skew: Duration,
}

/// Why a record cannot be written to a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("empty or null value (tombstone)")]
    Empty,
    #[error("value of {bytes} bytes is above max_record_bytes ({max})")]
    TooLarge { bytes: usize, max: u64 },
    #[error("value is not UTF-8 (invalid byte at {0})")]
    NotUtf8(usize),
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("no event time: field `{0}` is missing or null")]
    MissingTimestamp(String),
    #[error("bad event time in field `{field}`: {source}")]
    BadTimestamp {
        field: String,
        #[source]
        source: TimestampError,
    },
    /// The record does not fit the table's schema (Parquet tables; found when its rows are
    /// settled, after routing).
    #[error("does not match the table's schema: {0}")]
    Schema(String),
    /// A Confluent-framed record whose schema id is unknown or whose data does not decode.
    #[error("Confluent wire format: {0}")]
    Wire(String),
    #[error("event time {event} is more than {skew_secs}s ahead of the record's Kafka timestamp {reference}")]
    FutureTimestamp {
        event: String,
        reference: String,
        skew_secs: u64,
    },
    /// The rendered partition path does not fit the store's limits: a directory name over
    /// [`MAX_PATH_SEGMENT_BYTES`] or an object key over [`MAX_KEY_BYTES`].
    #[error(
        "partition path `{}…` ({bytes} bytes) is too long: {limit}",
        truncate(path, 80)
    )]
    PathTooLong {
        path: String,
        bytes: usize,
        limit: &'static str,
    },
    #[error("its partition {path} ends at or before the table's watermark {watermark} of when its segment began: it is sealed (late_after_seal = \"dlq\")")]
    LateAfterSeal { path: String, watermark: String },
}

/// Longest object key S3, GCS and Azure accept, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest file or directory name local file systems accept (ext4, xfs, APFS, NTFS), in bytes.
pub const MAX_PATH_SEGMENT_BYTES: usize = 255;

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl RouteError {
    /// Whether `on_missing_timestamp` (rather than `on_bad_record`) governs this error.
    pub fn is_timestamp_problem(&self) -> bool {
        matches!(
            self,
            RouteError::MissingTimestamp(_)
                | RouteError::BadTimestamp { .. }
                | RouteError::FutureTimestamp { .. }
        )
    }

    /// A short, stable name for counting (`invalid_json`, `missing_timestamp`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            RouteError::Empty => "empty",
            RouteError::TooLarge { .. } => "too_large",
            RouteError::NotUtf8(_) => "not_utf8",
            RouteError::Json(JsonError::Invalid(_)) => "invalid_json",
            RouteError::Json(JsonError::NotAnObject) => "not_an_object",
            RouteError::MissingTimestamp(_) => "missing_timestamp",
            RouteError::BadTimestamp { .. } => "bad_timestamp",
            RouteError::FutureTimestamp { .. } => "future_timestamp",
            RouteError::Schema(_) => "schema_mismatch",
            RouteError::Wire(_) => "wire_format",
            RouteError::PathTooLong { .. } => "partition_path_too_long",
            RouteError::LateAfterSeal { .. } => "late_after_seal",
        }
    }
}

/// Where a routed record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    pub event_micros: i64,
    /// The record's own event time was unusable and the Kafka timestamp was used instead.
    pub fell_back: bool,
}

/// Routes records of one table.
#[derive(Debug)]
pub struct TableRouter {
    fields: FieldSet,
    timestamp: Option<(usize, String, TimestampUnit)>,
    template_fields: Vec<usize>,
    renderer: Renderer,
    on_missing: MissingTimestamp,
    max_bytes: u64,
    skew_micros: i64,
    /// Longest partition path whose object keys stay within [`MAX_KEY_BYTES`] (see
    /// [`TableRouter::limit_path`]).
    max_path_bytes: usize,
}

impl TableRouter {
    pub fn new(table: &Rules<'_>) -> Result<TableRouter, json::TooManyFields> {
        let mut fields = FieldSet::default();
        let timestamp = match table.timestamp {
            TimestampSource::Kafka => None,
            TimestampSource::Field { path, unit } => {
                Some((fields.add(path)?, path.join("."), *unit))
            }
        };
        let template_fields = table
            .partition
            .fields()
            .map(|p| fields.add(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TableRouter {
            fields,
            timestamp,
            template_fields,
            renderer: Renderer::new((*table.partition).clone(), (*table.timezone).clone()),
            on_missing: table.on_missing_timestamp,
            max_bytes: table.max_record_bytes,
            skew_micros: i64::try_from(table.max_future_skew.as_micros()).unwrap_or(i64::MAX),
            max_path_bytes: MAX_KEY_BYTES,
        })
    }

    /// Sets the longest partition path this router renders: what is left of [`MAX_KEY_BYTES`]
    /// once the store prefix, the table and the file name are in the key. A longer path is a
    /// bad record ([`RouteError::PathTooLong`]), not an upload that fails on every restart.
    pub fn limit_path(&mut self, bytes: usize) {
        self.max_path_bytes = bytes;
    }

    /// The field paths this table reads of a record (event time, partition fields).
    pub fn paths(&self) -> &[Vec<String>] {
        self.fields.paths()
    }

    /// The largest record this table takes, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Validates the record, finds its event time and writes its partition path into `path`.
    /// `now_micros` is only used for records that carry no Kafka timestamp.
    pub fn route(
        &mut self,
        rec: &RecordRef<'_>,
        now_micros: i64,
        path: &mut String,
    ) -> Result<Routed, RouteError> {
        let text = self.text(rec)?;
        let found = self.fields.extract(text)?;
        self.place(rec, &found, now_micros, path)
    }

    /// The routed fields of a record's text ([`TableRouter::text`]).
    pub fn extract<'a>(&self, text: &'a str) -> Result<json::Found<'a>, RouteError> {
        Ok(self.fields.extract(text)?)
    }

    /// The record's text, if it is one the router can read at all.
    pub fn text<'a>(&self, rec: &RecordRef<'a>) -> Result<&'a str, RouteError> {
        let payload = match rec.payload {
            None | Some([]) => return Err(RouteError::Empty),
            Some(p) => p,
        };
        if payload.len() as u64 > self.max_bytes {
            return Err(RouteError::TooLarge {
                bytes: payload.len(),
                max: self.max_bytes,
            });
        }
        let text =
            std::str::from_utf8(payload).map_err(|e| RouteError::NotUtf8(e.valid_up_to()))?;
        if text.trim_ascii() == "null" {
            return Err(RouteError::Empty);
        }
        Ok(text)
    }

    /// Finds the record's event time and partition path from its routed fields (found by
    /// [`TableRouter::extract`], or by a pass that found the same).
    pub fn place(
        &mut self,
        rec: &RecordRef<'_>,
        found: &json::Found<'_>,
        now_micros: i64,
        path: &mut String,
    ) -> Result<Routed, RouteError> {
        let kafka_micros = rec
            .kafka_millis
            .filter(|m| *m >= 0)
            .map(|m| m.saturating_mul(1000));
        let reference = kafka_micros.unwrap_or(now_micros);

        let (event_micros, fell_back) = match &self.timestamp {
            None => (reference, false),
            Some((i, name, unit)) => match self.field_time(found[*i], name, *unit, reference) {
                Ok(t) => (t, false),
                Err(e) => match self.on_missing {
                    MissingTimestamp::Kafka => (reference, true),
                    MissingTimestamp::Fail | MissingTimestamp::DeadLetter => return Err(e),
                },
            },
        };

        let values: [Option<Cow<'_, str>>; json::MAX_FIELDS] = std::array::from_fn(|k| {
            self.template_fields
                .get(k)
                .and_then(|&fi| found[fi])
                .and_then(json::value_text)
        });
        self.renderer.render(
            &RecordKeys {
                event_micros,
                topic: rec.topic,
                partition: rec.partition,
                fields: &values[..self.template_fields.len()],
            },
            path,
        );
        // Short paths (all of them, in practice) need no scan: no directory name can be over
        // the limit when the whole path is not.
        if path.len() > MAX_PATH_SEGMENT_BYTES.min(self.max_path_bytes) {
            self.check_path(path)?;
        }
        Ok(Routed {
            event_micros,
            fell_back,
        })
    }

    fn check_path(&self, path: &str) -> Result<(), RouteError> {
        let too_long = |limit| RouteError::PathTooLong {
            path: path.to_string(),
            bytes: path.len(),
            limit,
        };
        if path.len() > self.max_path_bytes {
            return Err(too_long(
                "object keys are limited to 1,024 bytes (S3, GCS, Azure) with the table's prefix and the file name",
            ));
        }
        if path.split('/').any(|s| s.len() > MAX_PATH_SEGMENT_BYTES) {
            return Err(too_long(
                "a directory name is limited to 255 bytes (local file systems)",
            ));
        }
        Ok(())
    }

    fn field_time(
        &self,
        raw: Option<&serde_json::value::RawValue>,
        name: &str,
        unit: TimestampUnit,
        reference: i64,
    ) -> Result<i64, RouteError> {
        let raw = raw.ok_or_else(|| RouteError::MissingTimestamp(name.to_string()))?;
        let bad = |source| RouteError::BadTimestamp {
            field: name.to_string(),
            source,
        };
        let t = if json::is_string(raw) {
            let text = json::value_text(raw)
                .ok_or_else(|| RouteError::MissingTimestamp(name.to_string()))?;
            parse_time_str(&text, unit, self.renderer.tz()).map_err(bad)?
        } else if raw.get() == "null" {
            return Err(RouteError::MissingTimestamp(name.to_string()));
        } else {
            parse_time_number(raw.get(), unit).map_err(bad)?
        };
        if t > reference.saturating_add(self.skew_micros) {
            return Err(RouteError::FutureTimestamp {
                event: timestamp::micros_to_utc(t).to_rfc3339(),
                reference: timestamp::micros_to_utc(reference).to_rfc3339(),
                skew_secs: (self.skew_micros / 1_000_000) as u64,
            });
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Plan;

    fn router(extra: &str) -> TableRouter {
        let tables = format!(
            r#"
[[tables]]
name = "ct"
topics = ["ct"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}/region={{field:awsRegion}}"
timestamp = {{ field = "eventTime" }}
{extra}
"#
        );
        TableRouter::new(&Plan::with_tables(&tables).tables[0].route_rules()).unwrap()
    }

    fn rec(payload: &str) -> RecordRef<'_> {
        RecordRef {
            topic: "ct",
            partition: 0,
            offset: 42,
            kafka_millis: Some(1_704_160_000_000), // 2024-01-02T01:46:40Z
            payload: Some(payload.as_bytes()),
        }
    }

    #[test]
    fn a_value_too_long_for_a_key_or_a_directory_name_is_a_bad_record_not_an_upload_failure() {
        let mut r = router("");
        let mut path = String::new();
        let value = |n: usize| {
            format!(
                r#"{{"eventTime":"2024-01-01T22:59:59Z","awsRegion":"{}"}}"#,
                "a".repeat(n)
            )
        };
        // `region=` + 248 bytes is a 255-byte directory name: it fits.
        r.route(&rec(&value(248)), 0, &mut path).unwrap();
        let e = r.route(&rec(&value(249)), 0, &mut path).unwrap_err();
        assert_eq!(e.reason(), "partition_path_too_long");
        assert!(e.to_string().contains("255 bytes"), "{e}");
        // Escaping counts: 100 slashes become 300 bytes.
        let e = r.route(
            &rec(&value(0).replace("\"\"", &format!("\"{}\"", "/".repeat(100)))),
            0,
            &mut path,
        );
        assert_eq!(e.unwrap_err().reason(), "partition_path_too_long");
        // The key limit, once the writer has set what is left of 1,024 bytes.
        r.limit_path(200);
        let e = r.route(&rec(&value(190)), 0, &mut path).unwrap_err();
        assert!(e.to_string().contains("1,024 bytes"), "{e}");
        r.route(&rec(&value(150)), 0, &mut path).unwrap();
        assert!(path.len() <= 200);
    }

    #[test]
    fn late_records_go_to_their_own_hour() {
        let mut r = router("");
        let mut path = String::new();
        r.route(
            &rec(r#"{"eventTime":"2024-01-01T22:59:59Z","awsRegion":"eu-west-1"}"#),
            0,
            &mut path,
        )
        .unwrap();
        assert_eq!(path, "date=2024-01-01/hour=22/region=eu-west-1");
    }

    #[test]
    fn fallback_and_fail_policies() {
        let mut path = String::new();
        let mut strict = router("on_missing_timestamp = \"fail\"");
        let e = strict
            .route(&rec(r#"{"awsRegion":"x"}"#), 0, &mut path)
            .unwrap_err();
        assert_eq!(e.reason(), "missing_timestamp");
        let e = strict
            .route(&rec(r#"{"eventTime":"soon"}"#), 0, &mut path)
            .unwrap_err();
        assert_eq!(e.reason(), "bad_timestamp");
        let e = strict
            .route(
                &rec(r#"{"eventTime":"2030-01-01T00:00:00Z"}"#),
                0,
                &mut path,
            )
            .unwrap_err();
        assert_eq!(e.reason(), "future_timestamp");

        let mut lenient = router("on_missing_timestamp = \"kafka\"");
        let routed = lenient
            .route(&rec(r#"{"eventTime":"soon"}"#), 0, &mut path)
            .unwrap();
        assert!(routed.fell_back);
        assert_eq!(
            path,
            "date=2024-01-02/hour=01/region=__HIVE_DEFAULT_PARTITION__"
        );
    }

    #[test]
    fn bad_records() {
        let mut r = router("");
        let mut path = String::new();
        let mut bad = |p: Option<&[u8]>| {
            let mut x = rec("");
            x.payload = p;
            r.route(&x, 0, &mut path).unwrap_err().reason()
        };
        assert_eq!(bad(None), "empty");
        assert_eq!(bad(Some(b"")), "empty");
        assert_eq!(bad(Some(b"null")), "empty");
        assert_eq!(bad(Some(b"{\"a\":\xff}")), "not_utf8");
        assert_eq!(bad(Some(b"{\"a\":")), "invalid_json");
        assert_eq!(bad(Some(b"[1]")), "not_an_object");
    }
}
