//! Rotate stage: when the files of a Kafka partition are cut.
//!
//! Lakesink cuts *segments*, not single files: all files that one Kafka partition feeds (this
//! hour, the previous hour for late records, other `region=` values…) are closed together at the
//! same offset. A commit then always covers whole files, and the committed offset is always the
//! start of the next segment. Replaying from it re-reads the records in the same order, so every
//! cut decided by the records themselves (count, bytes) falls at the same offset again and the
//! replay writes the same objects under the same keys. See `docs/DESIGN.md`.
//!
//! Cuts by the clock, memory, revocation or shutdown are not reproducible, and a replay makes
//! its own. So a partition's segments are completed in the store one at a time, each only once
//! the previous one's end offset is committed (the *gate*, in the writer). At most one segment
//! of a partition is ever in the store and uncommitted, and a replay after a crash rewrites the
//! same keys (DESIGN.md, Invariant 2).

use std::time::{Duration, Instant};

use crate::config::RotateLimits;

/// Why a segment was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutReason {
    /// A file reached `max_records` (decided by the data: reproducible).
    Records,
    /// A file reached `max_bytes` as written (decided by the data: reproducible).
    Bytes,
    /// A registry table's records changed schema id (decided by the data: reproducible).
    Schema,
    /// The oldest record waited `max_age` (wall clock: not reproducible, see DESIGN.md).
    Age,
    /// Open files together held more than `max_buffered_bytes` (not reproducible).
    Memory,
    /// The partition was revoked in a rebalance.
    Revoke,
    /// The daemon is shutting down.
    Shutdown,
    /// A replay reached the end of a segment claimed in the store (see [`crate::claim`]).
    Claim,
}

impl CutReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CutReason::Records => "max_records",
            CutReason::Bytes => "max_bytes",
            CutReason::Schema => "schema_change",
            CutReason::Age => "max_age",
            CutReason::Memory => "memory",
            CutReason::Revoke => "revoke",
            CutReason::Shutdown => "shutdown",
            CutReason::Claim => "claim",
        }
    }
}

/// Whether a file with `records` records and `bytes` bytes written is full.
pub(crate) fn file_full(limits: &RotateLimits, records: u64, bytes: u64) -> Option<CutReason> {
    if records >= limits.max_records {
        Some(CutReason::Records)
    } else if bytes >= limits.max_bytes {
        Some(CutReason::Bytes)
    } else {
        None
    }
}

/// The wall-clock deadline of a segment: the earliest `first record + max_age` over its files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// A file of a table with `max_age` got its first record at `at`.
    pub(crate) fn file_opened(&mut self, at: Instant, max_age: Duration) {
        let d = at + max_age;
        self.0 = Some(self.0.map_or(d, |cur| cur.min(d)));
    }

    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.0.is_some_and(|d| now >= d)
    }

    pub(crate) fn reset(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RotateLimits {
        RotateLimits {
            max_records: 3,
            max_bytes: 100,
            max_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn full_by_records_or_bytes() {
        assert_eq!(file_full(&limits(), 2, 99), None);
        assert_eq!(file_full(&limits(), 3, 0), Some(CutReason::Records));
        assert_eq!(file_full(&limits(), 1, 100), Some(CutReason::Bytes));
    }

    #[test]
    fn deadline_is_the_earliest_file() {
        let t0 = Instant::now();
        let mut d = Deadline::default();
        assert!(!d.expired(t0 + Duration::from_secs(3600)));
        d.file_opened(t0 + Duration::from_secs(10), Duration::from_secs(60));
        d.file_opened(t0, Duration::from_secs(30));
        assert!(!d.expired(t0 + Duration::from_secs(29)));
        assert!(d.expired(t0 + Duration::from_secs(30)));
        d.reset();
        assert!(!d.expired(t0 + Duration::from_secs(3600)));
    }
}
