//! Sealed segments and their completion in the store: claim the segment, complete its objects,
//! wait for its dead letters, register its partitions, and mark it done in the ledger.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use rdkafka::producer::DeliveryFuture;
use tokio::runtime::Handle;

use super::{Reread, WriteError, WriterCtx};
use crate::catalog::{FileFacts, NewPartition, Registrar};
use crate::claim::{Claim, ClaimError, ClaimedFile, Claims, Fingerprint, Outcome};
use crate::commit::{OffsetLedger, Ticket, Tp};
use crate::memory::Budget;
use crate::rotate::CutReason;
use crate::stats::Stats;
use crate::upload::ObjectUpload;

/// A segment cut and sealed in the ledger whose objects are not completed yet.
pub(super) struct Sealed {
    pub(super) start: i64,
    pub(super) end: i64,
    /// Its first record's fingerprint and its generation, for the claim.
    pub(super) first: Fingerprint,
    pub(super) generation: u32,
    /// See [`crate::claim::Claim::late_before`].
    pub(super) late_before: std::collections::BTreeMap<String, i64>,
    /// It replays a claimed segment without all of its records (see
    /// `Replay::partial` in `writer/replay.rs`).
    pub(super) partial: bool,
    pub(super) ticket: Option<Ticket>,
    /// Dead letters produced to the dead-letter topic; the segment is done once all are acked.
    pub(super) deliveries: Vec<DeliveryFuture>,
    /// Each file's upload and the bytes not sent yet.
    pub(super) files: Vec<(ObjectUpload, Vec<u8>)>,
    pub(super) partitions: Vec<NewPartition>,
    /// Its dead-letter files in the store (`dead_letter.kind = "store"`).
    pub(super) dead_letters: Vec<FileFacts>,
    pub(super) records: u64,
    pub(super) bytes: u64,
    pub(super) reason: CutReason,
}

impl Sealed {
    /// Bytes of its files' tails, charged to the budget at the cut until the store has them.
    pub(super) fn held(&self) -> usize {
        self.files.iter().map(|(_, tail)| tail.len()).sum()
    }
}

/// Objects of one segment completed concurrently (all segments together are bounded by
/// `WriterCtx::upload_slots`).
const UPLOADS_PER_SEGMENT: usize = 16;

/// Kills the process at a failpoint of a segment's life (see [`crate::failpoint`]): `name`
/// with the segment's partition and offsets in the log line.
fn crash_point(name: &str, tp: &Tp, start: i64, end: i64) {
    crate::failpoint::hit(name, &format!("{tp} [{start}, {end})"));
}

/// The files of a partly replayed segment whose objects are not in the store; the others are
/// dropped (their multipart uploads abort), since the store's copy holds records this replay
/// no longer has.
async fn only_missing(
    store: &Arc<dyn ObjectStore>,
    budget: &Budget,
    files: Vec<(ObjectUpload, Vec<u8>)>,
) -> Result<Vec<(ObjectUpload, Vec<u8>)>, WriteError> {
    let mut missing = Vec::with_capacity(files.len());
    for (upload, tail) in files {
        match store.head(upload.key()).await {
            Ok(_) => {
                tracing::debug!(key = %upload.key(), "kept the stored object of a partly replayed segment");
                budget.release(tail.len());
            }
            Err(object_store::Error::NotFound { .. }) => missing.push((upload, tail)),
            Err(source) => {
                return Err(WriteError::Claim(ClaimError::Store {
                    key: upload.key().to_string(),
                    source,
                }))
            }
        }
    }
    Ok(missing)
}

