//! The assigned partitions: their batches on the way to the workers, and the rebalance callbacks
//! (assignment, revocation, re-reads) that run on the polling thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::offsets::{commit, committed_offset};
use super::ConsumeError;
use crate::batch::{Batch, RecMeta};
use crate::claim::Claims;
use crate::commit::{OffsetLedger, Tp};
use crate::fatal::Fatal;
use crate::memory::{Budget, Charge};
use crate::rotate::CutReason;
use crate::stats::Stats;
use crate::worker::{Flushed, WorkerMsg};
use crate::writer::{Reread, WriterCtx};

/// A batch is sent to its worker once it holds this many bytes (fewer with many partitions:
/// see [`batch_bytes`])…
pub(super) const BATCH_BYTES: usize = 256 * 1024;
/// …or this many records, and at the latest after this long.
pub(super) const BATCH_RECORDS: usize = 4096;
pub(super) const BATCH_AGE: Duration = Duration::from_millis(100);

/// The capacity a partition's first batch starts with (it grows as needed; later batches start
/// at what the one before needed).
const FIRST_BATCH: usize = 16 << 10;
/// Room above [`BATCH_BYTES`] for the record that fills a batch.
const BATCH_SLACK: usize = 64 << 10;

/// The bytes at which a batch is sent, with `partitions` assigned under a budget of `budget`
/// bytes: the partitions' open batches together stay within a sixteenth of the budget (they are
/// charged to it), between 16 KiB and [`BATCH_BYTES`] each. With 853 partitions and a 1 GiB
/// budget, full 256 KiB batches held ~270 MB, which left the Parquet files less room and cut
/// ~10 % of them early.
pub(super) fn batch_bytes(budget: i64, partitions: usize) -> usize {
    (budget.max(0) as usize / 16 / partitions.max(1)).clamp(FIRST_BATCH, BATCH_BYTES)
}

/// Full batches held back, all partitions together, while their worker's queue is full: they
/// keep growing, and the consumer keeps feeding the other workers instead of waiting for the
/// busy one (a worker cutting a large Parquet file takes a while; meanwhile the others ran
/// dry, ~12 % of the workers' time in the benchmark). Beyond this, the consumer waits.
pub(super) const HOLD_BACK: usize = 32 << 20;

pub(super) struct PartState {
    pub(super) tp: Tp,
    pub(super) epoch: u64,
    pub(super) worker: usize,
    pub(super) batch: Option<Batch>,
    /// Bytes of `batch` counted in [`Shared::held_back`]: it is full and its worker was busy.
    pub(super) held_back: usize,
    /// The capacity the partition's next batch starts with: what its last one needed.
    pub(super) capacity: usize,
    /// Next offset after the last record taken from Kafka.
    pub(super) position: Option<i64>,
}

/// State the poll loop and the rebalance callbacks share. Callbacks run on the polling thread,
/// inside `poll`, so the locks are never contended.
pub struct Shared {
    pub(super) workers: Vec<SyncSender<WorkerMsg>>,
    pub ledger: Arc<Mutex<OffsetLedger>>,
    /// Partitions to read again (see [`Reread`]).
    pub(super) reread: Arc<Mutex<Vec<Reread>>>,
    pub(super) parts: Mutex<HashMap<Arc<str>, HashMap<i32, PartState>>>,
    pub(super) revoke_timeout: Duration,
    pub(super) fatal: Arc<Fatal>,
    pub(super) stats: Arc<Stats>,
    pub(super) claims: Arc<Claims>,
    pub(super) rt: tokio::runtime::Handle,
    /// Bytes of the full batches held back (see [`HOLD_BACK`]).
    pub(super) held_back: AtomicUsize,
    /// Batches are charged to it while they live.
    pub(super) budget: Arc<Budget>,
    /// Bytes at which a batch is sent ([`batch_bytes`] of the assignment), set on each
    /// (re)assignment.
    pub(super) batch_bytes: AtomicUsize,
}

impl Shared {
    pub fn new(
        workers: Vec<SyncSender<WorkerMsg>>,
        ctx: &WriterCtx,
        revoke_timeout: Duration,
    ) -> Shared {
        Shared {
            workers,
            ledger: ctx.ledger.clone(),
            reread: ctx.reread.clone(),
            parts: Mutex::new(HashMap::new()),
            revoke_timeout,
            fatal: ctx.fatal.clone(),
            stats: ctx.stats.clone(),
            claims: ctx.claims.clone(),
            rt: ctx.rt.clone(),
            held_back: AtomicUsize::new(0),
            budget: ctx.budget.clone(),
            batch_bytes: AtomicUsize::new(BATCH_BYTES),
        }
    }

