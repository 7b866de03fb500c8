//! The poll loop: fetches, hands records to the partitions' batches, commits what the ledger
//! says is safe, pauses for the memory budget or a stalled catalog, and drains at the end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::offsets::{cached_high_watermark, commit, committed_offset, describe};
use super::partitions::{Shared, SinkContext, BATCH_AGE};
use super::ConsumeError;
use crate::commit::Tp;
use crate::fatal::Fatal;
use crate::memory::Budget;
use crate::metrics::tp_labels;
use crate::rotate::CutReason;
use crate::stats::Stats;

/// `--until-caught-up` looks at the positions once no record came for this long (the check
/// reads cached watermarks, and asks the broker only when those say every partition is read).
const CAUGHT_UP_QUIET: Duration = Duration::from_millis(100);

/// What makes the poll loop stop.
#[derive(Debug, Default)]
pub struct Control {
    /// Set by SIGTERM / Ctrl-C: drain and exit.
    pub shutdown: AtomicBool,
    /// Drain and exit once every assigned partition is consumed to its end.
    pub exit_when_caught_up: AtomicBool,
}

impl Control {
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

/// The poll loop.
pub struct PollLoop {
    pub consumer: BaseConsumer<SinkContext>,
    pub shared: Arc<Shared>,
    pub control: Arc<Control>,
    pub budget: Arc<Budget>,
    /// Fetching also pauses while new partitions wait for an unreachable catalog.
    pub catalog: Arc<crate::catalog::Registrar>,
    pub fatal: Arc<Fatal>,
    pub commit_interval: Duration,
    pub drain_timeout: Duration,
    /// How long commits may fail with retryable errors before the daemon stops.
    pub commit_timeout: Duration,
    /// When the commits that keep failing started failing.
    pub commit_failing_since: std::cell::Cell<Option<Instant>>,
    /// The position at which [`PollLoop::pass_over_gaps`] last asked the broker for a
    /// partition's committed offset (it asks once per position, not at every commit tick).
    pub gap_asked: std::cell::RefCell<HashMap<Tp, i64>>,
}

/// How the poll loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Drained: everything consumed was uploaded and committed.
    Drained,
    /// The drain timed out with this many segments not uploaded (their offsets not committed).
    DrainTimedOut(usize),
    /// A fatal error was reported; nothing more was committed.
    Failed,
}

