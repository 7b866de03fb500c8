//! Commit stage: the offset ledger, which says which offset is safe to commit for each Kafka
//! partition, and the error type of committing.
//!
//! A Kafka partition's records are cut into segments `[start, end)` (see [`crate::rotate`]). A
//! segment is *sealed* when it is cut and its files start uploading, and *done* once every file
//! is uploaded and its partition registered in the catalog. The safe offset is the `end` of the
//! longest run of done segments from the oldest one: segments finish out of order, but the
//! offset never passes a segment that is not done, and the open segment (records consumed but
//! not cut) always lies above every sealed one. So the committed offset is never above a record
//! that is not in an uploaded, registered object.
//!
//! Each assignment of a partition gets a new epoch; a segment sealed under an older epoch (the
//! partition was revoked meanwhile) can never move the offset again.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

/// A Kafka topic partition.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tp {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl Tp {
    pub fn new(topic: &str, partition: i32) -> Tp {
        Tp {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl fmt::Display for Tp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

impl fmt::Debug for Tp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Errors of committing offsets to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("committing offsets {offsets} failed: {source}")]
    Kafka {
        offsets: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("segment {tp} [{start}, {end}) does not follow the previous one (ends at {prev})")]
    OutOfOrder {
        tp: Tp,
        start: i64,
        end: i64,
        prev: i64,
    },
}

impl CommitError {
    /// Whether retrying cannot help: the group or topic is not authorized, the group id or the
    /// request is invalid, or the client is in a fatal state. Other errors (coordinator moving
    /// or loading, timeouts, rebalances, broker down) are worth retrying for a while.
    pub fn is_permanent(&self) -> bool {
        use rdkafka::types::RDKafkaErrorCode as C;
        let CommitError::Kafka { source, .. } = self else {
            return true;
        };
        matches!(
            source.rdkafka_error_code(),
            Some(
                C::TopicAuthorizationFailed
                    | C::GroupAuthorizationFailed
                    | C::ClusterAuthorizationFailed
                    | C::SaslAuthenticationFailed
                    | C::Authentication
                    | C::InvalidGroupId
                    | C::OffsetMetadataTooLarge
                    | C::InvalidCommitOffsetSize
                    | C::UnsupportedVersion
                    | C::InvalidRequest
                    | C::Fatal
            )
        )
    }
}

/// Proof that a segment was sealed; hand it back to [`OffsetLedger::done`] once uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub tp: Tp,
    pub epoch: u64,
    pub start: i64,
    pub end: i64,
}

#[derive(Debug, Default)]
struct PartLedger {
    epoch: u64,
    /// Sealed segments by start offset: `(end, done)`.
    sealed: BTreeMap<i64, (i64, bool)>,
    /// The end of the last sealed segment.
    sealed_end: Option<i64>,
    /// Safe to commit (end of the done prefix), not yet acknowledged by Kafka.
    safe: Option<i64>,
    /// Last offset Kafka acknowledged.
    committed: Option<i64>,
}

/// Which offsets are safe to commit, per assigned partition.
#[derive(Debug, Default)]
pub struct OffsetLedger {
    parts: HashMap<Tp, PartLedger>,
    next_epoch: u64,
}

impl OffsetLedger {
    pub fn new() -> OffsetLedger {
        OffsetLedger::default()
    }

    /// The partition was assigned to this member; starts a fresh epoch for it.
    pub fn assign(&mut self, tp: &Tp) -> u64 {
        self.next_epoch += 1;
        let epoch = self.next_epoch;
        self.parts.insert(
            tp.clone(),
            PartLedger {
                epoch,
                ..Default::default()
            },
        );
        epoch
    }

    /// The partition was revoked: nothing sealed before may move its offset any more.
    pub fn revoke(&mut self, tp: &Tp) {
        self.parts.remove(tp);
    }

    pub fn is_assigned(&self, tp: &Tp) -> bool {
        self.parts.contains_key(tp)
    }

    /// The current epoch of an assigned partition.
    pub fn epoch(&self, tp: &Tp) -> Option<u64> {
        self.parts.get(tp).map(|p| p.epoch)
    }

    /// A segment `[start, end)` was cut and its files are uploading.
    pub fn seal(
        &mut self,
        tp: &Tp,
        epoch: u64,
        start: i64,
        end: i64,
    ) -> Result<Option<Ticket>, CommitError> {
        let Some(p) = self.parts.get_mut(tp) else {
            return Ok(None);
        };
        if p.epoch != epoch {
            return Ok(None);
        }
        if let Some(prev) = p.sealed_end {
            if start < prev || end <= start {
                return Err(CommitError::OutOfOrder {
                    tp: tp.clone(),
                    start,
                    end,
                    prev,
                });
            }
        }
        p.sealed.insert(start, (end, false));
        p.sealed_end = Some(end);
        Ok(Some(Ticket {
            tp: tp.clone(),
            epoch,
            start,
            end,
        }))
    }

