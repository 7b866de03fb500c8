//! Partition writers: the open segment of one Kafka partition, its open files (one per table and
//! partition path), and the hand-over of a cut segment to upload → catalog → ledger.
//!
//! A writer lives on one worker thread and sees its partition's records in offset order, so every
//! decision it makes from the records (routing, cuts on count or bytes) is the same on a replay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use object_store::path::Path;
use object_store::ObjectStore;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::catalog::{CatalogError, FileFacts, NewPartition, Registrar};
use crate::commit::{CommitError, OffsetLedger, Tp};
use crate::config::TablePlan;
use crate::encode::{EncodeError, Encoder, GzipNdjson, GZIP_ENCODER_OVERHEAD};
use crate::error::Fatal;
use crate::memory::Budget;
use crate::rotate::{file_full, CutReason, Deadline};
use crate::route::escape::escape_partition_value;
use crate::route::{RecordRef, RouteError, TableRouter};
use crate::stats::Stats;
use crate::upload::{ObjectUpload, UploadError};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("table `{table}`: bad record at {tp} offset {offset}: {source} (on_bad_record = \"fail\": stopping; nothing from this offset on is committed)")]
    BadRecord {
        table: String,
        tp: Tp,
        offset: i64,
        #[source]
        source: RouteError,
    },
    #[error("encoding {key}: {source}")]
    Encode {
        key: String,
        #[source]
        source: EncodeError,
    },
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("table `{table}`: object key `{key}` is invalid: {message}")]
    Key {
        table: String,
        key: String,
        message: String,
    },
    #[error("segment {tp} [{start}, {end}): upload task failed: {message}")]
    Task {
        tp: Tp,
        start: i64,
        end: i64,
        message: String,
    },
}

/// What every writer shares.
pub struct WriterCtx {
    pub tables: Arc<Vec<TablePlan>>,
    pub store: Arc<dyn ObjectStore>,
    /// The store's path prefix from `storage.url` (may be empty).
    pub root: String,
    /// `storage.url` without a trailing slash, for catalog locations.
    pub location_base: String,
    pub rt: Handle,
    pub ledger: Arc<Mutex<OffsetLedger>>,
    pub catalog: Arc<Registrar>,
    pub budget: Arc<Budget>,
    pub stats: Arc<Stats>,
    pub fatal: Arc<Fatal>,
    pub part_size: usize,
}

/// One record handed to a writer.
#[derive(Debug, Clone, Copy)]
pub struct RecordIn<'a> {
    pub offset: i64,
    pub kafka_millis: Option<i64>,
    pub payload: Option<&'a [u8]>,
}

struct OpenFile {
    encoder: Box<dyn Encoder>,
    upload: ObjectUpload,
    records: u64,
    /// Budget charged for encoded bytes held by the encoder.
    charged: usize,
    /// Smallest and largest event time written, µs since the epoch.
    min_event: i64,
    max_event: i64,
}

/// The open segment of one Kafka partition.
pub struct PartitionWriter {
    tp: Tp,
    epoch: u64,
    /// Tables fed by this partition's topic: (index into ctx.tables, router).
    routers: Vec<(usize, TableRouter)>,
    /// Open files per router slot, by partition path.
    files: Vec<HashMap<String, OpenFile>>,
    /// First offset of the open segment, if it has any record.
    start: Option<i64>,
    /// One past the last offset taken.
    next: i64,
    deadline: Deadline,
    /// Bytes this writer holds in open files (encoded bytes plus encoder overhead).
    held: usize,
    path: String,
    in_flight: Vec<JoinHandle<()>>,
    budget: Arc<Budget>,
    /// End of the last segment cut at an offset a replay would not reproduce; the next cut
    /// waits until it is committed (see [`crate::rotate`]).
    gate: Option<i64>,
    /// A cut that waits for the gate; it is retried on every record and tick.
    deferred: Option<CutReason>,
}