impl PollLoop {
    pub fn run(self) -> Ending {
        let mut last_commit = Instant::now();
        let mut last_flush = Instant::now();
        let mut last_caught_up_check = Instant::now();
        let mut last_record = Instant::now();
        let mut paused = false;
        let mut shown = None;
        loop {
            let health = &self.shared.stats.metrics.health;
            if self.fatal.is_set() {
                health.failed(&self.fatal.describe());
                return Ending::Failed;
            }
            // One clock read per polled record: at hundreds of thousands of records a second,
            // each read shows in a profile.
            let now = Instant::now();
            health.beat(now);
            // Only when records stopped coming for a moment: the check may ask the broker.
            let caught_up = self.control.exit_when_caught_up.load(Ordering::SeqCst)
                && now.duration_since(last_record) >= CAUGHT_UP_QUIET
                && now.duration_since(last_caught_up_check) >= CAUGHT_UP_QUIET
                && {
                    last_caught_up_check = now;
                    self.caught_up()
                };
            if self.control.shutdown.load(Ordering::SeqCst) || caught_up {
                return self.drain();
            }

            let stalled = self.catalog.stalled();
            self.shared
                .stats
                .metrics
                .catalog_stalled
                .set(i64::from(stalled));
            // (`only_replays_held` reads the clock: asked only when it matters.)
            if !paused && (stalled || (self.budget.over() && !self.budget.only_replays_held())) {
                paused = self.set_paused(true);
                self.budget.set_fetch_paused(paused && !stalled);

                if stalled {
                    tracing::info!("catalog unreachable: fetching paused until it answers");
                } else {
                    tracing::info!(
                        used = self.budget.used(),
                        max = self.budget.max(),
                        "memory budget full: fetching paused until uploads free memory"
                    );
                }
            } else if paused
                && !stalled
                && (self.budget.below_resume_mark() || self.budget.only_replays_held())
            {
                if !self.budget.below_resume_mark() {
                    // (So only replays hold the memory.)
                    tracing::info!(
                        used = self.budget.used(),
                        max = self.budget.max(),
                        "fetching resumed over the memory budget: replays of claimed segments need their remaining records to be cut"
                    );
                }
                paused = !self.set_paused(false);
                self.budget.set_fetch_paused(paused);
            }

            let why = paused.then_some(if stalled { "catalog" } else { "memory" });
            if why != shown {
                self.show_paused(why);
                shown = why;
            }

            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    self.shared.take(&m);
                    last_record = now;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    if let Some(code) = e.rdkafka_error_code() {
                        if code == rdkafka::types::RDKafkaErrorCode::Fatal {
                            self.fatal.set(ConsumeError::Fatal { source: e });
                            continue;
                        }
                    }
                    let message = e.to_string();
                    if let Some(held) = crate::logging::repeats().admit(&message, now) {
                        tracing::warn!(error = %message, repeated = held, "Kafka consumer error (librdkafka retries by itself; repeats within a minute are counted in `repeated`, /readyz and the metrics carry the state)");
                    }
                }
                None => {
                    self.shared.flush(true);
                    last_flush = now;
                }
            }
            if now.duration_since(last_flush) >= BATCH_AGE {
                self.shared.flush(false);
                last_flush = now;
            }
            if now.duration_since(last_commit) >= self.commit_interval {
                // Partitions whose segment lost its claim wait behind their gate meanwhile.
                self.shared.reread(&self.consumer);
                self.pass_over_gaps();
                self.commit_safe();
                self.update_lag();
                last_commit = Instant::now();
            }
        }
    }

    /// librdkafka's position of each assigned partition it has fetched: after the last record
    /// it handed out, and past the offsets it read but hands out no record for (transaction
    /// markers; records compacted away leave no offset to pass). Local state, no request.
    fn positions(&self) -> HashMap<Tp, i64> {
        let Ok(list) = self.consumer.position() else {
            return HashMap::new();
        };
        list.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((Tp::new(e.topic(), e.partition()), o)),
                _ => None,
            })
            .collect()
    }

    /// The assignment, each partition with the offset up to which it is read: after the last
    /// record taken, or librdkafka's position where that is further (a partition ending in a
    /// transaction marker is read to its end, though no record comes after the last one).
    fn read_to(&self) -> Vec<(Tp, Option<i64>)> {
        let positions = self.positions();
        let mut assigned = self.shared.assigned();
        for (tp, read) in &mut assigned {
            if let Some(&p) = positions.get(tp) {
                *read = Some(read.map_or(p, |r| r.max(p)));
            }
        }
        assigned
    }

    /// Moves the ledger's safe offset over offsets the consumer passed without a record
    /// ([`crate::commit::OffsetLedger::pass_over`]), so the group's committed offset reaches
    /// the end of a partition that ends in transaction markers.
    fn pass_over_gaps(&self) {
        let positions = self.positions();
        let rereading: Vec<Tp> = self
            .shared
            .reread
            .lock()
            .expect("reread lock")
            .iter()
            .map(|r| r.tp.clone())
            .collect();
        let assigned = self.shared.assigned();
        let now: std::collections::HashSet<&Tp> = assigned.iter().map(|(tp, _)| tp).collect();
        self.gap_asked.borrow_mut().retain(|tp, _| now.contains(tp));
        for (tp, taken) in assigned {
            let Some(&to) = positions.get(&tp) else {
                continue;
            };
            if taken.is_some_and(|t| t >= to) || rereading.contains(&tp) {
                continue;
            }
            if self
                .shared
                .ledger
                .lock()
                .expect("ledger lock")
                .is_committed(&tp, to)
            {
                continue;
            }
            let from = match taken {
                Some(t) => t,
                // Nothing taken yet: the consumer started at the group's committed offset
                // (asked once per position: it takes a request to the broker).
                None => {
                    if self.gap_asked.borrow().get(&tp) == Some(&to) {
                        continue;
                    }
                    self.gap_asked.borrow_mut().insert(tp.clone(), to);
                    let Some(c) = self.committed_of(&tp) else {
                        continue;
                    };
                    c
                }
            };
            let moved = self.shared.ledger.lock().expect("ledger lock").pass_over(
                &tp,
                from,
                taken.is_some(),
                to,
            );
            if moved {
                tracing::debug!(%tp, from, to, "passed over offsets without records");
            }
        }
    }

    /// Records between the consumer's position and the last known high watermark, summed over
    /// the assignment (from librdkafka's cached watermarks: no request).
    fn update_lag(&self) {
        let m = &self.shared.stats.metrics;
        let lag: i64 = self
            .read_to()
            .iter()
            .filter_map(|(tp, position)| {
                let high = cached_high_watermark(&self.consumer, tp)?;
                let lag = (high - position.unwrap_or(high)).max(0);
                m.consumer_lag.get_or_create(&tp_labels(tp)).set(lag);
                Some(lag)
            })
            .sum();
        self.shared.stats.lag.store(lag as u64, Ordering::Relaxed);
        m.buffered_bytes.set(self.budget.used());
        m.oldest_open_file_age.set(
            m.open_ages
                .oldest()
                .map_or(0.0, |t| t.elapsed().as_secs_f64()),
        );
    }

    /// Tells `/readyz` and `lakesink_fetch_paused{reason}` why fetching is paused, if it is.
    fn show_paused(&self, reason: Option<&'static str>) {
        let m = &self.shared.stats.metrics;
        for r in ["catalog", "memory"] {
            m.fetch_paused
                .get_or_create(&vec![("reason", Arc::from(r))])
                .set(i64::from(reason == Some(r)));
        }
        m.health.paused(reason);
    }

    fn set_paused(&self, pause: bool) -> bool {
        let Ok(assignment) = self.consumer.assignment() else {
            return false;
        };
        let r = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(e) = &r {
            tracing::warn!(error = %e, pause, "pausing/resuming the assignment failed");
        }
        r.is_ok()
    }

    /// Commits the safe offsets; returns whether nothing safe is left uncommitted.
    fn commit_safe(&self) -> bool {
        if self.fatal.is_set() {
            return false;
        }
        let offsets = self.shared.ledger.lock().expect("ledger lock").to_commit();
        if offsets.is_empty() {
            return true;
        }
        match commit(&self.consumer, &offsets) {
            Ok(()) => {
                self.commit_failing_since.set(None);
                self.shared
                    .ledger
                    .lock()
                    .expect("ledger lock")
                    .committed(&offsets);
                Stats::add(&self.shared.stats.offsets_committed, offsets.len() as u64);
                self.shared.stats.metrics.committed(&offsets);
                tracing::debug!(offsets = %describe(&offsets), "committed");
                true
            }
            Err(e) => {
                self.shared.stats.metrics.commit_failures.inc();
                let since = self.commit_failing_since.get().unwrap_or_else(Instant::now);
                self.commit_failing_since.set(Some(since));
                let failing = since.elapsed();
                if e.is_permanent() {
                    self.fatal.set(ConsumeError::CommitRefused { source: e });
                } else if failing >= self.commit_timeout {
                    self.fatal
                        .set(ConsumeError::CommitTimedOut { failing, source: e });
                } else {
                    tracing::warn!(error = %e, failing_for = ?failing, gives_up_after = ?self.commit_timeout, "commit failed; retrying");
                }
                false
            }
        }
    }

    /// Whether every assigned partition has been read to its high watermark.
    fn caught_up(&self) -> bool {
        let assigned = self.read_to();
        // A partition its writer wants read again is not caught up, wherever the consumer's
        // position is: the records it read were not taken.
        if assigned.is_empty() || !self.shared.reread.lock().expect("reread lock").is_empty() {
            return false;
        }
        // First by librdkafka's cached watermarks (no request). Those come with fetch
        // responses and may be older than the last records produced, so when every partition
        // looks caught up, the broker is asked for all of them in one request.
        // A partition that consumed nothing yet is where the group committed: asked of the
        // broker at most once per check, and only for a partition that holds records.
        let mut positions: Vec<Option<Option<i64>>> = vec![None; assigned.len()];
        let mut behind = |i: usize, high: i64| {
            let (tp, position) = &assigned[i];
            high > 0
                && positions[i]
                    .get_or_insert_with(|| position.or_else(|| self.committed_of(tp)))
                    .is_none_or(|p| p < high)
        };
        // (A partition not fetched yet has none: the request below answers for it.)
        for (i, (tp, _)) in assigned.iter().enumerate() {
            if let Some(high) = cached_high_watermark(&self.consumer, tp) {
                if behind(i, high) {
                    return false;
                }
            }
        }
        let mut latest = TopicPartitionList::new();
        for (tp, _) in &assigned {
            let _ = latest.add_partition_offset(&tp.topic, tp.partition, Offset::End);
        }
        // (A timestamp of -1, `Offset::End`, asks for each partition's end offset.)
        let Ok(ends) = self
            .consumer
            .offsets_for_times(latest, Duration::from_secs(5))
        else {
            return false;
        };
        (0..assigned.len()).all(|i| {
            let (tp, _) = &assigned[i];
            match ends
                .find_partition(&tp.topic, tp.partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(high)) => !behind(i, high),
                _ => false,
            }
        })
    }

    fn committed_of(&self, tp: &Tp) -> Option<i64> {
        committed_offset(&self.consumer, tp, Duration::from_secs(5))
            .ok()
            .flatten()
    }

    fn drain(self) -> Ending {
        tracing::info!(
            buffered = self.budget.used(),
            "draining: fetching stopped; closing, uploading and committing every open file"
        );
        // The lag when fetching stopped (the commit tick may not have looked since).
        self.update_lag();
        self.set_paused(true);
        let deadline = Instant::now() + self.drain_timeout;
        // Cut and upload everything, then commit. A sealed segment that waited for that commit
        // (its partition's gate) is uploaded in the next round. A rebalance in progress refuses commits for a
        // moment: retry, serving the group's callbacks. Records that still arrive are not taken
        // (the assignment is paused; a newly assigned partition is re-read by its next owner).
        let workers = self.shared.all_workers();
        loop {
            let flushed = self
                .shared
                .flush_writers(&workers, CutReason::Shutdown, deadline);
            self.pass_over_gaps();
            let committed = loop {
                if self.commit_safe() {
                    break true;
                }
                if self.fatal.is_set() || Instant::now() >= deadline {
                    break false;
                }
                let _ = self.consumer.poll(Duration::from_millis(100));
            };
            if self.fatal.is_set() {
                return Ending::Failed;
            }
            if flushed.uploaded && committed && !flushed.open {
                return Ending::Drained;
            }
            if !flushed.uploaded || !committed || Instant::now() >= deadline {
                let pending = self
                    .shared
                    .ledger
                    .lock()
                    .expect("ledger lock")
                    .pending_segments();
                return Ending::DrainTimedOut(pending.max(1));
            }
        }
    }
}
