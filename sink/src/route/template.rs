//! Partition templates: `date={event_time:%Y-%m-%d}/hour={event_time:%H}/region={field:awsRegion}`.
//!
//! A template is literal text with placeholders:
//! - `{event_time:STRFTIME}` — the record's event time in the table's zone (chrono syntax);
//! - `{topic}`, `{partition}` — the Kafka topic (escaped) and partition number;
//! - `{field:a.b}` — a JSON field's value, escaped the way Hive escapes partition values.
//!
//! Literal text comes from the config and may contain `/`; values from records never can.

use chrono::format::{Item, StrftimeItems};

use super::escape::escape_partition_value;
use super::timestamp::{micros_to_utc, TimeZoneSpec};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed `{{` at byte {0}")]
    Unclosed(usize),
    #[error("stray `}}` at byte {0}")]
    Stray(usize),
    #[error("unknown placeholder `{{{0}}}` (use event_time:FMT, topic, partition or field:PATH)")]
    Unknown(String),
    #[error("bad strftime format `{0}`")]
    BadFormat(String),
    #[error("field path `{0}` is empty or has an empty segment")]
    BadField(String),
    #[error(
        "the template must not start or end with `/`, contain `//`, or a `.`/`..` segment: `{0}`"
    )]
    BadPath(String),
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    EventTime {
        format: String,
        granularity_secs: i64,
    },
    Topic,
    Partition,
    Field(Vec<String>),
}

/// A parsed partition template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTemplate {
    pub source: String,
    pub pieces: Vec<Piece>,
}

impl PartitionTemplate {
    pub fn parse(s: &str) -> Result<PartitionTemplate, TemplateError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' => {
                    let close = s[i..].find('}').ok_or(TemplateError::Unclosed(i))? + i;
                    let inner = &s[i + 1..close];
                    if !lit.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut lit)));
                    }
                    pieces.push(parse_placeholder(inner)?);
                    i = close + 1;
                }
                b'}' => return Err(TemplateError::Stray(i)),
                _ => {
                    let ch = s[i..].chars().next().expect("in bounds");
                    lit.push(ch);
                    i += ch.len_utf8();
                }
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        // The literal skeleton must be a clean relative path.
        let skeleton: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(l) => l.as_str(),
                _ => "x",
            })
            .collect();
        if skeleton.is_empty()
            || skeleton.starts_with('/')
            || skeleton.ends_with('/')
            || skeleton
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(TemplateError::BadPath(s.to_string()));
        }
        Ok(PartitionTemplate {
            source: s.to_string(),
            pieces,
        })
    }

    /// Field paths the template reads.
    pub fn fields(&self) -> impl Iterator<Item = &[String]> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(path) => Some(path.as_slice()),
            _ => None,
        })
    }

    /// Hive partition columns: the `name=` prefixes of the template's path segments.
    pub fn partition_columns(&self) -> Vec<String> {
        let skeleton: String = self
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(l) => l.clone(),
                _ => "\u{0}".to_string(),
            })
            .collect();
        skeleton
            .split('/')
            .filter_map(|seg| seg.split_once('=').map(|(name, _)| name.to_string()))
            .filter(|n| !n.contains('\u{0}'))
            .collect()
    }
}

/// The calendar unit a partition's time span covers: the finest unit its time placeholders
/// show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpanUnit {
    Second,
    Minute,
    Hour,
    Day,
    Month,
    Year,
}