impl PartitionWriter {
    pub fn new(ctx: &WriterCtx, tp: Tp, epoch: u64) -> Result<PartitionWriter, String> {
        let mut routers = Vec::new();
        for (i, t) in ctx.tables.iter().enumerate() {
            if t.topics.iter().any(|x| **x == *tp.topic) {
                routers.push((i, TableRouter::new(t)?));
            }
        }
        let files = routers.iter().map(|_| HashMap::new()).collect();
        Ok(PartitionWriter {
            tp,
            epoch,
            routers,
            files,
            start: None,
            next: 0,
            deadline: Deadline::default(),
            held: 0,
            path: String::with_capacity(128),
            in_flight: Vec::new(),
            budget: ctx.budget.clone(),
            gate: None,
            deferred: None,
        })
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn tp(&self) -> &Tp {
        &self.tp
    }

    /// Bytes held by the open files.
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn deadline_expired(&self, now: Instant) -> bool {
        self.start.is_some() && self.deadline.expired(now)
    }

    /// Writes one record to every table its topic feeds; cuts the segment after it when a file
    /// is full.
    pub fn push(
        &mut self,
        ctx: &WriterCtx,
        rec: RecordIn<'_>,
        now: Instant,
        now_micros: i64,
    ) -> Result<(), WriteError> {
        let r = RecordRef {
            topic: &self.tp.topic,
            partition: self.tp.partition,
            offset: rec.offset,
            kafka_millis: rec.kafka_millis,
            payload: rec.payload,
        };
        let mut full = None;
        for slot in 0..self.routers.len() {
            let (table_idx, router) = &mut self.routers[slot];
            let table = &ctx.tables[*table_idx];
            let routed = router
                .route(&r, now_micros, &mut self.path)
                .map_err(|source| WriteError::BadRecord {
                    table: table.name.clone(),
                    tp: self.tp.clone(),
                    offset: rec.offset,
                    source,
                })?;
            if routed.fell_back {
                Stats::add(&ctx.stats.timestamp_fallbacks, 1);
            }
            let payload = rec.payload.unwrap_or_default();
            let files = &mut self.files[slot];
            let cut = if let Some(f) = files.get_mut(self.path.as_str()) {
                f.saw(routed.event_micros);
                append(ctx, table, f, payload, &mut self.held)?
            } else {
                let mut f = open_file(ctx, table, &self.tp, &self.path, rec.offset)?;
                self.held += GZIP_ENCODER_OVERHEAD;
                ctx.budget.charge(GZIP_ENCODER_OVERHEAD);
                self.deadline.file_opened(now, table.rotate.max_age);
                f.saw(routed.event_micros);
                let cut = append(ctx, table, &mut f, payload, &mut self.held)?;
                files.insert(self.path.clone(), f);
                cut
            };
            full = full.or(cut);
        }
        if self.start.is_none() {
            self.start = Some(rec.offset);
        }
        self.next = rec.offset + 1;
        if let Some(reason) = full.or(self.deferred) {
            self.cut(ctx, reason)?;
        }
        Ok(())
    }

    /// Cuts the open segment: finishes every open file, starts the uploads, and hands the segment
    /// to a task that registers its partitions and marks it done in the ledger.
    ///
    /// While the partition is gated by an uncommitted non-reproducible segment, the cut is
    /// deferred instead (and `Ok(false)` returned); it is retried later.
    pub fn cut(&mut self, ctx: &WriterCtx, reason: CutReason) -> Result<bool, WriteError> {
        let Some(start) = self.start else {
            self.deferred = None;
            return Ok(true);
        };
        if let Some(g) = self.gate {
            if !ctx
                .ledger
                .lock()
                .expect("ledger lock")
                .is_committed(&self.tp, g)
            {
                self.deferred = self.deferred.or(Some(reason));
                return Ok(false);
            }
            self.gate = None;
        }
        // A deferred cut no longer falls where the data would put it.
        let reproducible = reason.is_reproducible() && self.deferred.is_none();
        self.deferred = None;
        self.start = None;
        let end = self.next;
        if !reproducible {
            self.gate = Some(end);
        }
        self.deadline.reset();
        let ticket = ctx
            .ledger
            .lock()
            .expect("ledger lock")
            .seal(&self.tp, self.epoch, start, end)?;

        let mut uploads = Vec::new();
        let mut partitions = Vec::new();
        let mut records = 0u64;
        let mut bytes = 0u64;
        for (slot, files) in self.files.iter_mut().enumerate() {
            let table = &ctx.tables[self.routers[slot].0];
            for (path, f) in files.drain() {
                let key = f.upload.key().to_string();
                let written_before = f.encoder.written() - f.encoder.buffered() as u64;
                let tail = f.encoder.finish().map_err(|source| WriteError::Encode {
                    key: key.clone(),
                    source,
                })?;
                // The tail now carries what was charged as buffered, plus the trailer.
                ctx.budget.charge(tail.len().saturating_sub(f.charged));
                ctx.budget.release(GZIP_ENCODER_OVERHEAD);
                self.held = self.held.saturating_sub(GZIP_ENCODER_OVERHEAD + f.charged);
                records += f.records;
                let file_bytes = written_before + tail.len() as u64;
                bytes += file_bytes;
                let facts = FileFacts {
                    key: key.clone(),
                    records: f.records,
                    bytes: file_bytes,
                    min_event_micros: f.min_event,
                    max_event_micros: f.max_event,
                };
                tracing::debug!(table = %table.name, key = %key, records = f.records, parts = f.upload.parts(), reason = reason.as_str(), "file closed");
                uploads.push(f.upload.finish(&ctx.rt, &ctx.store, &ctx.budget, tail));
                partitions.push(NewPartition {
                    table: table.name.clone(),
                    location: format!("{}/{}/{}/", ctx.location_base, table.name, path),
                    path,
                    files: vec![facts],
                });
            }
        }
        let files = uploads.len() as u64;
        let tp = self.tp.clone();
        let ledger = ctx.ledger.clone();
        let catalog = ctx.catalog.clone();
        let stats = ctx.stats.clone();
        let fatal = ctx.fatal.clone();
        let task = ctx.rt.spawn(async move {
            let result: Result<(), WriteError> = async {
                for u in uploads {
                    match u.await {
                        Ok(r) => r?,
                        Err(e) => {
                            return Err(WriteError::Task { tp: tp.clone(), start, end, message: e.to_string() });
                        }
                    }
                }
                catalog.ensure(&partitions).await?;
                crash_point(&tp, start, end);
                if let Some(t) = ticket {
                    ledger.lock().expect("ledger lock").done(&t);
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => {
                    Stats::add(&stats.records_written, records);
                    Stats::add(&stats.files_written, files);
                    Stats::add(&stats.bytes_written, bytes);
                    Stats::add(&stats.segments_committed, 1);
                    tracing::debug!(%tp, start, end, files, records, reason = reason.as_str(), "segment uploaded");
                }
                Err(e) => fatal.set(e.into()),
            }
        });
        self.in_flight.push(task);
        Ok(true)
    }

    /// A cut that is waiting for the gate, if any.
    pub fn deferred(&self) -> Option<CutReason> {
        self.deferred
    }

    /// Forgets segment tasks that have finished.
    pub fn reap(&mut self) {
        self.in_flight.retain(|t| !t.is_finished());
    }

    /// Blocks until every sealed segment of this writer has finished uploading (or failed), or
    /// until `deadline`. Returns whether all finished.
    pub fn wait(&mut self, rt: &Handle, deadline: Instant) -> bool {
        for t in self.in_flight.drain(..) {
            let left = deadline.saturating_duration_since(Instant::now());
            if rt
                .block_on(async { tokio::time::timeout(left, t).await })
                .is_err()
            {
                return false;
            }
        }
        true
    }
}

/// Creates the file for a new partition path; its key carries the offset of its first record.
fn open_file(
    ctx: &WriterCtx,
    table: &TablePlan,
    tp: &Tp,
    path: &str,
    offset: i64,
) -> Result<OpenFile, WriteError> {
    let mut name = String::with_capacity(64);
    escape_partition_value(&tp.topic, &mut name);
    let key = format!(
        "{}{}{}/{}/{}+{}+{:020}.{}",
        ctx.root,
        if ctx.root.is_empty() { "" } else { "/" },
        table.name,
        path,
        name,
        tp.partition,
        offset,
        table.format.extension()
    );
    let parsed = Path::parse(&key).map_err(|e| WriteError::Key {
        table: table.name.clone(),
        key: key.clone(),
        message: e.to_string(),
    })?;
    Ok(OpenFile {
        encoder: Box::new(GzipNdjson::new(table.compression_level)),
        upload: ObjectUpload::new(parsed),
        records: 0,
        charged: 0,
        min_event: i64::MAX,
        max_event: i64::MIN,
    })
}

/// Test hook for crash tests: with `LAKESINK_FAILPOINT=crash-before-commit:P`, the process
/// kills itself (SIGKILL, no cleanup) with probability `P` after a segment's files are uploaded
/// and registered and before the ledger hears of it — the moment where a crash leaves objects
/// in the store whose offsets are not committed.
fn crash_point(tp: &Tp, start: i64, end: i64) {
    static P: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let p = *P.get_or_init(|| {
        std::env::var("LAKESINK_FAILPOINT")
            .ok()
            .and_then(|v| v.strip_prefix("crash-before-commit:")?.parse().ok())
            .unwrap_or(0.0)
    });
    if p > 0.0 && rand::random::<f64>() < p {
        tracing::error!(%tp, start, end, "failpoint crash-before-commit: killing the process");
        // SAFETY: raise only sends a signal to this process.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}

impl OpenFile {
    fn saw(&mut self, event_micros: i64) {
        self.min_event = self.min_event.min(event_micros);
        self.max_event = self.max_event.max(event_micros);
    }
}

/// Appends one record to a file, ships a part when one is ready, and says whether the file is
/// now full.
fn append(
    ctx: &WriterCtx,
    table: &TablePlan,
    f: &mut OpenFile,
    payload: &[u8],
    held: &mut usize,
) -> Result<Option<CutReason>, WriteError> {
    f.encoder
        .append(payload)
        .map_err(|source| WriteError::Encode {
            key: f.upload.key().to_string(),
            source,
        })?;
    f.records += 1;
    let buffered = f.encoder.buffered();
    if buffered > f.charged {
        ctx.budget.charge(buffered - f.charged);
        *held += buffered - f.charged;
        f.charged = buffered;
    }
    if let Some(part) = f.encoder.take_ready(ctx.part_size) {
        // The part's bytes stay charged until the store has them; the upload credits them.
        *held = held.saturating_sub(f.charged);
        f.charged = 0;
        f.upload.send_part(&ctx.rt, &ctx.store, &ctx.budget, part);
    }
    Ok(file_full(&table.rotate, f.records, f.encoder.written()))
}

impl Drop for PartitionWriter {
    fn drop(&mut self) {
        // Files still open are abandoned: their multipart uploads abort when their channel
        // closes. Return what they held to the budget.
        let mut held = 0;
        for files in &self.files {
            for f in files.values() {
                held += GZIP_ENCODER_OVERHEAD + f.charged;
            }
        }
        if held > 0 {
            tracing::debug!(tp = %self.tp, held, "abandoning open files");
        }
        self.budget.release(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{NoCatalog, Registrar};
    use crate::config::Plan;
    use crate::error::Fatal;
    use std::time::Duration;

    fn ctx(rt: &tokio::runtime::Runtime) -> WriterCtx {
        let plan = Plan::from_toml(
            r#"
[kafka]
brokers = "b:9092"
group_id = "g"
[storage]
url = "memory://"
[[tables]]
name = "t"
topics = ["t"]
timestamp = { field = "ts" }
max_future_skew = "1000d"
[tables.rotate]
max_records = 3
"#,
            "test",
        )
        .unwrap();
        WriterCtx {
            tables: Arc::new(plan.tables),
            store: Arc::new(object_store::memory::InMemory::new()),
            root: String::new(),
            location_base: "memory://".into(),
            rt: rt.handle().clone(),
            ledger: Arc::new(Mutex::new(OffsetLedger::new())),
            catalog: Arc::new(Registrar::new(
                Arc::new(NoCatalog),
                Vec::new(),
                Arc::new(Stats::default()),
            )),
            budget: Arc::new(Budget::new(1 << 30)),
            stats: Arc::new(Stats::default()),
            fatal: Arc::new(Fatal::default()),
            part_size: 5 << 20,
        }
    }

    fn push(w: &mut PartitionWriter, ctx: &WriterCtx, offset: i64) {
        let payload = br#"{"ts":"2024-01-02T01:00:00Z"}"#;
        let rec = RecordIn {
            offset,
            kafka_millis: Some(1_704_157_200_000),
            payload: Some(payload),
        };
        w.push(ctx, rec, Instant::now(), 0).unwrap();
    }

    fn safe(ctx: &WriterCtx) -> Vec<(Tp, i64)> {
        ctx.ledger.lock().unwrap().to_commit()
    }

    #[test]
    fn after_a_clock_cut_the_next_cut_waits_for_its_commit() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ctx = ctx(&rt);
        let tp = Tp::new("t", 0);
        let epoch = ctx.ledger.lock().unwrap().assign(&tp);
        let mut w = PartitionWriter::new(&ctx, tp.clone(), epoch).unwrap();
        let far = Instant::now() + Duration::from_secs(60);

        // Cuts decided by the data pipeline freely: two segments sealed without any commit.
        for o in 0..6 {
            push(&mut w, &ctx, o);
        }
        assert!(w.wait(&ctx.rt, far));
        assert_eq!(safe(&ctx), vec![(tp.clone(), 6)]);

        // A cut by the clock gates the partition…
        push(&mut w, &ctx, 6);
        assert!(w.cut(&ctx, CutReason::Age).unwrap());
        assert!(w.wait(&ctx.rt, far));
        assert_eq!(safe(&ctx), vec![(tp.clone(), 7)]);
        // …so a full file (max_records = 3) is not cut until offset 7 is committed.
        for o in 7..10 {
            push(&mut w, &ctx, o);
        }
        assert_eq!(w.deferred(), Some(CutReason::Records));
        assert!(w.wait(&ctx.rt, far));
        assert_eq!(
            safe(&ctx),
            vec![(tp.clone(), 7)],
            "nothing sealed past the gate"
        );
        assert!(
            !w.cut(&ctx, CutReason::Shutdown).unwrap(),
            "a shutdown cut waits too"
        );

        ctx.ledger.lock().unwrap().committed(&[(tp.clone(), 7)]);
        push(&mut w, &ctx, 10);
        assert_eq!(w.deferred(), None, "the deferred cut happened");
        assert!(w.wait(&ctx.rt, far));
        assert_eq!(safe(&ctx), vec![(tp.clone(), 11)]);
        // The deferred cut did not fall where the data put it, so it gates again.
        push(&mut w, &ctx, 11);
        assert!(!w.cut(&ctx, CutReason::Age).unwrap());
    }
}