    pub(super) fn worker_of(&self, tp: &Tp) -> usize {
        // Stable and spread: partitions of one topic go round-robin over the workers.
        let h = tp
            .topic
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        (h.wrapping_add(tp.partition as usize)) % self.workers.len()
    }

    /// Takes a partition's batch, if it has one, out of the held-back count.
    pub(super) fn take_batch(&self, state: &mut PartState) -> Option<Batch> {
        let held = std::mem::take(&mut state.held_back);
        self.held_back.fetch_sub(held, Ordering::Relaxed);
        let batch = state.batch.take()?;
        // The next batch starts as large as this one had to be (a busy partition fills a
        // whole one, a quiet one sends small ones by age), so it seldom grows by copying.
        state.capacity = (batch.data.len() + batch.data.len() / 8).clamp(
            FIRST_BATCH,
            self.batch_bytes.load(Ordering::Relaxed) + BATCH_SLACK,
        );
        self.stats
            .metrics
            .bytes_in
            .get_or_create(&vec![("topic", state.tp.topic.clone())])
            .inc_by(batch.data.len() as u64);
        Some(batch)
    }

    pub(super) fn send(&self, worker: usize, msg: WorkerMsg) -> bool {
        self.workers[worker].send(msg).is_ok()
    }

    pub(super) fn assign(&self, tpl: &TopicPartitionList) {
        self.stats.metrics.rebalances.inc();
        self.stats.metrics.health.assigned();
        let mut parts = self.parts.lock().expect("parts lock");
        for e in tpl.elements() {
            let tp = Tp::new(e.topic(), e.partition());
            let epoch = self.ledger.lock().expect("ledger lock").assign(&tp);
            let worker = self.worker_of(&tp);
            tracing::info!(%tp, epoch, worker, "partition assigned");
            self.stats.metrics.partitions_assigned.inc();
            self.send(
                worker,
                WorkerMsg::Assign {
                    tp: tp.clone(),
                    epoch,
                    sought: None,
                },
            );
            parts.entry(tp.topic.clone()).or_default().insert(
                tp.partition,
                PartState {
                    tp,
                    epoch,
                    worker,
                    batch: None,
                    held_back: 0,
                    capacity: FIRST_BATCH,
                    position: None,
                },
            );
        }
        self.resize_batches(&parts);
    }

    /// Sets the batch size for the partitions now assigned.
    fn resize_batches(&self, parts: &HashMap<Arc<str>, HashMap<i32, PartState>>) {
        let n = parts.values().map(HashMap::len).sum();
        self.batch_bytes
            .store(batch_bytes(self.budget.max(), n), Ordering::Relaxed);
    }

