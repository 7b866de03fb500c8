//! What a running daemon shows from outside: Prometheus metrics ([`Metrics`], served as
//! OpenMetrics text at `/metrics`) and the state behind `/healthz` and `/readyz` ([`Health`]).
//!
//! Counting stays off the per-record path: records, bytes and files are counted per batch or
//! per segment, gauges are set by the poll loop once per commit interval. A labelled family
//! takes a read lock to find its label set; nothing here is touched once per record.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::commit::Tp;

type Labels = Vec<(&'static str, Arc<str>)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the daemon exposes; names and labels are documented in `docs/OPERATING.md`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Records written to tables, by table and topic.
    pub records: Family<Labels, Counter>,
    /// Bytes (keys, values and headers) read from Kafka, by topic.
    pub bytes_in: Family<Labels, Counter>,
    /// Bytes of uploaded objects, by table.
    pub bytes_written: Family<Labels, Counter>,
    /// Objects uploaded, by table.
    pub files_written: Family<Labels, Counter>,
    /// Records sent to the dead-letter destination, by table and reason.
    pub dead_letters: Family<Labels, Counter>,
    /// Records whose event time fell back to the Kafka timestamp, by table.
    pub timestamp_fallbacks: Family<Labels, Counter>,
    /// Records behind the high watermark (read-committed), by topic and partition.
    pub consumer_lag: Family<Labels, Gauge>,
    pub partitions_assigned: Gauge,
    pub rebalances: Counter,
    /// The last offset committed, by topic and partition.
    pub committed_offset: Family<Labels, Gauge>,
    pub last_commit_timestamp: FloatGauge,
    pub commit_failures: Counter,
    /// Segment claims refused because another claim stood (another writer's cut, or another
    /// incarnation of the topic).
    pub claims_refused: Counter,
    /// From the first byte of an object's completion to its last, per object.
    pub upload_duration: Histogram,
    /// One successful registration of a segment's partitions.
    pub catalog_register_duration: Histogram,
    pub catalog_retries: Counter,
    pub catalog_stalled: Gauge,
    pub buffered_bytes: Gauge,
    pub buffer_limit_bytes: Gauge,
    /// The process's resident set, now and at its peak (read when the metrics are rendered).
    pub resident_bytes: Gauge,
    pub peak_resident_bytes: Gauge,
    /// 1 while fetching is paused for this reason (`memory`, `catalog`).
    pub fetch_paused: Family<Labels, Gauge>,
    pub open_files: Gauge,
    /// When each open file was opened: the oldest gives `oldest_open_file_age_seconds`.
    pub open_ages: Arc<OpenAges>,
    pub oldest_open_file_age: FloatGauge,
    /// Requests to the object store that object_store's client retried (counted from its
    /// retry log events: see [`crate::logging`]); process-wide.
    pub store_retries: Counter,
    /// The newest event time in the lake (uploaded and registered), by table, seconds.
    pub event_time_watermark: Family<Labels, FloatGauge>,
    watermark_micros: Mutex<std::collections::HashMap<Arc<str>, i64>>,
    /// The event time below which a table expects no more records ([`crate::watermark`]),
    /// seconds; absent while it is unknown.
    pub completeness_watermark: Family<Labels, FloatGauge>,
    /// Seal generations this instance wrote, by table.
    pub partitions_sealed: Family<Labels, Counter>,
    pub health: Health,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("lakesink");
        let m = Metrics {
            registry: Registry::default(),
            records: Family::default(),
            bytes_in: Family::default(),
            bytes_written: Family::default(),
            files_written: Family::default(),
            dead_letters: Family::default(),
            timestamp_fallbacks: Family::default(),
            consumer_lag: Family::default(),
            partitions_assigned: Gauge::default(),
            rebalances: Counter::default(),
            committed_offset: Family::default(),
            last_commit_timestamp: FloatGauge::default(),
            commit_failures: Counter::default(),
            claims_refused: Counter::default(),
            upload_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            catalog_register_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            catalog_retries: Counter::default(),
            catalog_stalled: Gauge::default(),
            buffered_bytes: Gauge::default(),
            buffer_limit_bytes: Gauge::default(),
            resident_bytes: Gauge::default(),
            peak_resident_bytes: Gauge::default(),
            fetch_paused: Family::default(),
            open_files: Gauge::default(),
            open_ages: Arc::default(),
            oldest_open_file_age: FloatGauge::default(),
            store_retries: STORE_RETRIES.clone(),
            event_time_watermark: Family::default(),
            watermark_micros: Mutex::default(),
            completeness_watermark: Family::default(),
            partitions_sealed: Family::default(),
            health: Health::default(),
        };
        // (Counters get their `_total` suffix from the encoder.)
        r.register("records", "Records written to tables", m.records.clone());
        r.register(
            "bytes_in",
            "Bytes (keys, values, headers) read from Kafka",
            m.bytes_in.clone(),
        );
        r.register(
            "bytes_written",
            "Bytes of objects uploaded",
            m.bytes_written.clone(),
        );
        r.register("files_written", "Objects uploaded", m.files_written.clone());
        r.register(
            "dead_letters",
            "Records sent to the dead-letter destination",
            m.dead_letters.clone(),
        );
        r.register(
            "timestamp_fallbacks",
            "Records whose event time fell back to the Kafka timestamp",
            m.timestamp_fallbacks.clone(),
        );
        r.register(
            "consumer_lag",
            "Records behind the high watermark (read-committed)",
            m.consumer_lag.clone(),
        );
        r.register(
            "partitions_assigned",
            "Kafka partitions assigned to this member",
            m.partitions_assigned.clone(),
        );
        r.register(
            "rebalances",
            "Assignments received from the group",
            m.rebalances.clone(),
        );
        r.register(
            "committed_offset",
            "Last offset committed to Kafka",
            m.committed_offset.clone(),
        );
        r.register(
            "last_commit_timestamp_seconds",
            "When offsets were last committed (Unix time)",
            m.last_commit_timestamp.clone(),
        );
        r.register(
            "commit_failures",
            "Offset commits that failed",
            m.commit_failures.clone(),
        );
        r.register(
            "claims_refused",
            "Segment claims refused because another claim stood (another writer, or another incarnation of the topic)",
            m.claims_refused.clone(),
        );
        r.register(
            "upload_duration_seconds",
            "Time to complete one object in the store",
            m.upload_duration.clone(),
        );
        r.register(
            "catalog_register_duration_seconds",
            "Time of one successful registration of a segment's partitions",
            m.catalog_register_duration.clone(),
        );
        r.register(
            "catalog_retries",
            "Catalog calls that failed and were retried",
            m.catalog_retries.clone(),
        );
        r.register(
            "catalog_stalled",
            "1 while some partition waits for an unreachable catalog",
            m.catalog_stalled.clone(),
        );
        r.register(
            "buffered_bytes",
            "Bytes held by open files, uploads in flight and the consumer's batches",
            m.buffered_bytes.clone(),
        );
        r.register(
            "buffer_limit_bytes",
            "pipeline.max_buffered_bytes less librdkafka's prefetch, which is reserved from it",
            m.buffer_limit_bytes.clone(),
        );
        r.register(
            "resident_bytes",
            "The process's resident set (VmRSS): the budget, plus the code, threads and what the allocator keeps",
            m.resident_bytes.clone(),
        );
        r.register(
            "peak_resident_bytes",
            "The process's largest resident set so far (VmHWM)",
            m.peak_resident_bytes.clone(),
        );
        r.register(
            "fetch_paused",
            "1 while fetching is paused, by reason",
            m.fetch_paused.clone(),
        );
        r.register("open_files", "Files being written", m.open_files.clone());
        r.register(
            "oldest_open_file_age_seconds",
            "Age of the oldest file being written (0 when none is open): how long its records have waited for the lake",
            m.oldest_open_file_age.clone(),
        );
        r.register(
            "store_retries",
            "Requests to the object store that were retried (503s, resets, timeouts)",
            m.store_retries.clone(),
        );
        r.register(
            "event_time_watermark_seconds",
            "Newest event time uploaded and registered, by table (Unix time)",
            m.event_time_watermark.clone(),
        );
        r.register(
            "completeness_watermark_seconds",
            "Event time below which a table expects no more records: its slowest Kafka partition's newest committed event time minus allowed_lateness (Unix time)",
            m.completeness_watermark.clone(),
        );
        r.register(
            "partitions_sealed",
            "Partition seals written (a re-seal after late records counts again), by table",
            m.partitions_sealed.clone(),
        );
        Metrics { registry: r, ..m }
    }
}