/// The files of a replayed segment that no compaction replaced; the others are dropped (their
/// multipart uploads abort): their records are in the compaction's files, and the replaced
/// object must not come back beside them (a rewind after a compaction).
async fn not_compacted(
    d: &Completion,
    claim: &Claim,
    files: Vec<(ObjectUpload, Vec<u8>)>,
) -> Result<Vec<(ObjectUpload, Vec<u8>)>, WriteError> {
    let mut replaced = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    for f in &claim.files {
        let (Some(table), Some(path)) = (&f.table, &f.path) else {
            continue;
        };
        if !d.compacting.contains(table) || !seen.insert((table, path)) {
            continue;
        }
        let root = d.root.trim_matches('/');
        let got = crate::seal::compactions::replaced(&d.store, root, table, path)
            .await
            .map_err(|source| {
                WriteError::Claim(ClaimError::Store {
                    key: format!("compactions of {table}/{path}"),
                    source,
                })
            })?;
        replaced.extend(got);
    }
    if replaced.is_empty() {
        return Ok(files);
    }
    let mut keep = Vec::with_capacity(files.len());
    for (upload, tail) in files {
        if replaced.contains(upload.key().as_ref()) {
            tracing::info!(key = %upload.key(), "not rewriting a replayed file that a compaction replaced");
            d.budget.release(tail.len());
        } else {
            keep.push((upload, tail));
        }
    }
    Ok(keep)
}

/// The daemon's handles a segment's completion uses (shared, cheap to clone).
pub(super) struct Completion {
    rt: Handle,
    store: Arc<dyn ObjectStore>,
    /// The store's path prefix, and the tables that compact (whose compaction records a
    /// replay checks).
    root: String,
    compacting: Vec<String>,
    budget: Arc<Budget>,
    upload_slots: Arc<tokio::sync::Semaphore>,
    claims: Arc<Claims>,
    catalog: Arc<Registrar>,
    ledger: Arc<Mutex<OffsetLedger>>,
    stats: Arc<Stats>,
    reread: Arc<Mutex<Vec<Reread>>>,
}

impl Completion {
    pub(super) fn of(ctx: &WriterCtx) -> Completion {
        Completion {
            rt: ctx.rt.clone(),
            store: ctx.store.clone(),
            root: ctx.root.clone(),
            compacting: ctx
                .tables
                .iter()
                .filter(|t| t.compact.is_some())
                .map(|t| t.name.clone())
                .collect(),
            budget: ctx.budget.clone(),
            upload_slots: ctx.upload_slots.clone(),
            claims: ctx.claims.clone(),
            catalog: ctx.catalog.clone(),
            ledger: ctx.ledger.clone(),
            stats: ctx.stats.clone(),
            reread: ctx.reread.clone(),
        }
    }
}

/// Whose segment it is: the partition, the writer's epoch, and the writer's flag for a claim
/// another writer refused (what it sealed behind is then abandoned).
pub(super) struct Owner {
    pub(super) tp: Tp,
    pub(super) epoch: u64,
    pub(super) lost: Arc<AtomicBool>,
}

impl Sealed {
    /// The claim of this segment: its range, its first record's fingerprint, its objects.
    fn claim(&self, tp: &Tp) -> Claim {
        let mut objects: Vec<String> = self
            .files
            .iter()
            .map(|(u, _)| u.key().to_string())
            .collect();
        objects.sort_unstable();
        let mut files: Vec<ClaimedFile> = self
            .partitions
            .iter()
            .flat_map(|p| {
                p.files
                    .iter()
                    .map(|f| ClaimedFile::of(f, Some((&p.table, &p.path))))
            })
            .chain(self.dead_letters.iter().map(|f| ClaimedFile::of(f, None)))
            .collect();
        files.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Claim {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            start: self.start,
            end: self.end,
            first_timestamp: self.first.timestamp,
            first_crc: self.first.crc,
            generation: self.generation,
            records: self.records,
            newest_event_micros: self
                .partitions
                .iter()
                .flat_map(|p| &p.files)
                .map(|f| f.max_event_micros)
                .max(),
            objects,
            files,
            late_before: self.late_before.clone(),
            writer: crate::claim::writer_id(),
        }
    }