impl PartitionTemplate {
    /// The unit of a partition's time span (`None`: the template shows no event time, or a
    /// form whose span is not a calendar unit — week numbers, weekdays — and its partitions
    /// are never sealed).
    pub fn span_unit(&self) -> Option<SpanUnit> {
        use chrono::format::{Fixed, Numeric};
        let mut finest: Option<SpanUnit> = None;
        for p in &self.pieces {
            let Piece::EventTime { format, .. } = p else {
                continue;
            };
            for item in StrftimeItems::new(format) {
                let unit = match item {
                    Item::Literal(_) | Item::Space(_) => continue,
                    Item::Numeric(Numeric::Year | Numeric::YearMod100 | Numeric::YearDiv100, _) => {
                        SpanUnit::Year
                    }
                    Item::Numeric(Numeric::Month, _)
                    | Item::Fixed(Fixed::ShortMonthName | Fixed::LongMonthName) => SpanUnit::Month,
                    Item::Numeric(Numeric::Day | Numeric::Ordinal, _) => SpanUnit::Day,
                    Item::Numeric(Numeric::Hour | Numeric::Hour12, _)
                    | Item::Fixed(Fixed::UpperAmPm | Fixed::LowerAmPm) => SpanUnit::Hour,
                    Item::Numeric(Numeric::Minute, _) => SpanUnit::Minute,
                    Item::Numeric(Numeric::Second | Numeric::Timestamp, _) => SpanUnit::Second,
                    _ => return None,
                };
                finest = Some(finest.map_or(unit, |f| f.min(unit)));
            }
        }
        finest
    }

    /// The end of the time span of the partition an event at `micros` goes to, µs since the
    /// epoch: the start of the next second, minute, hour, day, month or year in `tz`.
    pub fn span_end(&self, tz: &TimeZoneSpec, micros: i64) -> Option<i64> {
        use chrono::{Datelike, NaiveDate, NaiveTime, Timelike};
        let unit = self.span_unit()?;
        let utc = micros_to_utc(micros);
        let local = utc.naive_utc() + tz.offset_at(&utc);
        let (date, time) = (local.date(), local.time());
        let hms = |h, m, s| NaiveTime::from_hms_opt(h, m, s);
        let next = match unit {
            SpanUnit::Second => {
                date.and_time(hms(time.hour(), time.minute(), time.second())?)
                    + chrono::Duration::seconds(1)
            }
            SpanUnit::Minute => {
                date.and_time(hms(time.hour(), time.minute(), 0)?) + chrono::Duration::minutes(1)
            }
            SpanUnit::Hour => date.and_time(hms(time.hour(), 0, 0)?) + chrono::Duration::hours(1),
            SpanUnit::Day => date.succ_opt()?.and_time(NaiveTime::MIN),
            SpanUnit::Month => {
                let (y, m) = if date.month() == 12 {
                    (date.year() + 1, 1)
                } else {
                    (date.year(), date.month() + 1)
                };
                NaiveDate::from_ymd_opt(y, m, 1)?.and_time(NaiveTime::MIN)
            }
            SpanUnit::Year => {
                NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)?.and_time(NaiveTime::MIN)
            }
        };
        Some(tz.local_to_utc(next)?.timestamp_micros())
    }
}

fn parse_placeholder(inner: &str) -> Result<Piece, TemplateError> {
    let (name, arg) = match inner.split_once(':') {
        Some((n, a)) => (n.trim(), Some(a)),
        None => (inner.trim(), None),
    };
    match (name, arg) {
        ("event_time", fmt) => {
            let format = fmt.unwrap_or("%Y-%m-%d").to_string();
            if StrftimeItems::new(&format).any(|it| matches!(it, Item::Error)) {
                return Err(TemplateError::BadFormat(format));
            }
            let granularity_secs = granularity(&format);
            Ok(Piece::EventTime {
                format,
                granularity_secs,
            })
        }
        ("topic", None) => Ok(Piece::Topic),
        ("partition", None) => Ok(Piece::Partition),
        ("field", Some(path)) => {
            let parts: Vec<String> = path.split('.').map(|p| p.trim().to_string()).collect();
            if parts.iter().any(String::is_empty) {
                return Err(TemplateError::BadField(path.to_string()));
            }
            Ok(Piece::Field(parts))
        }
        _ => Err(TemplateError::Unknown(inner.to_string())),
    }
}

/// The coarsest time step over which a format's output cannot change (so its rendering can be
/// cached per step): a day unless it shows hours, minutes or finer.
fn granularity(format: &str) -> i64 {
    use chrono::format::{Fixed, Numeric};
    StrftimeItems::new(format)
        .map(|item| match item {
            Item::Numeric(Numeric::Hour | Numeric::Hour12, _)
            | Item::Fixed(Fixed::UpperAmPm | Fixed::LowerAmPm) => 3_600,
            Item::Numeric(Numeric::Minute, _) => 60,
            Item::Numeric(Numeric::Second | Numeric::Nanosecond | Numeric::Timestamp, _) => 1,
            Item::Fixed(
                Fixed::Nanosecond
                | Fixed::Nanosecond3
                | Fixed::Nanosecond6
                | Fixed::Nanosecond9
                | Fixed::RFC2822
                | Fixed::RFC3339,
            ) => 1,
            _ => 86_400,
        })
        .min()
        .unwrap_or(86_400)
}