/// Retries of the object store's client, counted by [`crate::logging`] from object_store's own
/// retry events: the client retries inside each request and says so only in its log.
static STORE_RETRIES: std::sync::LazyLock<Counter> = std::sync::LazyLock::new(Counter::default);

/// One more request to the object store was retried.
pub fn count_store_retry() {
    STORE_RETRIES.inc();
}

/// The open files' opening times, as a multiset: a file adds its time when it opens and takes it
/// away when it closes or is abandoned (per file, never per record).
#[derive(Debug, Default)]
pub struct OpenAges(Mutex<std::collections::BTreeMap<Instant, usize>>);

impl OpenAges {
    pub fn opened(&self, at: Instant) {
        *self.0.lock().expect("open ages").entry(at).or_default() += 1;
    }

    pub fn closed(&self, at: Instant) {
        let mut m = self.0.lock().expect("open ages");
        if let Some(n) = m.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                m.remove(&at);
            }
        }
    }

    /// When the oldest open file was opened.
    pub fn oldest(&self) -> Option<Instant> {
        self.0.lock().expect("open ages").keys().next().copied()
    }
}

/// A label set from static names and values.
pub fn labels<const N: usize>(pairs: [(&'static str, &Arc<str>); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.clone())).collect()
}

/// The labels of a Kafka partition.
pub fn tp_labels(tp: &Tp) -> Labels {
    vec![
        ("topic", tp.topic.clone()),
        ("partition", Arc::from(tp.partition.to_string())),
    ]
}

impl Metrics {
    /// The exposition, OpenMetrics text.
    pub fn render(&self) -> String {
        if let Some(r) = crate::memory::resident() {
            self.resident_bytes.set(r.now as i64);
            self.peak_resident_bytes.set(r.peak as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }

    /// Moves a table's event-time watermark forward to `micros` (never back).
    pub fn event_time_landed(&self, table: &Arc<str>, micros: i64) {
        let mut m = self.watermark_micros.lock().expect("watermark lock");
        let newest = m.entry(table.clone()).or_insert(i64::MIN);
        if micros > *newest {
            *newest = micros;
            self.event_time_watermark
                .get_or_create(&labels([("table", table)]))
                .set(micros as f64 / 1e6);
        }
    }

    /// A partition left this member: its per-partition series go.
    pub fn forget(&self, tp: &Tp) {
        let l = tp_labels(tp);
        self.consumer_lag.remove(&l);
        self.committed_offset.remove(&l);
    }

    /// Offsets were committed now.
    pub fn committed(&self, offsets: &[(Tp, i64)]) {
        for (tp, offset) in offsets {
            self.committed_offset
                .get_or_create(&tp_labels(tp))
                .set(*offset);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_commit_timestamp.set(now.as_secs_f64());
    }
}

/// How long the poll loop may go without a turn before `/healthz` says it is stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

/// How long fetching may stay paused by a full memory budget (uploads not draining: the store
/// is slow or down) before `/readyz` says so.
pub const PAUSED_TOO_LONG: Duration = Duration::from_secs(60);

/// The state behind `/healthz` and `/readyz`.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds after `started` of the poll loop's last turn; -1 before its first.
    heartbeat: AtomicI64,
    /// The group assigned this member partitions (or none) at least once.
    assigned: AtomicBool,
    /// Why fetching is paused, and since when (ms after `started`).
    paused: Mutex<Option<(&'static str, i64)>>,
    /// The fatal error, once one stopped the daemon.
    fatal: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            heartbeat: AtomicI64::new(-1),
            assigned: AtomicBool::new(false),
            paused: Mutex::new(None),
            fatal: Mutex::new(None),
        }
    }
}

impl Health {
    fn millis(&self, at: Instant) -> i64 {
        at.saturating_duration_since(self.started).as_millis() as i64
    }

    /// The poll loop took a turn at `now`.
    pub fn beat(&self, now: Instant) {
        self.heartbeat.store(self.millis(now), Ordering::Relaxed);
    }

    pub fn assigned(&self) {
        self.assigned.store(true, Ordering::Relaxed);
    }

    /// Fetching is paused for `reason` (`None`: it is not).
    pub fn paused(&self, reason: Option<&'static str>) {
        let mut p = self.paused.lock().expect("health lock");
        match (reason, p.as_ref()) {
            (Some(r), Some((was, _))) if *was == r => {}
            (Some(r), _) => *p = Some((r, self.millis(Instant::now()))),
            (None, _) => *p = None,
        }
    }

    /// Why fetching is paused, if it is.
    pub fn pause_reason(&self) -> Option<&'static str> {
        self.paused.lock().expect("health lock").map(|(r, _)| r)
    }

    pub fn failed(&self, error: &str) {
        *self.fatal.lock().expect("health lock") = Some(error.to_string());
    }

    /// `Ok(body)` while alive, `Err(reason)` otherwise.
    pub fn live(&self, now: Instant) -> Result<String, String> {
        if let Some(e) = self.fatal.lock().expect("health lock").as_ref() {
            return Err(format!("stopping after a fatal error: {e}\n"));
        }
        let beat = self.heartbeat.load(Ordering::Relaxed);
        let since = self.millis(now) - beat;
        if beat >= 0 && since > STUCK_AFTER.as_millis() as i64 {
            return Err(format!(
                "the poll loop has not turned for {} s\n",
                since / 1000
            ));
        }
        Ok("ok\n".into())
    }

    /// `Ok(body)` while ready to take traffic, `Err(reason)` otherwise.
    pub fn ready(&self, now: Instant) -> Result<String, String> {
        self.live(now)?;
        if !self.assigned.load(Ordering::Relaxed) {
            return Err("waiting for the first assignment from the consumer group\n".into());
        }
        if let Some((reason, since)) = *self.paused.lock().expect("health lock") {
            let secs = (self.millis(now) - since) / 1000;
            match reason {
                "catalog" => {
                    return Err(format!(
                        "fetching paused for {secs} s: the catalog is unreachable\n"
                    ))
                }
                _ if secs >= PAUSED_TOO_LONG.as_secs() as i64 => {
                    return Err(format!("fetching paused for {secs} s: the memory budget is full and uploads are not draining (the store is slow or unreachable)\n"))
                }
                _ => {}
            }
        }
        Ok("ready\n".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_what_the_docs_list() {
        let m = Metrics::default();
        let t: Arc<str> = Arc::from("cloudtrail");
        m.records
            .get_or_create(&labels([("table", &t), ("topic", &t)]))
            .inc_by(3);
        m.event_time_landed(&t, 1_700_000_000_000_000);
        m.event_time_landed(&t, 1_600_000_000_000_000);
        let text = m.render();
        assert!(
            text.contains("lakesink_records_total{table=\"cloudtrail\",topic=\"cloudtrail\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "lakesink_event_time_watermark_seconds{table=\"cloudtrail\"} 1700000000.0"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE lakesink_upload_duration_seconds histogram"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn every_metric_the_dashboard_queries_is_exposed() {
        let dashboard = include_str!("../../deploy/grafana/lakesink.json");
        let parsed: serde_json::Value = serde_json::from_str(dashboard).expect("valid JSON");
        assert!(parsed["panels"].as_array().unwrap().len() >= 10);
        // A family without a series is not in the exposition: give each labelled one a series.
        let m = Metrics::default();
        let x: Arc<str> = Arc::from("x");
        let l =
            |names: &[&'static str]| -> Labels { names.iter().map(|n| (*n, x.clone())).collect() };
        m.records.get_or_create(&l(&["table", "topic"])).inc();
        for f in [
            &m.bytes_in,
            &m.bytes_written,
            &m.files_written,
            &m.timestamp_fallbacks,
        ] {
            f.get_or_create(&l(&["table"])).inc();
        }
        m.dead_letters.get_or_create(&l(&["table", "reason"])).inc();
        m.consumer_lag
            .get_or_create(&l(&["topic", "partition"]))
            .set(1);
        m.committed_offset
            .get_or_create(&l(&["topic", "partition"]))
            .set(1);
        m.fetch_paused.get_or_create(&l(&["reason"])).set(1);
        m.event_time_landed(&x, 1);
        let exposed = m.render();
        let mut names: Vec<&str> = dashboard
            .match_indices("lakesink_")
            .map(|(i, _)| {
                let rest = &dashboard[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() >= 15, "{names:?}");
        for name in names {
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                exposed.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {name}, which the daemon does not expose"
            );
        }
    }

    #[test]
    fn readiness_follows_assignment_and_pauses() {
        let h = Health::default();
        let now = Instant::now();
        h.beat(now);
        assert!(h.live(now).is_ok());
        assert!(h.ready(now).unwrap_err().contains("first assignment"));
        h.assigned();
        assert!(h.ready(now).is_ok());
        h.paused(Some("catalog"));
        assert!(h.ready(now).unwrap_err().contains("catalog"));
        assert!(
            h.live(now).is_ok(),
            "a stalled catalog is no reason to restart"
        );
        h.paused(Some("memory"));
        assert!(
            h.ready(now).is_ok(),
            "a short pause for memory is backpressure"
        );
        assert!(h.ready(now + PAUSED_TOO_LONG * 2).is_err());
        h.paused(None);
        assert!(h.ready(now).is_ok());
        assert!(h.live(now + STUCK_AFTER * 2).is_err());
        h.failed("boom");
        assert!(h.live(now).unwrap_err().contains("boom"));
    }
}