    /// Completes the segment in the store: claims it before any of its objects becomes
    /// visible, completes its objects (at most [`UPLOADS_PER_SEGMENT`] at once, and the
    /// daemon's upload slots), waits for its dead letters, registers its partitions, and marks
    /// it done in the ledger. A refused claim completes nothing and has the partition re-read.
    pub(super) async fn complete(self, owner: Owner, d: Completion) -> Result<(), WriteError> {
        let Owner { tp, epoch, lost } = owner;
        let claim = self.claim(&tp);
        let Sealed {
            start,
            end,
            partial,
            ticket,
            deliveries,
            files,
            partitions,
            records,
            bytes,
            reason,
            ..
        } = self;
        let files_n = files.len() as u64;
        let outcome = d.claims.claim(&tp, &claim).await?;
        if let Outcome::Conflict(other) = outcome {
            tracing::warn!(%tp, start, end, claimed_end = other.end, claimed_by = %other.writer, "this segment was claimed with another end or another first record (another writer, or another incarnation of the topic): completing none of its objects; the partition is re-read from the committed offset, following the claims");
            d.stats.metrics.claims_refused.inc();
            for (upload, tail) in files {
                d.budget.release(tail.len());
                drop(upload); // a multipart upload aborts
            }
            lost.store(true, Ordering::Release);
            d.reread.lock().expect("reread lock").push(Reread {
                tp: tp.clone(),
                epoch,
                from: None,
            });
            return Ok(());
        }
        crash_point("crash-after-claim", &tp, start, end);
        let files = if partial && outcome == Outcome::Matched {
            only_missing(&d.store, &d.budget, files).await?
        } else {
            files
        };
        let files = if outcome == Outcome::Matched {
            not_compacted(&d, &claim, files).await?
        } else {
            files
        };
        if outcome == Outcome::Matched {
            // A replay: where its bytes differ from the claim's (Parquet row groups), say so
            // before its objects replace the claimed ones.
            let keys: Vec<String> = files.iter().map(|(u, _)| u.key().to_string()).collect();
            d.claims.amend(&tp, &claim, &keys).await?;
        }
        let mut uploads = futures::stream::iter(files.into_iter().map(|(upload, tail)| {
            let (d, tp) = (&d, &tp);
            async move {
                let _slot = d.upload_slots.acquire().await.expect("upload slots");
                if upload.parts() > 0 {
                    crash_point("crash-mid-multipart", tp, start, end);
                }
                let began = std::time::Instant::now();
                let r = upload.finish(&d.rt, &d.store, &d.budget, tail).await;
                if r.is_ok() {
                    d.stats
                        .metrics
                        .upload_duration
                        .observe(began.elapsed().as_secs_f64());
                }
                r
            }
        }))
        .buffer_unordered(UPLOADS_PER_SEGMENT);
        while let Some(done) = uploads.next().await {
            match done {
                Ok(r) => r?,
                Err(source) => {
                    return Err(WriteError::Task {
                        tp: tp.clone(),
                        start,
                        end,
                        source,
                    });
                }
            }
        }
        for delivery in deliveries {
            let source = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => e,
                // The producer dropped the delivery without an answer.
                Err(_) => rdkafka::error::KafkaError::Canceled,
            };
            return Err(WriteError::DeadLetter {
                tp: tp.clone(),
                source,
            });
        }
        d.catalog.ensure(&partitions).await?;
        crash_point("crash-before-commit", &tp, start, end);
        if let Some(t) = ticket {
            d.ledger.lock().expect("ledger lock").done(&t);
        }
        Stats::add(&d.stats.records_written, records);
        Stats::add(&d.stats.files_written, files_n);
        Stats::add(&d.stats.bytes_written, bytes);
        Stats::add(&d.stats.segments_committed, 1);
        landed(&d.stats.metrics, &tp, &partitions);
        tracing::debug!(%tp, start, end, files = files_n, records, reason = reason.as_str(), "segment uploaded");
        Ok(())
    }
}

/// Counts a completed segment's records, bytes and objects per table, and moves the tables'
/// event-time watermarks: once per segment, not per record.
fn landed(m: &crate::metrics::Metrics, tp: &Tp, partitions: &[NewPartition]) {
    use crate::metrics::labels;
    for p in partitions {
        let table: Arc<str> = Arc::from(p.table.as_str());
        let (mut records, mut bytes, mut newest) = (0, 0, i64::MIN);
        for f in &p.files {
            records += f.records;
            bytes += f.bytes;
            newest = newest.max(f.max_event_micros);
        }
        m.records
            .get_or_create(&labels([("table", &table), ("topic", &tp.topic)]))
            .inc_by(records);
        let t = labels([("table", &table)]);
        m.bytes_written.get_or_create(&t).inc_by(bytes);
        m.files_written
            .get_or_create(&t)
            .inc_by(p.files.len() as u64);
        m.event_time_landed(&table, newest);
    }
}
