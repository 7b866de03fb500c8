//! Consume stage: the rdkafka consumer-group member. One thread polls, copies each record once
//! into a per-partition batch for the worker that owns the partition, commits what the ledger
//! says is safe, and handles rebalances.
//!
//! Rebalances: on revocation the callback flushes the revoked partitions' records to their
//! workers, has them cut and upload their open segments, commits the safe offsets, and only then
//! returns, so the revocation completes after the commit — or, past the drain timeout, without
//! committing what was not uploaded. The ledger forgets a revoked partition, so nothing about it
//! is ever committed after another member took it over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::batch::{Batch, RecMeta};
use crate::claim::Claims;
use crate::commit::{CommitError, OffsetLedger, Tp};
use crate::config::KafkaPlan;
use crate::error::Fatal;
use crate::memory::Budget;
use crate::rotate::CutReason;
use crate::stats::Stats;
use crate::worker::{Flushed, WorkerMsg};
use crate::writer::{Reread, WriterCtx};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("creating the Kafka consumer for {brokers}: {source}")]
    Create {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka metadata from {brokers}: {source}")]
    Metadata {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic `{topic}` does not exist on {brokers}")]
    NoTopic { topic: String, brokers: String },
    #[error("the Kafka client failed: {source}")]
    Fatal {
        #[source]
        source: KafkaError,
    },
    #[error("offsets cannot be committed, and retrying will not help (check the group's ACLs: Describe and Read on the group, Read on the topics): {source}")]
    CommitRefused {
        #[source]
        source: CommitError,
    },
    #[error("offsets could not be committed for {failing:?} (pipeline.commit_timeout); the last error: {source}")]
    CommitTimedOut {
        failing: Duration,
        #[source]
        source: CommitError,
    },
}

/// Committed offsets of `group` for partitions `0..partitions` of `topic` (those that have one).
/// Blocking; for `check`, tests and tools.
pub fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<std::collections::BTreeMap<i32, i64>, KafkaError> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    Ok(offsets_of(
        &c.committed_offsets(tpl, Duration::from_secs(10))?,
    ))
}

/// The partitions of a list that carry a real offset, with that offset.
fn offsets_of(tpl: &TopicPartitionList) -> std::collections::BTreeMap<i32, i64> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// High watermarks (end offsets) of partitions `0..partitions` of `topic`. Blocking.
pub fn high_watermarks(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<std::collections::BTreeMap<i32, i64>, KafkaError> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    (0..partitions)
        .map(|p| Ok((p, c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1)))
        .collect()
}

/// A batch is sent to its worker once it holds this many bytes…
const BATCH_BYTES: usize = 256 * 1024;
/// …or this many records, and at the latest after this long.
const BATCH_RECORDS: usize = 4096;
const BATCH_AGE: Duration = Duration::from_millis(100);

/// Full batches held back, all partitions together, while their worker's queue is full: they
/// keep growing, and the consumer keeps feeding the other workers instead of waiting for the
/// busy one (a worker cutting a large Parquet file takes a while; meanwhile the others ran
/// dry, ~12 % of the workers' time in the benchmark). Beyond this, the consumer waits.
const HOLD_BACK: usize = 32 << 20;

/// `--until-caught-up` looks at the positions once no record came for this long (the check
/// reads cached watermarks, and asks the broker only when those say every partition is read).
const CAUGHT_UP_QUIET: Duration = Duration::from_millis(100);

/// Builds the librdkafka configuration: Lakesink's required settings, then the user's.
/// The dead-letter producer's config: the same brokers and connection settings (security,
/// SASL, TLS, sockets) as the consumer, idempotent, acknowledged by all in-sync replicas.
pub fn producer_config(kafka: &KafkaPlan) -> ClientConfig {
    const CONNECTION: &[&str] = &[
        "security.",
        "sasl.",
        "ssl.",
        "socket.",
        "broker.",
        "client.",
        "reconnect.",
        "metadata.",
        "api.",
        "debug",
    ];
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "lakesink-dead-letters");
    for (k, v) in &kafka.properties {
        if CONNECTION.iter().any(|p| k.starts_with(p)) {
            cfg.set(k, v);
        }
    }
    cfg.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    cfg
}

