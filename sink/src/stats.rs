//! Counters of what the pipeline did, in total: the demo, the progress line, the steady log
//! line and the run's summary read snapshots of it. The labelled series that `/metrics` serves
//! are in [`Stats::metrics`].

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    pub records_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub records_written: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub segments_committed: AtomicU64,
    pub timestamp_fallbacks: AtomicU64,
    pub offsets_committed: AtomicU64,
    /// Partitions registered in the catalog by this process.
    pub partitions_registered: AtomicU64,
    /// Time spent in successful catalog registrations, µs.
    pub catalog_micros: AtomicU64,
    /// Records sent to the dead-letter destination.
    pub dead_letters: AtomicU64,
    /// Dead-lettered records by `table/reason`.
    pub dead_letter_reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Records behind the high watermarks of the assignment, as last seen (a gauge).
    pub lag: AtomicU64,
    /// The Prometheus series and the health state (see [`crate::metrics`]). The counters and
    /// gauges without labels live only there (catalog retries, assigned partitions, commit
    /// failures, refused claims); those above are totals over labelled series, which
    /// prometheus-client cannot sum, so they are counted here as well.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub records_in: u64,
    pub bytes_in: u64,
    pub records_written: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    pub segments_committed: u64,
    pub timestamp_fallbacks: u64,
    pub offsets_committed: u64,
    pub dead_letters: u64,
    pub partitions_registered: u64,
    pub catalog_micros: u64,
    pub catalog_retries: u64,
    pub partitions_assigned: u64,
    pub lag: u64,
    pub commit_failures: u64,
    pub claims_refused: u64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one dead-lettered record; returns how many this table and reason now have.
    pub fn dead_letter(&self, table: &str, reason: &str) -> u64 {
        self.dead_letters.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .dead_letters
            .get_or_create(&vec![("table", table.into()), ("reason", reason.into())])
            .inc();
        let mut m = self.dead_letter_reasons.lock().expect("stats lock");
        let n = m.entry(format!("{table}/{reason}")).or_default();
        *n += 1;
        *n
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            records_in: g(&self.records_in),
            bytes_in: g(&self.bytes_in),
            records_written: g(&self.records_written),
            files_written: g(&self.files_written),
            bytes_written: g(&self.bytes_written),
            segments_committed: g(&self.segments_committed),
            timestamp_fallbacks: g(&self.timestamp_fallbacks),
            offsets_committed: g(&self.offsets_committed),
            dead_letters: g(&self.dead_letters),
            partitions_registered: g(&self.partitions_registered),
            catalog_micros: g(&self.catalog_micros),
            catalog_retries: self.metrics.catalog_retries.get(),
            partitions_assigned: self.metrics.partitions_assigned.get().max(0) as u64,
            lag: g(&self.lag),
            commit_failures: self.metrics.commit_failures.get(),
            claims_refused: self.metrics.claims_refused.get(),
        }
    }
}

impl Snapshot {
    /// One line for a terminal: progress since `earlier`, `secs` ago.
    pub fn progress_line(&self, start: &Snapshot, secs: f64) -> String {
        let mb = (self.bytes_in - start.bytes_in) as f64 / 1e6;
        format!(
            "{} records, {:.1} MB read, {:.1} MB/s, {} files written, lag {} records",
            self.records_in,
            self.bytes_in as f64 / 1e6,
            mb / secs.max(1e-9),
            self.files_written,
            self.lag
        )
    }
}