/// Renders templates, caching the last rendering of each time placeholder, so that a stream of
/// records from the same hour formats its time once.
#[derive(Debug)]
pub struct Renderer {
    template: PartitionTemplate,
    tz: TimeZoneSpec,
    cache: Vec<Option<(i64, String)>>,
}

/// What a record contributes to its partition path.
pub struct RecordKeys<'a> {
    pub event_micros: i64,
    pub topic: &'a str,
    pub partition: i32,
    /// Values of the template's `{field:…}` placeholders, in template order (`None` = missing
    /// or null).
    pub fields: &'a [Option<std::borrow::Cow<'a, str>>],
}

impl Renderer {
    pub fn new(template: PartitionTemplate, tz: TimeZoneSpec) -> Renderer {
        let n = template.pieces.len();
        Renderer {
            template,
            tz,
            cache: vec![None; n],
        }
    }

    pub fn template(&self) -> &PartitionTemplate {
        &self.template
    }

    pub fn tz(&self) -> &TimeZoneSpec {
        &self.tz
    }

    /// Writes the partition path for a record into `out` (cleared first).
    pub fn render(&mut self, keys: &RecordKeys<'_>, out: &mut String) {
        out.clear();
        let mut field_i = 0;
        for (i, piece) in self.template.pieces.iter().enumerate() {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Topic => escape_partition_value(keys.topic, out),
                Piece::Partition => {
                    use std::fmt::Write;
                    let _ = write!(out, "{}", keys.partition);
                }
                Piece::Field(_) => {
                    match keys.fields.get(field_i).and_then(|v| v.as_deref()) {
                        Some(v) => escape_partition_value(v, out),
                        None => escape_partition_value("", out),
                    }
                    field_i += 1;
                }
                Piece::EventTime {
                    format,
                    granularity_secs,
                } => {
                    let secs = keys.event_micros.div_euclid(1_000_000);
                    // Cache key: the step of the local clock the instant falls in. With a named
                    // zone, offsets change on 15-minute boundaries, so never cache coarser.
                    let bucket = match self.tz.fixed_offset_secs() {
                        Some(off) => (secs + i64::from(off)).div_euclid(*granularity_secs),
                        None => secs.div_euclid((*granularity_secs).min(900)),
                    };
                    match &self.cache[i] {
                        Some((b, s)) if *b == bucket => out.push_str(s),
                        _ => {
                            let utc = micros_to_utc(keys.event_micros);
                            let local = utc.with_timezone(&self.tz.offset_at(&utc));
                            let s = local.format(format).to_string();
                            out.push_str(&s);
                            self.cache[i] = Some((bucket, s));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    const T: i64 = 1_704_157_323_000_000; // 2024-01-02T01:02:03Z

    fn render(t: &str, tz: &str, micros: i64, fields: &[Option<&str>]) -> String {
        let tpl = PartitionTemplate::parse(t).unwrap();
        let mut r = Renderer::new(tpl, TimeZoneSpec::parse(tz).unwrap());
        let fields: Vec<Option<Cow<'_, str>>> =
            fields.iter().map(|f| f.map(Cow::Borrowed)).collect();
        let mut out = String::new();
        r.render(
            &RecordKeys {
                event_micros: micros,
                topic: "cloud/trail",
                partition: 7,
                fields: &fields,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn renders_hive_paths() {
        let t = "date={event_time:%Y-%m-%d}/hour={event_time:%H}";
        assert_eq!(render(t, "UTC", T, &[]), "date=2024-01-02/hour=01");
        assert_eq!(render(t, "+05:30", T, &[]), "date=2024-01-02/hour=06");
        assert_eq!(
            render(t, "America/New_York", T, &[]),
            "date=2024-01-01/hour=20"
        );
        assert_eq!(
            render(
                "topic={topic}/p={partition}/region={field:awsRegion}",
                "UTC",
                T,
                &[Some("../x")]
            ),
            "topic=cloud%2Ftrail/p=7/region=..%2Fx"
        );
        assert_eq!(
            render("r={field:a}", "UTC", T, &[None]),
            "r=__HIVE_DEFAULT_PARTITION__"
        );
    }

    #[test]
    fn cache_follows_the_clock() {
        let tpl = PartitionTemplate::parse("d={event_time:%Y-%m-%d}/h={event_time:%H}").unwrap();
        let mut r = Renderer::new(tpl, TimeZoneSpec::UTC);
        let mut out = String::new();
        let hour = 3_600_000_000;
        for k in [0, 1, 0, 25, 24, -1, 0] {
            let m = T + k * hour;
            r.render(
                &RecordKeys {
                    event_micros: m,
                    topic: "t",
                    partition: 0,
                    fields: &[],
                },
                &mut out,
            );
            let dt = micros_to_utc(m);
            assert_eq!(out, dt.format("d=%Y-%m-%d/h=%H").to_string());
        }
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(PartitionTemplate::parse("date={event_time:%Y").is_err());
        assert!(PartitionTemplate::parse("/date={event_time}").is_err());
        assert!(PartitionTemplate::parse("a//b").is_err());
        assert!(PartitionTemplate::parse("../{topic}").is_err());
        assert!(PartitionTemplate::parse("x={nope}").is_err());
        assert!(PartitionTemplate::parse("x={field:a..b}").is_err());
        assert!(PartitionTemplate::parse("x={event_time:%Q}").is_err());
    }

    #[test]
    fn a_partitions_span_ends_at_the_next_unit_its_template_shows() {
        let t = |s: &str| PartitionTemplate::parse(s).unwrap();
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        let utc = TimeZoneSpec::UTC;
        let hourly = t("date={event_time:%Y-%m-%d}/hour={event_time:%H}");
        assert_eq!(hourly.span_unit(), Some(SpanUnit::Hour));
        assert_eq!(
            hourly.span_end(&utc, at("2024-01-02T03:59:59Z")),
            Some(at("2024-01-02T04:00:00Z"))
        );
        let daily = t("dt={event_time:%Y%m%d}/region={field:awsRegion}");
        assert_eq!(
            daily.span_end(&utc, at("2024-12-31T23:00:00Z")),
            Some(at("2025-01-01T00:00:00Z"))
        );
        let monthly = t("month={event_time:%Y-%m}");
        assert_eq!(monthly.span_unit(), Some(SpanUnit::Month));
        assert_eq!(
            monthly.span_end(&utc, at("2024-02-10T00:00:00Z")),
            Some(at("2024-03-01T00:00:00Z"))
        );
        assert_eq!(
            t("y={event_time:%Y}").span_end(&utc, at("2024-02-10T00:00:00Z")),
            Some(at("2025-01-01T00:00:00Z"))
        );
        // In a zone: a Berlin day ends at 23:00 UTC in winter.
        let berlin = TimeZoneSpec::parse("Europe/Berlin").unwrap();
        assert_eq!(
            t("date={event_time:%Y-%m-%d}").span_end(&berlin, at("2024-01-02T22:30:00Z")),
            Some(at("2024-01-02T23:00:00Z"))
        );
        // No time, or a week number: never sealed.
        assert_eq!(t("region={field:awsRegion}").span_unit(), None);
        assert_eq!(t("week={event_time:%G-%V}").span_unit(), None);
    }

    #[test]
    fn granularity_of_formats() {
        assert_eq!(granularity("%Y-%m-%d"), 86_400);
        assert_eq!(granularity("%H"), 3_600);
        assert_eq!(granularity("%Y%m%d%H%M"), 60);
        assert_eq!(granularity("%s"), 1);
    }

    #[test]
    fn partition_columns() {
        let t = PartitionTemplate::parse(
            "date={event_time:%Y-%m-%d}/hour={event_time:%H}/region={field:r}",
        )
        .unwrap();
        assert_eq!(t.partition_columns(), vec!["date", "hour", "region"]);
    }
}