pub fn client_config(kafka: &KafkaPlan) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group_id)
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        // When the workers are busy the prefetch queue fills; librdkafka then backs each
        // partition off for `fetch.queue.backoff.ms` (1 s by default), which halved throughput
        // in the benchmark. Resume fetching promptly instead.
        .set("fetch.queue.backoff.ms", "20")
        .set("client.id", "lakesink")
        // librdkafka's debug contexts (`"debug" = "fetch,cgrp"`) are logged when asked for.
        .set_log_level(if kafka.properties.contains_key("debug") {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        });
    for (k, v) in &kafka.properties {
        cfg.set(k, v);
    }
    // Offsets move only when the ledger says so.
    cfg.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Records of aborted transactions must never reach the lake (librdkafka's default too;
        // the config refuses another value).
        .set("isolation.level", "read_committed");
    cfg
}

struct PartState {
    tp: Tp,
    epoch: u64,
    worker: usize,
    batch: Option<Batch>,
    /// Bytes of `batch` counted in [`Shared::held_back`]: it is full and its worker was busy.
    held_back: usize,
    /// Next offset after the last record taken from Kafka.
    position: Option<i64>,
}

/// State the poll loop and the rebalance callbacks share. Callbacks run on the polling thread,
/// inside `poll`, so the locks are never contended.
pub struct Shared {
    workers: Vec<SyncSender<WorkerMsg>>,
    pub ledger: Arc<Mutex<OffsetLedger>>,
    /// Partitions to read again (see [`Reread`]).
    reread: Arc<Mutex<Vec<Reread>>>,
    parts: Mutex<HashMap<Arc<str>, HashMap<i32, PartState>>>,
    revoke_timeout: Duration,
    fatal: Arc<Fatal>,
    stats: Arc<Stats>,
    claims: Arc<Claims>,
    rt: tokio::runtime::Handle,
    /// Bytes of the full batches held back (see [`HOLD_BACK`]).
    held_back: AtomicUsize,
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
        }
    }

    fn worker_of(&self, tp: &Tp) -> usize {
        // Stable and spread: partitions of one topic go round-robin over the workers.
        let h = tp
            .topic
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        (h.wrapping_add(tp.partition as usize)) % self.workers.len()
    }

    /// Takes a partition's batch, if it has one, out of the held-back count.
    fn take_batch(&self, state: &mut PartState) -> Option<Batch> {
        let held = std::mem::take(&mut state.held_back);
        self.held_back.fetch_sub(held, Ordering::Relaxed);
        state.batch.take()
    }

    fn send(&self, worker: usize, msg: WorkerMsg) -> bool {
        self.workers[worker].send(msg).is_ok()
    }

    fn assign(&self, tpl: &TopicPartitionList) {
        let mut parts = self.parts.lock().expect("parts lock");
        for e in tpl.elements() {
            let tp = Tp::new(e.topic(), e.partition());
            let epoch = self.ledger.lock().expect("ledger lock").assign(&tp);
            let worker = self.worker_of(&tp);
            tracing::info!(%tp, epoch, worker, "partition assigned");
            Stats::add(&self.stats.partitions_assigned, 1);
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
                    position: None,
                },
            );
        }
    }

    /// Uploads and commits the revoked partitions (bounded by the drain timeout), then forgets
    /// them.
    fn revoke<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, tpl: &TopicPartitionList) {
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
        }
        self.stats
            .partitions_assigned
            .fetch_sub(tps.len() as u64, Ordering::Relaxed);
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
    fn reread<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
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
                self.fatal.set(crate::Error::Other(format!(
                    "{tp}: seeking to {offset:?} to re-read it failed: {e}"
                )));
            }
        }
    }

    /// Takes one record: copies it into its partition's batch and sends full batches.
    fn take(&self, m: &BorrowedMessage<'_>) {
        let mut parts = self.parts.lock().expect("parts lock");
        let Some(state) = parts
            .get_mut(m.topic())
            .and_then(|p| p.get_mut(&m.partition()))
        else {
            return; // not (or no longer) assigned: the owner reads it
        };
        let batch = state.batch.get_or_insert_with(|| Batch {
            tp: state.tp.clone(),
            epoch: state.epoch,
            data: Vec::with_capacity(BATCH_BYTES + 64 * 1024),
            recs: Vec::with_capacity(256),
            claims: None,
        });
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
        state.position = Some(m.offset() + 1);
        Stats::add(&self.stats.records_in, 1);
        Stats::add(&self.stats.bytes_in, m.payload_len() as u64);
        if batch.data.len() >= BATCH_BYTES || batch.recs.len() >= BATCH_RECORDS {
            if let Some((w, b)) = self.offer(state) {
                drop(parts);
                self.send(w, WorkerMsg::Batch(b));
            }
        }
    }

    /// Hands a partition's batch to its worker without waiting. While that worker's queue is
    /// full, the batch stays and keeps filling, as long as the batches held back stay under
    /// [`HOLD_BACK`]. Returns it when it has to be sent by waiting.
    fn offer(&self, state: &mut PartState) -> Option<(usize, Batch)> {
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
    fn flush(&self, wait: bool) {
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

    fn assigned(&self) -> Vec<(Tp, Option<i64>)> {
        let parts = self.parts.lock().expect("parts lock");
        parts
            .values()
            .flat_map(|m| m.values())
            .map(|s| (s.tp.clone(), s.position))
            .collect()
    }

    /// Has workers cut and upload the given partitions (`None`: all of a worker's) and waits
    /// for their replies until `deadline`.
    fn flush_writers(
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

    fn all_workers(&self) -> Vec<(usize, Option<Vec<Tp>>)> {
        (0..self.workers.len()).map(|w| (w, None)).collect()
    }
}

/// The group's committed offset of one partition (`None`: nothing committed yet).
fn committed_offset<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &Tp,
    timeout: Duration,
) -> Result<Option<i64>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.topic, tp.partition);
    let c = consumer.committed_offsets(tpl, timeout)?;
    Ok(offsets_of(&c).get(&tp.partition).copied())
}

