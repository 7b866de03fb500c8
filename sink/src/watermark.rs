//! A table's completeness watermark: the event time below which it expects no more records.
//!
//! For each Kafka partition of the table's topics (all of them, whichever group member reads
//! them), take the newest event time of the table's records in the segments it has committed;
//! the watermark is the oldest of these, minus the table's `allowed_lateness`. A partition that
//! is caught up (its committed offset at the high watermark) holds nothing back, so an idle
//! partition cannot stall the table; when every partition is caught up, the newest of them
//! counts. A partition that is behind and has committed nothing of the table holds the
//! watermark back entirely (`None`).
//!
//! It is computed from the segment claims in the store (each records the newest event time of
//! its records per table) and the group's offsets in Kafka, so any instance, or `lakesink
//! status` from outside, computes the same value from the same state.

use std::collections::HashMap;
use std::time::Duration;

use crate::claim::{Claim, ClaimError, Claims};
use crate::commit::Tp;

/// The tables' watermarks as the daemon last computed them (µs), shared with the writers: a
/// segment of a table with `late_after_seal = "dlq"` takes its table's at its first record.
#[derive(Debug, Default)]
pub struct Current(std::sync::RwLock<HashMap<String, i64>>);

impl Current {
    pub fn set(&self, table: &str, micros: Option<i64>) {
        let mut m = self.0.write().expect("watermarks lock");
        match micros {
            Some(w) => {
                m.insert(table.to_string(), w);
            }
            None => {
                m.remove(table);
            }
        }
    }

    pub fn get(&self, table: &str) -> Option<i64> {
        self.0.read().expect("watermarks lock").get(table).copied()
    }
}

/// What one Kafka partition contributes to a table's watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The group's committed offset (`None`: nothing committed).
    pub committed: Option<i64>,
    /// Kafka's low and high watermarks (`None`: unknown).
    pub low: Option<i64>,
    pub high: Option<i64>,
    /// The newest event time of the table's records in committed segments, µs.
    pub newest: Option<i64>,
}

impl Progress {
    /// Whether every record Kafka holds is committed (an empty partition is).
    pub fn caught_up(&self) -> bool {
        match self.high {
            Some(high) => self.committed.or(self.low).unwrap_or(0) >= high,
            None => false,
        }
    }
}

/// The watermark of a table whose partitions stand at `parts`, in µs since the epoch (see the
/// module docs); `None` while a partition that is behind has committed nothing of it, or no
/// partition has.
pub fn watermark(parts: &[Progress], allowed_lateness: Duration) -> Option<i64> {
    let lateness = i64::try_from(allowed_lateness.as_micros()).unwrap_or(i64::MAX);
    let behind: Vec<&Progress> = parts.iter().filter(|p| !p.caught_up()).collect();
    let base = if behind.is_empty() {
        parts.iter().filter_map(|p| p.newest).max()?
    } else {
        behind
            .iter()
            .map(|p| p.newest)
            .collect::<Option<Vec<i64>>>()?
            .into_iter()
            .min()?
    };
    Some(base.saturating_sub(lateness))
}

/// The newest event time of each table in the claims of one Kafka partition, folded as their
/// segments are committed; keeps only the claims past the committed offset.
#[derive(Debug, Default)]
struct Folded {
    generation: u32,
    /// Where the next listing starts: one past the greatest start seen.
    next: i64,
    /// Per table, the newest event time of committed segments.
    newest: HashMap<String, i64>,
    /// Claims not committed yet.
    pending: Vec<Claim>,
}

/// An object of a committed segment, for the sealer ([`Tracker::collecting`]).
#[derive(Debug, Clone)]
pub struct CommittedFile {
    pub tp: Tp,
    pub generation: u32,
    /// The segment's offsets.
    pub start: i64,
    pub end: i64,
    pub file: crate::claim::ClaimedFile,
}

/// Per table, the newest event time of a claim's records: from its files, or (a claim written
/// before files were recorded) its own newest event time for every table of `tables`.
fn newest_by_table(c: &Claim, tables: &[String]) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    if c.files.is_empty() {
        if let Some(t) = c.newest_event_micros {
            out.extend(tables.iter().map(|name| (name.clone(), t)));
        }
        return out;
    }
    for f in &c.files {
        let (Some(table), Some(t)) = (&f.table, f.max_event_micros) else {
            continue;
        };
        match out.iter_mut().find(|(name, _)| name == table) {
            Some((_, newest)) => *newest = (*newest).max(t),
            None => out.push((table.clone(), t)),
        }
    }
    out
}

/// Keeps the claims of the partitions it is asked about, reading only new claims on each
/// refresh (claims never change), so a daemon can recompute the watermarks every few seconds.
pub struct Tracker {
    claims: std::sync::Arc<Claims>,
    parts: HashMap<Tp, Folded>,
    /// With [`Tracker::collecting`]: the data files of segments committed since the last
    /// [`Tracker::take_committed`].
    committed: Option<Vec<CommittedFile>>,
    /// The Kafka client [`compute`] reads the group's offsets with, made at its first call.
    offsets: Option<crate::kafka::OffsetReader>,
}