    /// Uploads and commits the revoked partitions (bounded by the drain timeout), then forgets
    /// them.
    pub(super) fn revoke<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: &TopicPartitionList,
    ) {
        let deadline = Instant::now() + self.revoke_timeout;
        let mut by_worker: HashMap<usize, Vec<Tp>> = HashMap::new();
        {
            let mut parts = self.parts.lock().expect("parts lock");
            for e in tpl.elements() {
                let Some(mut state) = parts
                    .get_mut(e.topic())
                    .and_then(|m| m.remove(&e.partition()))
                else {
                    continue;
                };
                if let Some(b) = self.take_batch(&mut state) {
                    self.send(state.worker, WorkerMsg::Batch(b));
                }
                by_worker.entry(state.worker).or_default().push(state.tp);
            }
            self.resize_batches(&parts);
        }
        let tps: Vec<Tp> = by_worker.values().flatten().cloned().collect();
        if tps.is_empty() {
            return;
        }
        let targets: Vec<(usize, Option<Vec<Tp>>)> = by_worker
            .iter()
            .map(|(w, t)| (*w, Some(t.clone())))
            .collect();
        // Cut, upload, commit; again while a sealed segment waited for that commit (the gate),
        // but only as long as commits succeed: a revocation must not hold up the rebalance.
        let mut all;
        loop {
            let flushed = self.flush_writers(&targets, CutReason::Revoke, deadline);
            all = flushed.uploaded;
            let offsets = self.ledger.lock().expect("ledger lock").safe_offsets(&tps);
            if !self.fatal.is_set() && !offsets.is_empty() {
                if let Err(e) = commit(consumer, &offsets) {
                    all = false;
                    tracing::warn!(error = %e, "commit on revocation failed; the next owner re-reads from the last committed offset and rewrites the same objects");
                    break;
                }
                Stats::add(&self.stats.offsets_committed, offsets.len() as u64);
                self.stats.metrics.committed(&offsets);
                self.ledger.lock().expect("ledger lock").committed(&offsets);
            }
            all &= !flushed.open;
            if !flushed.open
                || !flushed.uploaded
                || self.fatal.is_set()
                || Instant::now() >= deadline
            {
                break;
            }
        }
        for (w, tps) in by_worker {
            self.send(w, WorkerMsg::Forget { tps });
        }
        let mut ledger = self.ledger.lock().expect("ledger lock");
        for tp in &tps {
            ledger.revoke(tp);
            self.stats.metrics.forget(tp);
        }
        self.stats
            .metrics
            .partitions_assigned
            .dec_by(tps.len() as i64);
        if all {
            tracing::info!(partitions = ?tps, "partitions revoked after upload and commit");
        } else {
            tracing::warn!(partitions = ?tps, "partitions revoked before every upload finished and was committed: what was not committed is read again by the next owner");
        }
    }

    /// Reads partitions again for their writers ([`Reread`]): from the committed offset after a
    /// lost segment claim, from a claimed segment's start when a partition started inside one.
    /// A new epoch (what the old writer still holds is abandoned), a fresh writer that lists
    /// the claims again, and a seek.
    pub(super) fn reread<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let todo = std::mem::take(&mut *self.reread.lock().expect("reread lock"));
        for r in todo {
            let mut parts = self.parts.lock().expect("parts lock");
            let Some(state) = parts
                .get_mut(&r.tp.topic)
                .and_then(|m| m.get_mut(&r.tp.partition))
                .filter(|s| s.epoch == r.epoch)
            else {
                continue; // revoked or re-read meanwhile
            };
            let tp = r.tp.clone();
            let offset = match r.from {
                Some(o) => Offset::Offset(o),
                None => match committed_offset(consumer, &tp, Duration::from_secs(10)) {
                    Ok(c) => c.map_or(Offset::Beginning, Offset::Offset),
                    Err(e) => {
                        // Try again on the next round.
                        tracing::warn!(%tp, error = %e, "fetching the committed offset to re-read failed; retrying");
                        self.reread.lock().expect("reread lock").push(r);
                        continue;
                    }
                },
            };
            let new_epoch = self.ledger.lock().expect("ledger lock").assign(&tp);
            self.send(
                state.worker,
                WorkerMsg::Forget {
                    tps: vec![tp.clone()],
                },
            );
            self.send(
                state.worker,
                WorkerMsg::Assign {
                    tp: tp.clone(),
                    epoch: new_epoch,
                    sought: r.from,
                },
            );
            state.epoch = new_epoch;
            self.take_batch(state);
            state.position = None;
            tracing::warn!(%tp, ?offset, epoch = new_epoch, "re-reading the partition");
            if let Err(e) = consumer.seek(&tp.topic, tp.partition, offset, Duration::from_secs(10))
            {
                self.fatal.set(ConsumeError::Seek {
                    target: format!("{tp} to {offset:?}"),
                    source: e,
                });
            }
        }
    }

    /// Takes one record: copies it into its partition's batch and sends full batches.
    pub(super) fn take(&self, m: &BorrowedMessage<'_>) {
        let mut parts = self.parts.lock().expect("parts lock");
        let Some(state) = parts
            .get_mut(m.topic())
            .and_then(|p| p.get_mut(&m.partition()))
        else {
            return; // not (or no longer) assigned: the owner reads it
        };
        let batch = state.batch.get_or_insert_with(|| {
            let mut b = Batch {
                tp: state.tp.clone(),
                epoch: state.epoch,
                data: Vec::with_capacity(state.capacity),
                recs: Vec::with_capacity(64),
                claims: None,
                charge: Some(Charge::new(self.budget.clone())),
            };
            b.recharge();
            b
        });
        let capacity = (batch.data.capacity(), batch.recs.capacity());
        if state.position.is_none() {
            // The partition's first record since it was (re)assigned: its writer lists the
            // segment claims from here; start that now.
            batch.claims = Some(self.claims.prefetch(&self.rt, &state.tp, m.offset()));
        }
        let value = m.payload().map(|p| {
            let s = batch.data.len();
            batch.data.extend_from_slice(p);
            (s as u32, batch.data.len() as u32)
        });
        let key = m.key().map(|k| {
            let s = batch.data.len();
            batch.data.extend_from_slice(k);
            (s as u32, batch.data.len() as u32)
        });
        let headers = m
            .headers()
            .filter(|h| rdkafka::message::Headers::count(*h) > 0)
            .map(|h| {
                let s = batch.data.len();
                let all = rdkafka::message::Headers::iter(h).map(|h| (h.key, h.value));
                crate::batch::encode_headers(all, &mut batch.data);
                (s as u32, batch.data.len() as u32)
            });
        batch.recs.push(RecMeta {
            offset: m.offset(),
            kafka_millis: m.timestamp().to_millis(),
            value,
            key,
            headers,
        });
        if capacity != (batch.data.capacity(), batch.recs.capacity()) {
            batch.recharge();
        }
        state.position = Some(m.offset() + 1);
        Stats::add(&self.stats.records_in, 1);
        Stats::add(&self.stats.bytes_in, m.payload_len() as u64);
        if batch.data.len() >= self.batch_bytes.load(Ordering::Relaxed)
            || batch.recs.len() >= BATCH_RECORDS
        {
            if let Some((w, b)) = self.offer(state) {
                drop(parts);
                self.send(w, WorkerMsg::Batch(b));
            }
        }
    }

    /// Hands a partition's batch to its worker without waiting. While that worker's queue is
    /// full, the batch stays and keeps filling, as long as the batches held back stay under
    /// [`HOLD_BACK`]. Returns it when it has to be sent by waiting.
    pub(super) fn offer(&self, state: &mut PartState) -> Option<(usize, Batch)> {
        let b = self.take_batch(state)?;
        let len = b.data.len();
        if self.held_back.load(Ordering::Relaxed) + len > HOLD_BACK {
            return Some((state.worker, b));
        }
        match self.workers[state.worker].try_send(WorkerMsg::Batch(b)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(WorkerMsg::Batch(b))) => {
                state.batch = Some(b);
                state.held_back = len;
                self.held_back.fetch_add(len, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) => unreachable!("a batch was offered"),
        }
        None
    }

    /// Sends every partial batch; with `wait`, all of them, or else those whose worker takes
    /// them now (see [`Shared::offer`]).
    pub(super) fn flush(&self, wait: bool) {
        let batches: Vec<(usize, Batch)> = {
            let mut parts = self.parts.lock().expect("parts lock");
            parts
                .values_mut()
                .flat_map(|m| m.values_mut())
                .filter_map(|s| {
                    if wait {
                        self.take_batch(s).map(|b| (s.worker, b))
                    } else {
                        self.offer(s)
                    }
                })
                .collect()
        };
        for (w, b) in batches {
            self.send(w, WorkerMsg::Batch(b));
        }
    }

    pub(super) fn assigned(&self) -> Vec<(Tp, Option<i64>)> {
        let parts = self.parts.lock().expect("parts lock");
        parts
            .values()
            .flat_map(|m| m.values())
            .map(|s| (s.tp.clone(), s.position))
            .collect()
    }

    /// Has workers cut and upload the given partitions (`None`: all of a worker's) and waits
    /// for their replies until `deadline`.
    pub(super) fn flush_writers(
        &self,
        targets: &[(usize, Option<Vec<Tp>>)],
        reason: CutReason,
        deadline: Instant,
    ) -> Flushed {
        self.flush(true);
        let (tx, rx) = mpsc::channel();
        let mut expected = 0;
        for (w, tps) in targets {
            let msg = WorkerMsg::Flush {
                tps: tps.clone(),
                reason,
                deadline,
                reply: tx.clone(),
            };
            if self.send(*w, msg) {
                expected += 1;
            }
        }
        drop(tx);
        let mut out = Flushed {
            uploaded: true,
            open: false,
        };
        for _ in 0..expected {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(f) => {
                    out.uploaded &= f.uploaded;
                    out.open |= f.open;
                }
                Err(_) => out.uploaded = false,
            }
        }
        out
    }

    pub(super) fn all_workers(&self) -> Vec<(usize, Option<Vec<Tp>>)> {
        (0..self.workers.len()).map(|w| (w, None)).collect()
    }
}

/// The consumer's context: logs through `tracing` and handles rebalances.
pub struct SinkContext {
    pub shared: Arc<Shared>,
    /// The SASL/OAUTHBEARER token when the cluster wants one (AWS MSK IAM).
    pub auth: crate::kafka::KafkaAuth,
}

impl ClientContext for SinkContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        self.auth.token()
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let loud = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        let held = match loud {
            // A broker that is down makes librdkafka repeat itself many times a second.
            true => match crate::logging::repeats().admit(log_message, Instant::now()) {
                Some(held) => held,
                None => return,
            },
            false => 0,
        };
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, repeated = held, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", fac, repeated = held, "{log_message}")
            }
            _ => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
        }
    }
}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.shared.assign(tpl),
            Rebalance::Revoke(tpl) => self.shared.revoke(consumer, tpl),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