/// The high watermark librdkafka saw in its last fetch response for a partition (no request).
fn cached_high_watermark<C: ConsumerContext>(consumer: &BaseConsumer<C>, tp: &Tp) -> Option<i64> {
    let topic = std::ffi::CString::new(tp.topic.as_bytes()).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the call only reads
    // librdkafka's cached offsets into the two locals.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            tp.partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &[(Tp, i64)],
) -> Result<(), CommitError> {
    let mut tpl = TopicPartitionList::new();
    for (tp, o) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))
            .map_err(|source| CommitError::Kafka {
                offsets: describe(offsets),
                source,
            })?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|source| CommitError::Kafka {
            offsets: describe(offsets),
            source,
        })
}

fn describe(offsets: &[(Tp, i64)]) -> String {
    offsets
        .iter()
        .map(|(tp, o)| format!("{tp}@{o}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The consumer's context: logs through `tracing` and handles rebalances.
pub struct SinkContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
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
        loop {
            if self.fatal.is_set() {
                return Ending::Failed;
            }
            // One clock read per polled record: at hundreds of thousands of records a second,
            // each read shows in a profile.
            let now = Instant::now();
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

            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    self.shared.take(&m);
                    last_record = now;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    if let Some(code) = e.rdkafka_error_code() {
                        if code == rdkafka::types::RDKafkaErrorCode::Fatal {
                            self.fatal.set(ConsumeError::Fatal { source: e }.into());
                            continue;
                        }
                    }
                    tracing::warn!(error = %e, "Kafka consumer error (librdkafka retries by itself)");
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
                self.commit_safe();
                self.update_lag();
                last_commit = Instant::now();
            }
        }
    }

    /// Records between the consumer's position and the last known high watermark, summed over
    /// the assignment (from librdkafka's cached watermarks: no request).
    fn update_lag(&self) {
        let lag: i64 = self
            .shared
            .assigned()
            .iter()
            .filter_map(|(tp, position)| {
                let high = cached_high_watermark(&self.consumer, tp)?;
                Some((high - position.unwrap_or(high)).max(0))
            })
            .sum();
        self.shared.stats.lag.store(lag as u64, Ordering::Relaxed);
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
                tracing::debug!(offsets = %describe(&offsets), "committed");
                true
            }
            Err(e) => {
                Stats::add(&self.shared.stats.commit_failures, 1);
                let since = *self
                    .commit_failing_since
                    .get()
                    .get_or_insert_with(Instant::now);
                self.commit_failing_since.set(Some(since));
                let failing = since.elapsed();
                if e.is_permanent() {
                    self.fatal
                        .set(ConsumeError::CommitRefused { source: e }.into());
                } else if failing >= self.commit_timeout {
                    self.fatal
                        .set(ConsumeError::CommitTimedOut { failing, source: e }.into());
                } else {
                    tracing::warn!(error = %e, failing_for = ?failing, gives_up_after = ?self.commit_timeout, "commit failed; retrying");
                }
                false
            }
        }
    }

    /// Whether every assigned partition has been read to its high watermark.
    fn caught_up(&self) -> bool {
        let assigned = self.shared.assigned();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    fn part(tp: Tp, worker: usize, bytes: usize) -> PartState {
        PartState {
            batch: Some(Batch {
                tp: tp.clone(),
                epoch: 1,
                data: vec![b'x'; bytes],
                recs: Vec::new(),
                claims: None,
            }),
            tp,
            epoch: 1,
            worker,
            held_back: 0,
            position: Some(1),
        }
    }

    fn sent(msg: WorkerMsg) -> usize {
        match msg {
            WorkerMsg::Batch(b) => b.data.len(),
            _ => panic!("expected a batch"),
        }
    }

    #[test]
    fn a_busy_worker_has_its_batches_held_back_and_the_others_still_get_theirs() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ctx = crate::writer::tests::ctx_with(
            &rt,
            Arc::new(object_store::memory::InMemory::new()),
            "[[tables]]\nname = \"t\"\ntopics = [\"t\"]\n",
        );
        let (busy_tx, busy_rx) = sync_channel(1);
        let (idle_tx, idle_rx) = sync_channel(1);
        let shared = Shared::new(vec![busy_tx, idle_tx], &ctx, Duration::from_secs(1));
        shared.workers[0]
            .send(WorkerMsg::Forget { tps: Vec::new() })
            .unwrap(); // worker 0's queue is full

        let mut a = part(Tp::new("t", 0), 0, 1000);
        let mut b = part(Tp::new("t", 1), 1, 2000);
        assert!(shared.offer(&mut a).is_none());
        assert!(shared.offer(&mut b).is_none());
        assert_eq!(sent(idle_rx.try_recv().unwrap()), 2000);
        // Held back whole, counted, and still the partition's to fill.
        assert_eq!(a.batch.as_ref().map(|b| b.data.len()), Some(1000));
        assert_eq!(a.held_back, 1000);
        assert_eq!(shared.held_back.load(Ordering::Relaxed), 1000);
        a.batch
            .as_mut()
            .unwrap()
            .data
            .extend_from_slice(&[b'y'; 500]);

        // Once the worker takes from its queue, the next offer sends all of it.
        busy_rx.try_recv().unwrap();
        assert!(shared.offer(&mut a).is_none());
        assert_eq!(sent(busy_rx.try_recv().unwrap()), 1500);
        assert!(a.batch.is_none());
        assert_eq!(shared.held_back.load(Ordering::Relaxed), 0);

        // Beyond HOLD_BACK a batch is handed back to be sent by waiting, not kept.
        shared.workers[0]
            .send(WorkerMsg::Forget { tps: Vec::new() })
            .unwrap();
        let mut big = part(Tp::new("t", 2), 0, HOLD_BACK + 1);
        let (w, batch) = shared.offer(&mut big).expect("too much to hold back");
        assert_eq!((w, batch.data.len()), (0, HOLD_BACK + 1));
        assert_eq!(shared.held_back.load(Ordering::Relaxed), 0);
    }
}