    /// Every file of the ticket's segment is uploaded and registered.
    pub fn done(&mut self, t: &Ticket) {
        let Some(p) = self.parts.get_mut(&t.tp) else {
            return;
        };
        if p.epoch != t.epoch {
            return;
        }
        if let Some(seg) = p.sealed.get_mut(&t.start) {
            seg.1 = true;
        }
        // Advance over the done prefix.
        while let Some((&start, &(end, done))) = p.sealed.iter().next() {
            if !done {
                break;
            }
            p.sealed.remove(&start);
            p.safe = Some(end);
        }
    }

    /// Offsets that are safe and not yet committed.
    pub fn to_commit(&self) -> Vec<(Tp, i64)> {
        let mut v: Vec<(Tp, i64)> = self
            .parts
            .iter()
            .filter_map(|(tp, p)| match (p.safe, p.committed) {
                (Some(s), Some(c)) if s <= c => None,
                (Some(s), _) => Some((tp.clone(), s)),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// Safe offsets of some partitions (for a revocation), committed or not.
    pub fn safe_offsets(&self, tps: &[Tp]) -> Vec<(Tp, i64)> {
        tps.iter()
            .filter_map(|tp| {
                self.parts
                    .get(tp)
                    .and_then(|p| p.safe)
                    .map(|s| (tp.clone(), s))
            })
            .collect()
    }

    /// Kafka acknowledged these offsets.
    pub fn committed(&mut self, offsets: &[(Tp, i64)]) {
        for (tp, o) in offsets {
            if let Some(p) = self.parts.get_mut(tp) {
                p.committed = Some(p.committed.map_or(*o, |c| c.max(*o)));
            }
        }
    }

    /// Whether Kafka acknowledged an offset of at least `offset` for the partition (in its
    /// current assignment).
    pub fn is_committed(&self, tp: &Tp, offset: i64) -> bool {
        self.parts
            .get(tp)
            .and_then(|p| p.committed)
            .is_some_and(|c| c >= offset)
    }

    /// The consumer's position passed from `from` to `to` without handing out a record: the
    /// offsets between hold transaction markers, or records compacted away. `from` is the
    /// offset after the last record taken in this assignment (`taken`), or, when none was
    /// taken, the offset the group had committed. With every record below `from` landed (a
    /// record taken is landed when its segment is done; with none taken, nothing may have been
    /// sealed in this assignment), nothing below `to` is waiting, so `to` is safe to commit:
    /// without this the group's committed offset would stop short of a trailing marker and
    /// its lag never reach 0. Returns whether the safe offset moved.
    pub fn pass_over(&mut self, tp: &Tp, from: i64, taken: bool, to: i64) -> bool {
        let Some(p) = self.parts.get_mut(tp) else {
            return false;
        };
        let landed = p.sealed.is_empty()
            && if taken {
                p.safe == Some(from)
            } else {
                p.sealed_end.is_none() && p.safe.is_none_or(|s| s == from)
            };
        if landed && to > from {
            p.safe = Some(to);
            true
        } else {
            false
        }
    }

    /// Sealed segments not yet done, over all partitions.
    pub fn pending_segments(&self) -> usize {
        self.parts.values().map(|p| p.sealed.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn done_out_of_order_waits_for_the_oldest() {
        let tp = Tp::new("t", 0);
        let mut l = OffsetLedger::new();
        let e = l.assign(&tp);
        let a = l.seal(&tp, e, 0, 10).unwrap().unwrap();
        let b = l.seal(&tp, e, 10, 25).unwrap().unwrap();
        l.done(&b);
        assert!(l.to_commit().is_empty());
        l.done(&a);
        assert_eq!(l.to_commit(), vec![(tp.clone(), 25)]);
        l.committed(&[(tp.clone(), 25)]);
        assert!(l.to_commit().is_empty());
        assert_eq!(l.pending_segments(), 0);
    }

    #[test]
    fn revoked_epochs_never_commit() {
        let tp = Tp::new("t", 0);
        let mut l = OffsetLedger::new();
        let e1 = l.assign(&tp);
        let a = l.seal(&tp, e1, 0, 10).unwrap().unwrap();
        l.revoke(&tp);
        let e2 = l.assign(&tp);
        l.done(&a);
        assert!(l.to_commit().is_empty());
        assert!(l.seal(&tp, e1, 10, 20).unwrap().is_none());
        let b = l.seal(&tp, e2, 0, 5).unwrap().unwrap();
        l.done(&b);
        assert_eq!(l.to_commit(), vec![(tp, 5)]);
    }

    #[test]
    fn offsets_without_records_are_passed_over_once_everything_below_is_landed() {
        let tp = Tp::new("t", 0);
        let mut l = OffsetLedger::new();
        let e = l.assign(&tp);
        // Records 0..10 taken, a transaction marker at 10: the position is 11.
        let a = l.seal(&tp, e, 0, 10).unwrap().unwrap();
        assert!(
            !l.pass_over(&tp, 10, true, 11),
            "segment [0, 10) is not done"
        );
        l.done(&a);
        assert!(
            !l.pass_over(&tp, 9, true, 11),
            "record 9 was taken after the done segment"
        );
        assert!(l.pass_over(&tp, 10, true, 11));
        assert_eq!(l.to_commit(), vec![(tp.clone(), 11)]);
        l.committed(&[(tp.clone(), 11)]);
        // Records taken after it are sealed from 11 on.
        let b = l.seal(&tp, e, 11, 20).unwrap().unwrap();
        l.done(&b);
        assert_eq!(l.to_commit(), vec![(tp.clone(), 20)]);

        // Nothing taken in this assignment: from the group's committed offset, unless a
        // segment was sealed (its records were taken).
        let other = Tp::new("t", 1);
        let e = l.assign(&other);
        assert!(l.pass_over(&other, 40, false, 41));
        assert_eq!(
            l.safe_offsets(std::slice::from_ref(&other)),
            vec![(other.clone(), 41)]
        );
        assert!(!l.pass_over(&other, 40, false, 42), "41 is safe, not 40");
        l.seal(&other, e, 41, 45).unwrap();
        assert!(!l.pass_over(&other, 41, false, 46));
        assert!(!l.pass_over(&Tp::new("t", 9), 0, false, 1), "not assigned");
    }

    #[test]
    fn overlapping_segments_are_refused() {
        let tp = Tp::new("t", 0);
        let mut l = OffsetLedger::new();
        let e = l.assign(&tp);
        l.seal(&tp, e, 0, 10).unwrap();
        assert!(l.seal(&tp, e, 5, 15).is_err());
        assert!(l.seal(&tp, e, 10, 10).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Consume(u8),
        Cut,
        Finish(usize),
        Commit,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u8..20).prop_map(Op::Consume),
            Just(Op::Cut),
            (0usize..8).prop_map(Op::Finish),
            Just(Op::Commit),
        ]
    }

    proptest! {
        /// For any interleaving of consuming, cutting, uploads finishing in any order and
        /// commits, the committed offset is never above a record that is not uploaded, and once
        /// everything is uploaded it reaches the end.
        #[test]
        fn committed_offset_never_passes_an_unuploaded_record(ops in prop::collection::vec(op(), 1..200)) {
            let tp = Tp::new("t", 3);
            let mut l = OffsetLedger::new();
            let e = l.assign(&tp);
            let mut next = 0i64;          // next offset to consume
            let mut open_start = 0i64;    // first offset of the open segment
            let mut uploading: Vec<Ticket> = Vec::new();
            let mut uploaded_upto: Vec<(i64, i64)> = Vec::new(); // done segments
            let mut committed = 0i64;
            let uploaded = |ranges: &Vec<(i64, i64)>, off: i64| ranges.iter().any(|(s, e)| *s <= off && off < *e);
            for op in ops {
                match op {
                    Op::Consume(n) => next += i64::from(n),
                    Op::Cut => {
                        if next > open_start {
                            uploading.push(l.seal(&tp, e, open_start, next).unwrap().unwrap());
                            open_start = next;
                        }
                    }
                    Op::Finish(i) => {
                        if !uploading.is_empty() {
                            let t = uploading.remove(i % uploading.len());
                            uploaded_upto.push((t.start, t.end));
                            l.done(&t);
                        }
                    }
                    Op::Commit => {
                        let c = l.to_commit();
                        l.committed(&c);
                        if let Some((_, o)) = c.first() {
                            prop_assert!(*o >= committed, "commits never go backwards");
                            committed = *o;
                        }
                    }
                }
                for off in 0..committed {
                    prop_assert!(uploaded(&uploaded_upto, off), "offset {off} committed (at {committed}) but not uploaded");
                }
            }
            // Drain: cut, finish all, commit.
            if next > open_start {
                uploading.push(l.seal(&tp, e, open_start, next).unwrap().unwrap());
            }
            for t in uploading.drain(..) {
                l.done(&t);
            }
            let c = l.to_commit();
            if next > 0 {
                prop_assert_eq!(c.first().map(|x| x.1).unwrap_or(committed), next);
            }
        }
    }
}
