//! Replay of claimed segments: the claim cursor of one partition writer.
//!
//! At its first record, a writer learns from the lake's claims (see [`crate::claim`]) which
//! generation of the topic partition it writes, whether it must have the partition read again
//! from an earlier offset (its first record lies inside a claimed segment), and where the
//! claimed segments ahead of it start and end. While the open segment replays a claim, it is cut
//! at the claim's end and nowhere else, and its files take the claim's keys.

use std::collections::{HashMap, VecDeque};

use super::files::Naming;
use super::{Reread, WriteError, WriterCtx};
use crate::batch::RecordIn;
use crate::claim::{Claim, Fingerprint, Prefetch};
use crate::commit::Tp;
use crate::rotate::CutReason;

/// How a writer follows its partition's claims.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// Claims of segments at or after the first offset this writer read, not reached yet;
    /// listed from the store when the first record arrives.
    known: Option<VecDeque<Claim>>,
    /// The listing of those claims the consumer started, until the first record needs it.
    prefetch: Option<Prefetch>,
    /// The open segment replays a claimed one: it is cut at this end offset and nowhere else.
    follow: Option<i64>,
    /// The open segment must be cut before a record at or after this offset (the end of the
    /// claim it follows, or the start of the next claim).
    stop_at: Option<i64>,
    /// The topic partition's generation: which claims it follows, and the suffix of its object
    /// names.
    generation: u32,
    /// Object keys of the claimed segment being replayed, by directory: a path keeps its
    /// claimed key even when its first record is no longer in Kafka (compaction, retention).
    claimed_keys: HashMap<String, String>,
    /// The open segment replays a claimed one of which Kafka no longer has every record
    /// (retention or compaction took its first or last ones): only its objects missing from
    /// the store are completed, so none is overwritten with fewer records.
    partial: bool,
    /// The offset the consumer sought this partition to when it created this writer for a
    /// re-read from a claimed segment's start (see [`Reread`]).
    sought: Option<i64>,
    /// This writer asked to re-read the partition from an earlier offset: it takes no records
    /// until the consumer replaces it.
    rewinding: bool,
}

/// How an open segment begins (see [`Replay::begin`]).
pub(super) struct Begun {
    /// Its start, when it replays a claim whose first records are gone (else its first
    /// record's offset).
    pub(super) start: Option<i64>,
    /// The fingerprint its claim records: its first record's, or the replayed claim's.
    pub(super) first: Fingerprint,
    /// The replayed claim's watermarks for `late_after_seal` (`None`: not a replay; the
    /// writer takes the current ones).
    pub(super) late_before: Option<std::collections::BTreeMap<String, i64>>,
}

impl Replay {
    pub(super) fn new(sought: Option<i64>) -> Replay {
        Replay {
            sought,
            ..Replay::default()
        }
    }

    /// Keeps the listing of the claims the consumer started with the partition's first record.
    pub(super) fn prefetched(&mut self, p: Prefetch) {
        if self.known.is_none() {
            self.prefetch = Some(p);
        }
    }