impl Tracker {
    pub fn new(claims: std::sync::Arc<Claims>) -> Tracker {
        Tracker {
            claims,
            parts: HashMap::new(),
            committed: None,
            offsets: None,
        }
    }

    /// A tracker that also keeps the files of the segments it sees committed, for the sealer.
    pub fn collecting(claims: std::sync::Arc<Claims>) -> Tracker {
        let mut t = Tracker::new(claims);
        t.committed = Some(Vec::new());
        t
    }

    /// The data files of the segments committed since the last call.
    pub fn take_committed(&mut self) -> Vec<CommittedFile> {
        self.committed
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The newest event time per table of `tp`'s committed segments, once claims up to
    /// `committed` are read. `tables` are the tables reading `tp`'s topic.
    pub async fn newest(
        &mut self,
        tp: &Tp,
        committed: Option<i64>,
        tables: &[String],
    ) -> Result<&HashMap<String, i64>, ClaimError> {
        let generation = self.claims.newest_generation(tp).await?;
        let f = self.parts.entry(tp.clone()).or_default();
        let mut done = Vec::new();
        if generation != f.generation {
            // A new incarnation of the topic: the committed offset is of its claims; what the
            // earlier ones landed counts as committed.
            done.append(&mut f.pending);
            f.generation = generation;
            f.next = 0;
        }
        for c in self.claims.from(tp, generation, f.next).await? {
            f.next = f.next.max(c.start + 1);
            f.pending.push(c);
        }
        let committed = committed.unwrap_or(i64::MIN);
        let (now, pending): (Vec<_>, Vec<_>) =
            f.pending.drain(..).partition(|c| c.end <= committed);
        f.pending = pending;
        done.extend(now);
        for c in done {
            fold(&mut f.newest, &newest_by_table(&c, tables));
            if let Some(out) = &mut self.committed {
                out.extend(c.files.iter().filter(|f| f.table.is_some()).map(|file| {
                    CommittedFile {
                        tp: tp.clone(),
                        generation: c.generation,
                        start: c.start,
                        end: c.end,
                        file: file.clone(),
                    }
                }));
            }
        }
        Ok(&f.newest)
    }
}

/// Why the watermarks could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum WatermarkError {
    #[error(transparent)]
    Claims(#[from] ClaimError),
    #[error(transparent)]
    Offsets(#[from] crate::kafka::OffsetsError),
}

/// Each table's watermark now (µs; `None`: unknown), from the group's offsets in Kafka and
/// the claims `tracker` reads.
pub async fn compute(
    plan: &crate::Plan,
    tracker: &mut Tracker,
) -> Result<Vec<(String, Option<i64>)>, WatermarkError> {
    let reader = match &tracker.offsets {
        Some(r) => r.clone(),
        None => {
            let kafka = plan.kafka.clone();
            let r = tokio::task::spawn_blocking(move || crate::kafka::OffsetReader::new(&kafka))
                .await
                .map_err(|source| crate::kafka::OffsetsError::Task { source })??;
            tracker.offsets = Some(r.clone());
            r
        }
    };
    let offsets = match reader.read(plan.topics()).await {
        Ok(o) => o,
        Err(e) => {
            // A new client next time (a broker moved, credentials rotated…).
            tracker.offsets = None;
            return Err(e.into());
        }
    };
    Ok(from_offsets(plan, offsets, tracker).await?)
}

/// [`compute`] from offsets already read (every topic of `plan`).
pub async fn from_offsets(
    plan: &crate::Plan,
    offsets: Vec<(String, Vec<crate::kafka::PartitionOffsets>)>,
    tracker: &mut Tracker,
) -> Result<Vec<(String, Option<i64>)>, ClaimError> {
    // Owned, so that no borrow of the list lives across the awaits below (a future holding
    // one is not `Send` for the compiler's higher-ranked check).
    let parts: Vec<(Tp, Progress, bool)> = offsets
        .into_iter()
        .flat_map(|(topic, parts)| {
            parts.into_iter().map(move |p| {
                let progress = Progress {
                    committed: p.committed,
                    low: p.low,
                    high: p.high,
                    newest: None,
                };
                (Tp::new(&topic, p.partition), progress, p.error.is_some())
            })
        })
        .collect();
    let mut by_table: HashMap<String, (Vec<Progress>, bool)> = HashMap::new();
    for (tp, progress, failed) in parts {
        let tables: Vec<String> = plan
            .tables
            .iter()
            .filter(|t| t.topics.iter().any(|x| **x == *tp.topic))
            .map(|t| t.name.clone())
            .collect();
        let newest = tracker
            .newest(&tp, progress.committed, &tables)
            .await?
            .clone();
        for t in tables {
            let entry = by_table.entry(t.clone()).or_default();
            entry.0.push(Progress {
                newest: newest.get(&t).copied(),
                ..progress
            });
            // A partition whose offsets could not be read leaves the table unknown.
            entry.1 |= failed;
        }
    }
    Ok(plan
        .tables
        .iter()
        .map(|t| {
            let w = match by_table.get(&t.name) {
                Some((parts, false)) => watermark(parts, t.allowed_lateness),
                _ => None,
            };
            (t.name.clone(), w)
        })
        .collect())
}

fn fold(newest: &mut HashMap<String, i64>, by_table: &[(String, i64)]) {
    for (table, t) in by_table {
        let n = newest.entry(table.clone()).or_insert(i64::MIN);
        *n = (*n).max(*t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::ClaimedFile;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    const H: Duration = Duration::from_secs(3600);
    const HOUR: i64 = 3_600_000_000;

    fn p(committed: i64, high: i64, newest: Option<i64>) -> Progress {
        Progress {
            committed: Some(committed),
            low: Some(0),
            high: Some(high),
            newest,
        }
    }

    #[test]
    fn the_slowest_partition_that_is_behind_sets_the_watermark() {
        let parts = [
            p(10, 20, Some(5 * HOUR)),
            p(10, 20, Some(3 * HOUR)),
            p(20, 20, Some(HOUR)),
        ];
        assert_eq!(watermark(&parts, H), Some(2 * HOUR));
        // Caught up everywhere: the newest counts.
        let idle = [p(20, 20, Some(5 * HOUR)), p(7, 7, Some(3 * HOUR))];
        assert_eq!(watermark(&idle, H), Some(4 * HOUR));
        // A partition behind that has committed nothing holds everything back.
        assert_eq!(watermark(&[p(0, 5, None), p(9, 9, Some(HOUR))], H), None);
        // An empty partition, or one emptied by retention, is caught up.
        let empty = Progress {
            committed: None,
            low: Some(40),
            high: Some(40),
            newest: None,
        };
        assert!(empty.caught_up());
        assert_eq!(watermark(&[empty, p(3, 9, Some(2 * HOUR))], H), Some(HOUR));
        assert_eq!(watermark(&[empty], H), None);
        assert_eq!(watermark(&[], H), None);
    }

    fn claim(start: i64, end: i64, files: &[(&str, i64)]) -> Claim {
        Claim {
            topic: "t".into(),
            partition: 0,
            start,
            end,
            first_timestamp: Some(start),
            first_crc: Some(1),
            generation: 0,
            records: (end - start) as u64,
            newest_event_micros: files.iter().map(|(_, t)| *t).max(),
            objects: files.iter().map(|(t, _)| format!("{t}/{start}")).collect(),
            files: files
                .iter()
                .map(|(t, micros)| ClaimedFile {
                    key: format!("{t}/{start}"),
                    table: Some(t.to_string()),
                    path: Some("date=x".into()),
                    records: 1,
                    bytes: 1,
                    crc32: 0,
                    min_event_micros: Some(*micros),
                    max_event_micros: Some(*micros),
                })
                .collect(),
            late_before: Default::default(),
            writer: "test".into(),
        }
    }

    #[tokio::test]
    async fn a_partition_counts_only_committed_segments_and_reads_each_claim_once() {
        let claims = Arc::new(Claims::new(Arc::new(InMemory::new()), "lake"));
        let tp = Tp::new("t", 0);
        let tables = vec!["a".to_string(), "b".to_string()];
        claims
            .claim(&tp, &claim(0, 10, &[("a", 5 * HOUR), ("b", 2 * HOUR)]))
            .await
            .unwrap();
        claims
            .claim(&tp, &claim(10, 20, &[("a", 9 * HOUR)]))
            .await
            .unwrap();
        let mut tracker = Tracker::new(claims.clone());
        let n = tracker.newest(&tp, None, &tables).await.unwrap();
        assert!(n.is_empty(), "nothing committed: {n:?}");
        let n = tracker
            .newest(&tp, Some(10), &tables)
            .await
            .unwrap()
            .clone();
        assert_eq!((n["a"], n["b"]), (5 * HOUR, 2 * HOUR));
        // A late segment (older events) does not move the newest back.
        claims
            .claim(&tp, &claim(20, 30, &[("a", HOUR), ("b", 3 * HOUR)]))
            .await
            .unwrap();
        let n = tracker
            .newest(&tp, Some(30), &tables)
            .await
            .unwrap()
            .clone();
        assert_eq!((n["a"], n["b"]), (9 * HOUR, 3 * HOUR));
        assert!(tracker.parts[&tp].pending.is_empty());
        assert_eq!(tracker.parts[&tp].next, 21);
    }
}