    /// Called before the first record of a segment: finds whether it replays a claimed
    /// segment, and where the next claim forces a cut. On the writer's first record, it also
    /// finds the partition's generation, and asks for a re-read from a claimed segment's start
    /// when the record lies inside that segment (the group's offsets were reset into it):
    /// then it returns `None`, and the writer takes no more records.
    pub(super) fn begin(
        &mut self,
        ctx: &WriterCtx,
        tp: &Tp,
        epoch: u64,
        rec: &RecordIn<'_>,
    ) -> Result<Option<Begun>, WriteError> {
        let first = Fingerprint::of(rec.kafka_millis, rec.key, rec.payload);
        let free = Begun {
            start: None,
            first,
            late_before: None,
        };
        if self.known.is_none() {
            let prefetched = self
                .prefetch
                .take()
                .and_then(|p| p.wait(&ctx.rt, rec.offset));
            let around = match prefetched {
                Some(listed) => listed?,
                None => ctx.rt.block_on(ctx.claims.around(tp, rec.offset))?,
            };
            self.generation = around.generation;
            if let Some(c) = around.containing {
                if self.sought.is_some_and(|s| s <= c.start) {
                    // Read again from the claim's start, Kafka answered from later on: its
                    // first records are gone (retention, compaction). Follow it from here.
                    tracing::warn!(%tp, from = rec.offset, start = c.start, end = c.end, "the first records of a claimed segment are no longer in Kafka: replaying it from here, under its claimed keys");
                    self.known = Some(around.later.into());
                    return Ok(Some(self.follow(c, rec.offset)));
                }
                tracing::warn!(%tp, offset = rec.offset, start = c.start, end = c.end, "the partition starts inside a segment already in the lake (its offsets were reset or expired): reading it again from the segment's start, so that it is rewritten whole");
                self.rewinding = true;
                ctx.reread.lock().expect("reread lock").push(Reread {
                    tp: tp.clone(),
                    epoch,
                    from: Some(c.start),
                });
                return Ok(None);
            }
            if let Some(c) = around.later.first() {
                tracing::info!(%tp, from = rec.offset, generation = self.generation, claims = around.later.len(), first_end = c.end, "replaying segments claimed in the store: cutting where they were cut");
            }
            self.known = Some(around.later.into());
        }
        let known = self.known.as_mut().expect("listed above");
        while known.front().is_some_and(|c| c.end <= rec.offset) {
            known.pop_front();
        }
        let Some(next) = known.front() else {
            return Ok(Some(free));
        };
        if next.start > rec.offset {
            // Records before a claimed segment (none claimed them): cut freely, but before it.
            self.stop_at = Some(next.start);
            return Ok(Some(free));
        }
        if next.start == rec.offset && !next.first().same(&first) {
            // Another incarnation of the topic (deleted and created again, or another cluster)
            // wrote these claims: a new generation, whose claims and object names are its own.
            self.generation += 1;
            tracing::warn!(%tp, offset = rec.offset, generation = self.generation, "the record at a claimed segment's start is not the one claimed: this is another incarnation of the topic (re-created, or another cluster); landing it as a new generation, beside what the earlier one landed");
            known.clear();
            return Ok(Some(free));
        }
        // (A claim starting below the record: its first records were compacted away.)
        let c = known.pop_front().expect("a claim");
        Ok(Some(self.follow(c, rec.offset)))
    }

    /// The open segment, whose first record is at `offset`, replays claim `c`: it starts at
    /// the claim's start, is cut at its end and nowhere else, and its files take their claimed
    /// keys.
    fn follow(&mut self, c: Claim, offset: i64) -> Begun {
        tracing::debug!(
            start = c.start,
            end = c.end,
            offset,
            "following a claimed segment"
        );
        self.partial = c.start < offset;
        self.follow = Some(c.end);
        self.stop_at = Some(c.end);
        let begun = Begun {
            start: Some(c.start),
            first: c.first(),
            late_before: Some(c.late_before.clone()),
        };
        self.claimed_keys = c
            .objects
            .into_iter()
            .filter_map(|k| {
                let dir = crate::seal::compactions::partition_dir(k.rsplit_once('/')?.0);
                Some((dir.to_string(), k))
            })
            .collect();
        begun
    }

    /// Whether the writer asked to read its partition again from an earlier offset.
    pub(super) fn rewinding(&self) -> bool {
        self.rewinding
    }

    /// Whether the open segment replays a claimed one.
    pub(super) fn following(&self) -> bool {
        self.follow.is_some()
    }

    /// Whether the open segment must be cut before a record at `offset`.
    pub(super) fn ends_before(&self, offset: i64) -> bool {
        self.stop_at.is_some_and(|b| offset >= b)
    }

    /// Whether the open segment replays a claim whose end `next` (one past its last record)
    /// has reached: it is cut now, not when the next record comes.
    pub(super) fn reached_end(&self, next: i64) -> bool {
        self.follow.is_some_and(|end| next >= end)
    }

    /// The claimed end that keeps the open segment from being cut for `reason` (any reason
    /// but the claim's own end).
    pub(super) fn holds(&self, reason: CutReason) -> Option<i64> {
        self.follow.filter(|_| reason != CutReason::Claim)
    }

    /// Ends the open segment, cut for `reason` with `next` one past its last record: its end
    /// offset, and whether it replayed a claim without all of its records. A replayed claim
    /// ends where it was claimed, even when its last offsets are no longer in Kafka
    /// (compaction, transaction markers): a later record proved them gone.
    pub(super) fn end_segment(&mut self, reason: CutReason, next: i64) -> (i64, bool) {
        let end = match self.follow {
            Some(claimed) if reason == CutReason::Claim => claimed.max(next),
            _ => next,
        };
        let partial = std::mem::take(&mut self.partial) || end > next;
        self.follow = None;
        self.stop_at = None;
        self.claimed_keys.clear();
        (end, partial)
    }

    /// The partition's generation.
    pub(super) fn generation(&self) -> u32 {
        self.generation
    }

    /// How the open segment's files are named.
    pub(super) fn naming(&self) -> Naming<'_> {
        Naming {
            generation: self.generation,
            claimed: &self.claimed_keys,
        }
    }
}
