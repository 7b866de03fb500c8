//! Partition writers: the open segment of one Kafka partition, its open files (one per table and
//! partition path), and the hand-over of a cut segment to upload → catalog → ledger.
//!
//! A writer lives on one worker thread and sees its partition's records in offset order, so every
//! decision it makes from the records (routing, cuts on count or bytes) is the same on a replay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::catalog::{CatalogError, FileFacts, NewPartition, Registrar};
use crate::claim::{Claim, ClaimError, Claims, Fingerprint, Outcome};
use crate::commit::{CommitError, OffsetLedger, Tp};
use crate::config::{BadRecord, MissingTimestamp, TablePlan};
use crate::encode::parquet::{SETTLE_BYTES, SETTLE_ROWS};
use crate::encode::{EncodeError, Encoder, GzipNdjson, ParquetEncoder, Rejected};
use crate::error::Fatal;
use crate::memory::Budget;
use crate::rotate::{file_full, CutReason, Deadline};
use crate::route::escape::escape_partition_value;
use crate::route::{RecordRef, RouteError, TableRouter, MAX_KEY_BYTES};
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
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("table `{table}`: object key `{key}` is invalid: {message}")]
    Key {
        table: String,
        key: String,
        message: String,
    },
    #[error("table `{table}`: {message}")]
    Schema { table: String, message: String },
    #[error("table `{table}`: {source}")]
    Registry {
        table: String,
        #[source]
        source: lakesink_schema_registry::registry::RegistryError,
    },
    #[error("{tp}: producing a dead letter failed: {message}")]
    DeadLetter { tp: Tp, message: String },
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
    /// Worker threads sharing the budget.
    pub workers: usize,
    pub stats: Arc<Stats>,
    pub fatal: Arc<Fatal>,
    pub part_size: usize,
    /// Directory of dead-letter objects below the store root (`_errors`).
    pub dead_letter_prefix: String,
    /// With `dead_letter.kind = "kafka"`: where dead letters are produced instead.
    pub dead_letter_producer: Option<Arc<DeadLetterProducer>>,
    /// Objects being completed in the store at once, daemon-wide.
    pub upload_slots: Arc<tokio::sync::Semaphore>,
    /// Segment claims (see [`crate::claim`]).
    pub claims: Arc<Claims>,
    /// Partitions the consumer must read again under a new epoch: see [`Reread`].
    pub reread: Arc<Mutex<Vec<Reread>>>,
}

/// A partition its writer wants read again: its segment lost its claim to another writer (from
/// the committed offset), or its first record lies inside a claimed segment (from that
/// segment's start). The consumer drops the writer, seeks and gives a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reread {
    pub tp: Tp,
    /// The epoch of the writer that asked: a partition revoked or re-read meanwhile is not.
    pub epoch: u64,
    /// Where to read from; `None`: the group's committed offset.
    pub from: Option<i64>,
}

/// One record handed to a writer.
#[derive(Debug, Clone, Copy)]
pub struct RecordIn<'a> {
    pub offset: i64,
    pub kafka_millis: Option<i64>,
    pub payload: Option<&'a [u8]>,
    /// Only dead letters use the key and the headers (encoded by
    /// [`crate::worker::encode_headers`]).
    pub key: Option<&'a [u8]>,
    pub headers: Option<&'a [u8]>,
}

/// A row appended to a file and not settled yet: what its dead letter would need besides the
/// bytes the encoder holds. Ranges are into [`OpenFile::unsettled_bytes`].
#[derive(Debug, Clone, Copy)]
struct Unsettled {
    offset: i64,
    kafka_millis: Option<i64>,
    key: Option<(u32, u32)>,
    headers: Option<(u32, u32)>,
    /// The record's value, when the encoder was given another text (decoded Avro).
    value: Option<(u32, u32)>,
}

/// A segment cut and sealed in the ledger whose objects are not completed yet.
struct Sealed {
    start: i64,
    end: i64,
    /// Its first record's fingerprint and its generation, for the claim.
    first: Fingerprint,
    generation: u32,
    /// It replays a claimed segment without all of its records (see
    /// [`PartitionWriter::partial`]).
    partial: bool,
    ticket: Option<crate::commit::Ticket>,
    /// Dead letters produced to the dead-letter topic; the segment is done once all are acked.
    deliveries: Vec<DeliveryFuture>,
    /// Each file's upload and the bytes not sent yet.
    files: Vec<(ObjectUpload, Vec<u8>)>,
    partitions: Vec<NewPartition>,
    records: u64,
    bytes: u64,
    reason: CutReason,
}

impl Sealed {
    /// Bytes of its files' tails, charged to the budget at the cut until the store has them.
    fn held(&self) -> usize {
        self.files.iter().map(|(_, tail)| tail.len()).sum()
    }
}

struct OpenFile {
    encoder: Box<dyn Encoder>,
    upload: ObjectUpload,
    records: u64,
    /// Bytes handed to the upload as parts.
    sent: u64,
    /// What a dead letter needs of each row not settled yet (formats that check rows in
    /// batches: Parquet), whose bytes are in [`OpenFile::unsettled_bytes`]. Rows wait across
    /// consumer batches until [`settle_due`] or the segment is cut: Arrow then decodes them in
    /// large batches.
    unsettled: Vec<Unsettled>,
    /// Keys and headers of the unsettled rows (and their values, for tables whose encoder is
    /// given another text than the record's value).
    unsettled_bytes: Vec<u8>,
    /// Budget charged for this file: encoded bytes and records the encoder holds, its state,
    /// and [`FILE_OVERHEAD`].
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
    /// Open dead-letter files, by `{table}/date=…` below the dead-letter prefix.
    errors: HashMap<String, OpenFile>,
    /// Dead letters produced to the dead-letter topic from the open segment, not yet acked.
    deliveries: Vec<DeliveryFuture>,
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
    /// End of the last segment completed in the store; the next one is completed only once
    /// this offset is committed (see [`crate::rotate`]).
    gate: Option<i64>,
    /// Segments cut and sealed, waiting for the gate, oldest first. Their bytes are in memory
    /// (charged to the budget) or in parts of multipart uploads not yet completed (invisible).
    sealed: std::collections::VecDeque<Sealed>,
    /// Set by a segment task whose claim another writer refused: that segment's end will
    /// never be committed by this writer, so nothing behind the gate can complete. What the
    /// writer holds is abandoned; the partition is re-read under a new epoch.
    lost: Arc<AtomicBool>,
    /// Files with unsettled rows: (router slot, partition path).
    dirty: Vec<(usize, String)>,
    /// A file's unsettled rows are [`settle_due`]: settle those files after this record.
    settle_now: bool,
    rejected: Vec<Rejected>,
    /// Scratch for Avro records decoded to JSON.
    json: String,
    /// Per router slot: the schema id of its open files (registry tables).
    schema_ids: Vec<Option<u32>>,
    /// Claims of segments at or after the first offset this writer read, not reached yet;
    /// listed from the store when the first record arrives.
    known: Option<std::collections::VecDeque<Claim>>,
    /// The listing of those claims the consumer started, until the first record needs it.
    prefetch: Option<crate::claim::Prefetch>,
    /// The open segment replays a claimed one: it is cut at this end offset and nowhere else.
    follow: Option<i64>,
    /// The open segment must be cut before a record at or after this offset (the end of the
    /// claim it follows, or the start of the next claim).
    stop_at: Option<i64>,
    /// Fingerprint of the open segment's first record.
    first: Fingerprint,
    /// The topic partition's generation (see [`crate::claim`]): which claims it follows, and
    /// the suffix of its object names.
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

impl PartitionWriter {
    /// A writer for `tp` under `epoch`; `sought` is the offset the consumer sought to for a
    /// [`Reread`] from a claimed segment's start.
    pub fn new(
        ctx: &WriterCtx,
        tp: Tp,
        epoch: u64,
        sought: Option<i64>,
    ) -> Result<PartitionWriter, String> {
        let mut routers = Vec::new();
        for (i, t) in ctx.tables.iter().enumerate() {
            if t.topics.iter().any(|x| **x == *tp.topic) {
                let mut router = TableRouter::new(t)?;
                router.limit_path(path_room(&ctx.root, &t.name, &tp));
                routers.push((i, router));
            }
        }
        let files = routers.iter().map(|_| HashMap::new()).collect();
        Ok(PartitionWriter {
            tp,
            epoch,
            files,
            errors: HashMap::new(),
            deliveries: Vec::new(),
            start: None,
            next: 0,
            deadline: Deadline::default(),
            held: 0,
            path: String::with_capacity(128),
            in_flight: Vec::new(),
            budget: ctx.budget.clone(),
            gate: None,
            sealed: Default::default(),
            lost: Arc::new(AtomicBool::new(false)),
            dirty: Vec::new(),
            settle_now: false,
            rejected: Vec::new(),
            json: String::new(),
            schema_ids: routers.iter().map(|_| None).collect(),
            routers,
            known: None,
            prefetch: None,
            follow: None,
            stop_at: None,
            first: Fingerprint::default(),
            generation: 0,
            claimed_keys: HashMap::new(),
            sought,
            rewinding: false,
            partial: false,
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

    /// Whether the open segment replays a claimed one (it can only be cut at the claim's end).
    pub fn following(&self) -> bool {
        self.follow.is_some()
    }

    /// Called before the first record of a segment: finds whether it replays a claimed
    /// segment, and where the next claim forces a cut. On the writer's first record, it also
    /// finds the partition's generation, and asks for a re-read from a claimed segment's start
    /// when the record lies inside that segment (the group's offsets were reset into it).
    fn begin_segment(&mut self, ctx: &WriterCtx, rec: &RecordIn<'_>) -> Result<(), WriteError> {
        let first = Fingerprint::of(rec.kafka_millis, rec.key, rec.payload);
        self.first = first;
        if self.known.is_none() {
            let prefetched = self
                .prefetch
                .take()
                .and_then(|p| p.wait(&ctx.rt, rec.offset));
            let around = match prefetched {
                Some(listed) => listed?,
                None => ctx.rt.block_on(ctx.claims.around(&self.tp, rec.offset))?,
            };
            self.generation = around.generation;
            if let Some(c) = around.containing {
                if self.sought.is_some_and(|s| s <= c.start) {
                    // Read again from the claim's start, Kafka answered from later on: its
                    // first records are gone (retention, compaction). Follow it from here.
                    tracing::warn!(tp = %self.tp, from = rec.offset, start = c.start, end = c.end, "the first records of a claimed segment are no longer in Kafka: replaying it from here, under its claimed keys");
                    self.known = Some(around.later.into());
                    self.follow_claim(c, rec.offset);
                    return Ok(());
                }
                tracing::warn!(tp = %self.tp, offset = rec.offset, start = c.start, end = c.end, "the partition starts inside a segment already in the lake (its offsets were reset or expired): reading it again from the segment's start, so that it is rewritten whole");
                self.rewinding = true;
                ctx.reread.lock().expect("reread lock").push(Reread {
                    tp: self.tp.clone(),
                    epoch: self.epoch,
                    from: Some(c.start),
                });
                return Ok(());
            }
            if let Some(c) = around.later.first() {
                tracing::info!(tp = %self.tp, from = rec.offset, generation = self.generation, claims = around.later.len(), first_end = c.end, "replaying segments claimed in the store: cutting where they were cut");
            }
            self.known = Some(around.later.into());
        }
        // (`cut` cleared `follow`, `stop_at` and `claimed_keys`.)
        let known = self.known.as_mut().expect("listed above");
        while known.front().is_some_and(|c| c.end <= rec.offset) {
            known.pop_front();
        }
        let Some(next) = known.front() else {
            return Ok(());
        };
        if next.start > rec.offset {
            // Records before a claimed segment (none claimed them): cut freely, but before it.
            self.stop_at = Some(next.start);
            return Ok(());
        }
        if next.start == rec.offset && !next.first().same(&first) {
            // Another incarnation of the topic (deleted and created again, or another cluster)
            // wrote these claims: a new generation, whose claims and object names are its own.
            self.generation += 1;
            tracing::warn!(tp = %self.tp, offset = rec.offset, generation = self.generation, "the record at a claimed segment's start is not the one claimed: this is another incarnation of the topic (re-created, or another cluster); landing it as a new generation, beside what the earlier one landed");
            known.clear();
            return Ok(());
        }
        // (A claim starting below the record: its first records were compacted away.)
        let c = known.pop_front().expect("a claim");
        self.follow_claim(c, rec.offset);
        Ok(())
    }

    /// The open segment, whose first record is at `offset`, replays claim `c`: it starts at
    /// the claim's start, is cut at its end and nowhere else, and its files take their claimed
    /// keys.
    fn follow_claim(&mut self, c: Claim, offset: i64) {
        tracing::debug!(tp = %self.tp, start = c.start, end = c.end, offset, "following a claimed segment");
        self.start = Some(c.start);
        self.first = c.first();
        self.partial = c.start < offset;
        self.follow = Some(c.end);
        self.stop_at = Some(c.end);
        self.claimed_keys = c
            .objects
            .into_iter()
            .filter_map(|k| Some((k.rsplit_once('/')?.0.to_string(), k)))
            .collect();
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
        self.push_batch(ctx, std::slice::from_ref(&rec), now, now_micros)
    }

    /// Writes consecutive records of the partition; cuts the segment after a record that fills
    /// a file. Rows that formats check in batches (Parquet) are settled when a file holds
    /// [`SETTLE_ROWS`] of them (or [`SETTLE_BYTES`]) and before every cut.
    /// Keeps the listing of this partition's claims the consumer started with its first record.
    pub fn prefetched(&mut self, p: crate::claim::Prefetch) {
        if self.known.is_none() {
            self.prefetch = Some(p);
        }
    }

    pub fn push_batch(
        &mut self,
        ctx: &WriterCtx,
        recs: &[RecordIn<'_>],
        now: Instant,
        now_micros: i64,
    ) -> Result<(), WriteError> {
        for rec in recs {
            if self.rewinding {
                return Ok(()); // the consumer re-reads the partition from an earlier offset
            }
            if self.start.is_some() && self.stop_at.is_some_and(|b| rec.offset >= b) {
                // The end of a claimed segment, or the start of the next one.
                self.cut(ctx, CutReason::Claim)?;
            }
            if self.follow.is_none() && self.schema_changes(ctx, rec) {
                self.cut(ctx, CutReason::Schema)?;
            }
            if self.start.is_none() {
                self.begin_segment(ctx, rec)?;
                if self.rewinding {
                    return Ok(());
                }
            }
            let mut full = self.push_one(ctx, rec, now, now_micros)?;
            if self.settle_now {
                full = full.or(self.settle(ctx, now, true)?);
            }
            if self.follow.is_some_and(|end| self.next >= end) {
                // The claimed segment's last record: cut now, not when the next one comes.
                self.cut(ctx, CutReason::Claim)?;
            } else if let Some(reason) = full {
                self.cut(ctx, reason)?;
            }
        }
        Ok(())
    }

    /// Whether `rec` has another schema id than the open Parquet files of a registry table: the
    /// segment is then cut before it, so each file holds one schema.
    fn schema_changes(&self, ctx: &WriterCtx, rec: &RecordIn<'_>) -> bool {
        self.routers.iter().enumerate().any(|(slot, (t, _))| {
            let table = &ctx.tables[*t];
            let Some(reg) = &table.registry else {
                return false;
            };
            if table.parquet_options.is_none() || self.files[slot].is_empty() {
                return false;
            }
            let id = match rec.payload.and_then(lakesink_schema_registry::wire::split) {
                Some((id, _)) => Some(id),
                None => reg.latest_id(),
            };
            id != self.schema_ids[slot]
        })
    }

    /// Settles the rows of the files that have unsettled ones (with `only_full`, of those
    /// that hold [`SETTLE_ROWS`] or [`SETTLE_BYTES`]). A row the format refuses follows the table's
    /// `on_bad_record`: to the dead-letter destination with the reason, or an error. Says
    /// whether a dead-letter file is now full.
    fn settle(
        &mut self,
        ctx: &WriterCtx,
        now: Instant,
        only_full: bool,
    ) -> Result<Option<CutReason>, WriteError> {
        let mut full = None;
        self.settle_now = false;
        for (slot, path) in std::mem::take(&mut self.dirty) {
            let table = &ctx.tables[self.routers[slot].0];
            let Some(f) = self.files[slot].get_mut(&path) else {
                continue;
            };
            if only_full && !settle_due(f) {
                self.dirty.push((slot, path));
                continue;
            }
            self.rejected.clear();
            f.encoder
                .settle(&mut self.rejected)
                .map_err(|source| WriteError::Encode {
                    key: f.upload.key().to_string(),
                    source,
                })?;
            for r in self.rejected.drain(..) {
                let row = f.unsettled[r.index];
                let range = |r: Option<(u32, u32)>| {
                    r.map(|(s, e)| &f.unsettled_bytes[s as usize..e as usize])
                };
                let rec = RecordIn {
                    offset: row.offset,
                    kafka_millis: row.kafka_millis,
                    payload: range(row.value).or(Some(&r.record)),
                    key: range(row.key),
                    headers: range(row.headers),
                };
                f.records -= 1;
                let cut = bad_record(
                    DeadLetterFiles {
                        naming: Naming {
                            generation: self.generation,
                            claimed: &self.claimed_keys,
                        },
                        files: &mut self.errors,
                        deliveries: &mut self.deliveries,
                        held: &mut self.held,
                        deadline: &mut self.deadline,
                        tp: &self.tp,
                    },
                    ctx,
                    table,
                    &rec,
                    RouteError::Schema(r.reason),
                    now,
                )?;
                full = full.or(cut);
            }
            f.unsettled.clear();
            f.unsettled_bytes.clear();
            if f.unsettled_bytes.capacity() > 64 * 1024 {
                f.unsettled_bytes.shrink_to(4096);
            }
            recharge(ctx, f, &mut self.held);
        }
        Ok(full)
    }

    /// Routes one record (`index` in its batch) and appends it to its files.
    fn push_one(
        &mut self,
        ctx: &WriterCtx,
        rec: &RecordIn<'_>,
        now: Instant,
        now_micros: i64,
    ) -> Result<Option<CutReason>, WriteError> {
        let mut json = std::mem::take(&mut self.json);
        let r = self.push_slots(ctx, rec, now, now_micros, &mut json);
        self.json = json;
        r
    }

    fn push_slots(
        &mut self,
        ctx: &WriterCtx,
        rec: &RecordIn<'_>,
        now: Instant,
        now_micros: i64,
        json: &mut String,
    ) -> Result<Option<CutReason>, WriteError> {
        let mut full = None;
        for slot in 0..self.routers.len() {
            let (table_idx, router) = &mut self.routers[slot];
            let table = &ctx.tables[*table_idx];
            // Confluent-framed records of a registry table: their own schema, as JSON.
            let unwrapped = unwrap_wire(ctx, table, rec.payload, json)?;
            let (payload, schema_id) = match &unwrapped {
                Ok(x) => *x,
                Err(_) => (rec.payload, None),
            };
            let r = RecordRef {
                topic: &self.tp.topic,
                partition: self.tp.partition,
                offset: rec.offset,
                kafka_millis: rec.kafka_millis,
                payload,
            };
            let routed = match unwrapped.and_then(|_| router.route(&r, now_micros, &mut self.path))
            {
                Ok(routed) => routed,
                Err(source) => {
                    let cut = bad_record(
                        DeadLetterFiles {
                            naming: Naming {
                                generation: self.generation,
                                claimed: &self.claimed_keys,
                            },
                            files: &mut self.errors,
                            deliveries: &mut self.deliveries,
                            held: &mut self.held,
                            deadline: &mut self.deadline,
                            tp: &self.tp,
                        },
                        ctx,
                        table,
                        rec,
                        source,
                        now,
                    )?;
                    full = full.or(cut);
                    continue;
                }
            };
            if routed.fell_back {
                Stats::add(&ctx.stats.timestamp_fallbacks, 1);
            }
            let payload = payload.unwrap_or_default();
            let files = &mut self.files[slot];
            let f = match files.get_mut(self.path.as_str()) {
                Some(f) => f,
                None => {
                    let dir = format!("{}/{}", table.name, self.path);
                    let plan = match (&table.registry, &table.parquet_options, schema_id) {
                        (Some(reg), Some(options), Some(id)) => {
                            Some(reg.plan_for(id, options).map_err(|message| {
                                WriteError::Schema {
                                    table: table.name.clone(),
                                    message,
                                }
                            })?)
                        }
                        _ => table.parquet.clone(),
                    };
                    let encoder: Box<dyn Encoder> = match plan {
                        Some(plan) => Box::new(ParquetEncoder::new(plan)),
                        None => Box::new(GzipNdjson::new(table.compression_level)),
                    };
                    self.schema_ids[slot] = schema_id;
                    let naming = Naming {
                        generation: self.generation,
                        claimed: &self.claimed_keys,
                    };
                    let f = open_file(ctx, table, &self.tp, &dir, rec.offset, naming, encoder)?;
                    self.deadline.file_opened(now, table.rotate.max_age);
                    files.entry(self.path.clone()).or_insert(f)
                }
            };
            f.saw(routed.event_micros);
            let cut = append(ctx, table, f, payload, &mut self.held)?;
            if f.encoder.unsettled() > 0 {
                if f.unsettled.is_empty() {
                    self.dirty.push((slot, self.path.clone()));
                }
                let side = &mut f.unsettled_bytes;
                let mut keep = |b: Option<&[u8]>| {
                    b.map(|b| {
                        let start = side.len() as u32;
                        side.extend_from_slice(b);
                        (start, side.len() as u32)
                    })
                };
                // The encoder holds the value, unless it was given decoded Avro.
                let decoded = rec.payload.map(<[u8]>::as_ptr) != Some(payload.as_ptr());
                f.unsettled.push(Unsettled {
                    offset: rec.offset,
                    kafka_millis: rec.kafka_millis,
                    key: keep(rec.key),
                    headers: keep(rec.headers),
                    value: keep(rec.payload.filter(|_| decoded)),
                });
                self.settle_now |= settle_due(f);
            }
            full = full.or(cut);
        }
        if self.start.is_none() {
            self.start = Some(rec.offset);
        }
        self.next = rec.offset + 1;
        // A sealed segment waiting for the gate is launched by the worker's tick, not here:
        // checking the ledger on every record would lock it once per record.
        Ok(full)
    }

    /// Cuts the open segment: finishes every open file and seals the segment in the ledger.
    /// The segment's objects are completed in the store by [`PartitionWriter::launch`], one
    /// segment at a time: the next only once the one before is committed (the gate). So at most
    /// one segment of a partition is ever visible in the store and uncommitted (DESIGN.md,
    /// Invariant 2), while cuts still fall where the data puts them.
    ///
    /// A segment that replays a claimed one is cut only at the claim's end
    /// ([`CutReason::Claim`]); any other cut is skipped, and on a revocation or shutdown its
    /// records stay uncommitted for the next reader.
    pub fn cut(&mut self, ctx: &WriterCtx, reason: CutReason) -> Result<(), WriteError> {
        let Some(start) = self.start else {
            return Ok(());
        };
        if let Some(end) = self.follow.filter(|_| reason != CutReason::Claim) {
            if matches!(reason, CutReason::Revoke | CutReason::Shutdown) {
                tracing::info!(tp = %self.tp, start, end, reached = self.next, reason = reason.as_str(), "not cutting a replay of a claimed segment before its end: its records stay uncommitted for the next reader");
            }
            return Ok(());
        }
        // Rows still unsettled are checked now: a refused one becomes a dead letter of this
        // segment (a dead-letter file that fills is cut with it).
        self.settle(ctx, Instant::now(), false)?;
        // A replayed claim ends where it was claimed, even when its last offsets are no
        // longer in Kafka (compaction, aborted transactions): a later record proved them gone.
        let end = match self.follow {
            Some(claimed) if reason == CutReason::Claim => claimed.max(self.next),
            _ => self.next,
        };
        let partial = std::mem::take(&mut self.partial) || end > self.next;
        self.start = None;
        self.follow = None;
        self.stop_at = None;
        self.claimed_keys.clear();
        self.deadline.reset();
        let ticket = ctx
            .ledger
            .lock()
            .expect("ledger lock")
            .seal(&self.tp, self.epoch, start, end)?;

        let mut files = Vec::new();
        let mut partitions = Vec::new();
        let mut records = 0u64;
        let mut bytes = 0u64;
        for (slot, open) in self.files.iter_mut().enumerate() {
            let table = &ctx.tables[self.routers[slot].0];
            for (path, f) in open.drain() {
                let (upload, tail, facts) = close(ctx, f, &mut self.held)?;
                if facts.records == 0 {
                    // Every row was refused by the format and dead-lettered: no object.
                    ctx.budget.release(tail.len());
                    continue;
                }
                records += facts.records;
                bytes += facts.bytes;
                tracing::debug!(table = %table.name, key = %facts.key, records = facts.records, parts = upload.parts(), reason = reason.as_str(), "file closed");
                files.push((upload, tail));
                partitions.push(NewPartition {
                    table: table.name.clone(),
                    location: format!("{}/{}/{}/", ctx.location_base, table.name, path),
                    path,
                    files: vec![facts],
                });
            }
        }
        for (_, f) in self.errors.drain() {
            let (upload, tail, facts) = close(ctx, f, &mut self.held)?;
            tracing::debug!(key = %facts.key, records = facts.records, "dead-letter file closed");
            files.push((upload, tail));
        }
        self.sealed.push_back(Sealed {
            start,
            end,
            first: self.first,
            generation: self.generation,
            partial,
            ticket,
            deliveries: std::mem::take(&mut self.deliveries),
            files,
            partitions,
            records,
            bytes,
            reason,
        });
        self.launch(ctx);
        Ok(())
    }

    /// Completes the oldest sealed segment in the store if the gate allows: its predecessor's
    /// end offset is committed. A task then registers its partitions and marks it done in the
    /// ledger. Called after every cut, on every worker tick, and by flushes.
    pub fn launch(&mut self, ctx: &WriterCtx) {
        if self.sealed.is_empty() {
            return;
        }
        if self.lost.load(Ordering::Acquire) {
            // Behind a refused claim: never completed (their multipart uploads abort).
            let held: usize = self.sealed.drain(..).map(|seg| seg.held()).sum();
            self.budget.release(held);
            return;
        }
        if let Some(g) = self.gate {
            let committed = ctx
                .ledger
                .lock()
                .expect("ledger lock")
                .is_committed(&self.tp, g);
            if !committed {
                return;
            }
        }
        let seg = self.sealed.pop_front().expect("a sealed segment");
        self.gate = Some(seg.end);
        let Sealed {
            start,
            end,
            first,
            generation,
            partial,
            ticket,
            deliveries,
            files,
            partitions,
            records,
            bytes,
            reason,
        } = seg;
        let files_n = files.len() as u64;
        let claim = Claim {
            topic: self.tp.topic.to_string(),
            partition: self.tp.partition,
            start,
            end,
            first_timestamp: first.timestamp,
            first_crc: first.crc,
            generation,
            records,
            objects: {
                let mut keys: Vec<String> =
                    files.iter().map(|(u, _)| u.key().to_string()).collect();
                keys.sort_unstable();
                keys
            },
            writer: crate::claim::writer_id(),
        };
        let (claims, reread, epoch) = (ctx.claims.clone(), ctx.reread.clone(), self.epoch);
        let lost = self.lost.clone();
        let (rt, store, budget, slots) = (
            ctx.rt.clone(),
            ctx.store.clone(),
            ctx.budget.clone(),
            ctx.upload_slots.clone(),
        );
        let tp = self.tp.clone();
        let ledger = ctx.ledger.clone();
        let catalog = ctx.catalog.clone();
        let stats = ctx.stats.clone();
        let fatal = ctx.fatal.clone();
        let task = ctx.rt.spawn(async move {
            let result: Result<bool, WriteError> = async {
                // Claim the segment before any of its objects becomes visible.
                let outcome = claims.claim(&tp, &claim).await?;
                if let Outcome::Conflict(other) = outcome {
                    tracing::warn!(%tp, start, end, claimed_end = other.end, claimed_by = %other.writer, "this segment was claimed with another end or another first record (another writer, or another incarnation of the topic): completing none of its objects; the partition is re-read from the committed offset, following the claims");
                    Stats::add(&stats.claims_refused, 1);
                    for (upload, tail) in files {
                        budget.release(tail.len());
                        drop(upload); // a multipart upload aborts
                    }
                    lost.store(true, Ordering::Release);
                    reread.lock().expect("reread lock").push(Reread { tp: tp.clone(), epoch, from: None });
                    return Ok(false);
                }
                crash_point("crash-after-claim", &tp, start, end);
                let files = if partial && outcome == Outcome::Matched {
                    only_missing(&store, &budget, files).await?
                } else {
                    files
                };
                // At most `upload_concurrency` objects are completed at once, daemon-wide.
                let mut uploads = futures::stream::iter(files.into_iter().map(|(upload, tail)| {
                    let (rt, store, budget, slots) = (&rt, &store, &budget, &slots);
                    let tp = &tp;
                    async move {
                        let _slot = slots.acquire().await.expect("upload slots");
                        if upload.parts() > 0 {
                            crash_point("crash-mid-multipart", tp, start, end);
                        }
                        upload.finish(rt, store, budget, tail).await
                    }
                }))
                .buffer_unordered(UPLOADS_PER_SEGMENT);
                while let Some(done) = uploads.next().await {
                    match done {
                        Ok(r) => r?,
                        Err(e) => {
                            return Err(WriteError::Task { tp: tp.clone(), start, end, message: e.to_string() });
                        }
                    }
                }
                for d in deliveries {
                    match d.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => return Err(WriteError::DeadLetter { tp: tp.clone(), message: e.to_string() }),
                        Err(_) => return Err(WriteError::DeadLetter { tp: tp.clone(), message: "the producer dropped the delivery".into() }),
                    }
                }
                catalog.ensure(&partitions).await?;
                crash_point("crash-before-commit", &tp, start, end);
                if let Some(t) = ticket {
                    ledger.lock().expect("ledger lock").done(&t);
                }
                Ok(true)
            }
            .await;
            match result {
                Ok(false) => {}
                Ok(true) => {
                    Stats::add(&stats.records_written, records);
                    Stats::add(&stats.files_written, files_n);
                    Stats::add(&stats.bytes_written, bytes);
                    Stats::add(&stats.segments_committed, 1);
                    tracing::debug!(%tp, start, end, files = files_n, records, reason = reason.as_str(), "segment uploaded");
                }
                Err(e) => fatal.set(e.into()),
            }
        });
        self.in_flight.push(task);
    }

    /// Whether sealed segments wait for the gate (and may still complete: behind a refused
    /// claim they never will, and a flush need not wait for them).
    pub fn queued(&self) -> bool {
        !self.sealed.is_empty() && !self.lost.load(Ordering::Acquire)
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

/// Finishes an open file: its last bytes (charged to the budget until the store has them, the
/// file's own charge returned) and what the catalog and webhook are told about it.
fn close(
    ctx: &WriterCtx,
    f: OpenFile,
    held: &mut usize,
) -> Result<(ObjectUpload, Vec<u8>, FileFacts), WriteError> {
    let key = f.upload.key().to_string();
    let written_before = f.sent;
    let tail = f.encoder.finish().map_err(|source| WriteError::Encode {
        key: key.clone(),
        source,
    })?;
    ctx.budget.charge(tail.len());
    ctx.budget.release(f.charged);
    *held = held.saturating_sub(f.charged);
    let facts = FileFacts {
        key,
        records: f.records,
        bytes: written_before + tail.len() as u64,
        min_event_micros: f.min_event,
        max_event_micros: f.max_event,
    };
    Ok((f.upload, tail, facts))
}

/// Produces dead letters to a Kafka topic: the original key, value and headers, plus headers
/// `lakesink.reason`, `lakesink.error`, `lakesink.table`, `lakesink.topic`,
/// `lakesink.partition`, `lakesink.offset` and `lakesink.timestamp` (the Kafka timestamp, ms).
pub struct DeadLetterProducer {
    pub producer: FutureProducer,
    pub topic: String,
}

impl DeadLetterProducer {
    fn send(
        &self,
        table: &TablePlan,
        tp: &Tp,
        rec: &RecordIn<'_>,
        error: &RouteError,
    ) -> Result<DeliveryFuture, WriteError> {
        let mut headers = OwnedHeaders::new();
        for (name, value) in rec
            .headers
            .map(crate::worker::decode_headers)
            .unwrap_or_default()
        {
            headers = headers.insert(Header {
                key: &name,
                value: value.as_deref(),
            });
        }
        let (partition, offset) = (tp.partition.to_string(), rec.offset.to_string());
        let timestamp = rec.kafka_millis.map(|m| m.to_string());
        let error_text = error.to_string();
        let ours: [(&str, Option<&str>); 7] = [
            ("lakesink.reason", Some(error.reason())),
            ("lakesink.error", Some(&error_text)),
            ("lakesink.table", Some(&table.name)),
            ("lakesink.topic", Some(&tp.topic)),
            ("lakesink.partition", Some(&partition)),
            ("lakesink.offset", Some(&offset)),
            ("lakesink.timestamp", timestamp.as_deref()),
        ];
        for (key, value) in ours {
            headers = headers.insert(Header {
                key,
                value: value.map(str::as_bytes),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(v) = rec.payload {
            record = record.payload(v);
        }
        if let Some(k) = rec.key {
            record = record.key(k);
        }
        if let Some(ts) = rec.kafka_millis.filter(|m| *m >= 0) {
            record = record.timestamp(ts);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((e, _)) => {
                    return Err(WriteError::DeadLetter {
                        tp: tp.clone(),
                        message: e.to_string(),
                    })
                }
            }
        }
    }
}

/// The parts of a writer that dead-lettering touches.
struct DeadLetterFiles<'a> {
    naming: Naming<'a>,
    files: &'a mut HashMap<String, OpenFile>,
    deliveries: &'a mut Vec<DeliveryFuture>,
    held: &'a mut usize,
    deadline: &'a mut Deadline,
    tp: &'a Tp,
}

/// A bad record: to the dead-letter destination if the table's policy for its kind of problem
/// says so (`on_missing_timestamp` for event times, `on_bad_record` for the rest), else an
/// error naming it.
fn bad_record(
    w: DeadLetterFiles<'_>,
    ctx: &WriterCtx,
    table: &TablePlan,
    rec: &RecordIn<'_>,
    source: RouteError,
    now: Instant,
) -> Result<Option<CutReason>, WriteError> {
    let to_dead_letter = if source.is_timestamp_problem() {
        table.on_missing_timestamp == MissingTimestamp::DeadLetter
    } else {
        table.on_bad_record == BadRecord::DeadLetter
    };
    if !to_dead_letter {
        return Err(WriteError::BadRecord {
            table: table.name.clone(),
            tp: w.tp.clone(),
            offset: rec.offset,
            source,
        });
    }
    dead_letter(w, ctx, table, rec, &source, now)
}

/// Writes a bad record's envelope to the table's dead-letter file of this segment. The
/// envelope travels with the segment, so its offset is committed only once it is stored.
fn dead_letter(
    w: DeadLetterFiles<'_>,
    ctx: &WriterCtx,
    table: &TablePlan,
    rec: &RecordIn<'_>,
    error: &RouteError,
    now: Instant,
) -> Result<Option<CutReason>, WriteError> {
    let kafka_time = rec
        .kafka_millis
        .filter(|m| *m >= 0)
        .and_then(chrono::DateTime::from_timestamp_millis);
    let date = kafka_time.map_or_else(
        || "unknown".to_string(),
        |t| t.format("%Y-%m-%d").to_string(),
    );
    let count = ctx.stats.dead_letter(&table.name, error.reason());
    let destination = match &ctx.dead_letter_producer {
        Some(p) => p.topic.as_str(),
        None => ctx.dead_letter_prefix.as_str(),
    };
    if count == 1 {
        tracing::warn!(table = %table.name, tp = %w.tp, offset = rec.offset, reason = error.reason(), error = %error, destination, "bad record dead-lettered (first of this table and reason; later ones are logged at debug)");
    } else {
        tracing::debug!(table = %table.name, tp = %w.tp, offset = rec.offset, reason = error.reason(), error = %error, destination, "bad record dead-lettered");
    }
    if let Some(p) = &ctx.dead_letter_producer {
        w.deliveries.push(p.send(table, w.tp, rec, error)?);
        return Ok(None);
    }
    let headers = rec.headers.map(|h| {
        crate::worker::decode_headers(h)
            .into_iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value_base64": value.as_deref().map(base64)}))
            .collect::<Vec<_>>()
    });
    let envelope = serde_json::json!({
        "table": table.name,
        "topic": &*w.tp.topic,
        "partition": w.tp.partition,
        "offset": rec.offset,
        "kafka_timestamp": kafka_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "reason": error.reason(),
        "error": error.to_string(),
        "value_bytes": rec.payload.map(<[u8]>::len),
        "value_base64": rec.payload.map(base64),
        "key_base64": rec.key.map(base64),
        "headers": headers,
    });
    let line = serde_json::to_vec(&envelope).expect("JSON");
    let path = format!("{}/date={date}", table.name);
    if !w.files.contains_key(&path) {
        let dir = format!("{}/{path}", ctx.dead_letter_prefix);
        let f = open_file(
            ctx,
            table,
            w.tp,
            &dir,
            rec.offset,
            w.naming,
            Box::new(GzipNdjson::new(6)),
        )?;
        w.deadline.file_opened(now, table.rotate.max_age);
        w.files.insert(path.clone(), f);
    }
    let f = w.files.get_mut(&path).expect("dead-letter file");
    append(ctx, table, f, &line, w.held)
}

/// A record of a registry table as the JSON the pipeline reads, with its schema id: a
/// Confluent-framed JSON Schema record without its header, an Avro one decoded into `json`;
/// a plain JSON record as it is, under the subject's latest id. The inner error is a bad
/// record (unknown id, undecodable data); the outer one stops the daemon (registry
/// unreachable for too long, a refused schema).
#[allow(clippy::type_complexity)]
fn unwrap_wire<'a>(
    ctx: &WriterCtx,
    table: &TablePlan,
    payload: Option<&'a [u8]>,
    json: &'a mut String,
) -> Result<Result<(Option<&'a [u8]>, Option<u32>), RouteError>, WriteError> {
    use lakesink_schema_registry::registry::RegistryError;
    let Some(reg) = &table.registry else {
        return Ok(Ok((payload, None)));
    };
    let Some((id, body)) = payload.and_then(lakesink_schema_registry::wire::split) else {
        return Ok(Ok((payload, reg.latest_id())));
    };
    let ws = match reg.writer_schema(&ctx.rt, id) {
        Ok(ws) => ws,
        Err(e @ RegistryError::NotFound { .. }) => {
            return Ok(Err(RouteError::Wire(format!("schema id {id}: {e}"))))
        }
        Err(source) => {
            return Err(WriteError::Registry {
                table: table.name.clone(),
                source,
            })
        }
    };
    match &ws.avro {
        Some(d) => {
            json.clear();
            match d.to_json(body, json) {
                Ok(()) => Ok(Ok((Some(json.as_bytes()), Some(id)))),
                Err(e) => Ok(Err(RouteError::Wire(format!(
                    "Avro record of schema id {id}: {e}"
                )))),
            }
        }
        None => Ok(Ok((Some(body), Some(id)))),
    }
}

/// Memory of an open file besides its encoder: key, upload handle, map entry and allocator
/// slack (an estimate).
const FILE_OVERHEAD: usize = 1024;

/// Objects of one segment completed concurrently (all segments together are bounded by
/// `WriterCtx::upload_slots`).
const UPLOADS_PER_SEGMENT: usize = 16;

/// How a writer names its files: its generation, and the keys of the claimed segment it
/// replays (see [`open_file`]).
#[derive(Clone, Copy)]
struct Naming<'a> {
    generation: u32,
    claimed: &'a HashMap<String, String>,
}

impl Naming<'_> {
    /// The suffix of a new file's name before its extension: the generation (`.g1`) and, on a
    /// store that does not fence writers, this writer's token (`.u1a2b3c4d`).
    fn suffix(&self, ctx: &WriterCtx) -> String {
        let mut s = String::new();
        if self.generation > 0 {
            s.push_str(&format!(".g{}", self.generation));
        }
        if ctx.claims.unfenced() {
            s.push_str(".u");
            s.push_str(crate::claim::writer_token());
        }
        s
    }
}

/// Bytes left for a partition path in an object key of `table` fed by `tp`: [`MAX_KEY_BYTES`]
/// less the store prefix, the table's directory and the longest file name the partition's
/// files get (`{topic}+{partition}+{20 digits}` with a generation suffix and an extension).
fn path_room(root: &str, table: &str, tp: &Tp) -> usize {
    let mut topic = String::new();
    escape_partition_value(&tp.topic, &mut topic);
    let prefix = if root.is_empty() { 0 } else { root.len() + 1 };
    let suffix = ".g4294967295".len() + ".u12345678".len();
    let file = topic.len() + 1 + 11 + 1 + 20 + suffix + ".parquet".len();
    MAX_KEY_BYTES.saturating_sub(prefix + table.len() + 1 + 1 + file)
}

/// Creates the file for a new partition path; its key carries the offset of its first record.
///
/// `dir` is the object's directory below the store root: `{table}/{partition path}`, or
/// `{dead-letter prefix}/{table}/date=…`.
fn open_file(
    ctx: &WriterCtx,
    table: &TablePlan,
    tp: &Tp,
    dir: &str,
    offset: i64,
    naming: Naming<'_>,
    encoder: Box<dyn Encoder>,
) -> Result<OpenFile, WriteError> {
    let extension = if table.parquet.is_some() && !dir.starts_with(&ctx.dead_letter_prefix) {
        "parquet"
    } else {
        "json.gz"
    };
    let mut name = String::with_capacity(64);
    escape_partition_value(&tp.topic, &mut name);
    name.push('+');
    name.push_str(&tp.partition.to_string());
    name.push('+');
    let dir = format!(
        "{}{}{dir}",
        ctx.root,
        if ctx.root.is_empty() { "" } else { "/" }
    );
    // A replayed segment's file keeps the key its claim lists for this directory (its first
    // record may be gone from Kafka); a new one is named by its first offset.
    let claimed = naming.claimed.get(&dir).filter(|k| {
        k.rsplit_once('/').is_some_and(|(_, file)| {
            file.starts_with(&name) && file.ends_with(&format!(".{extension}"))
        })
    });
    let key = match claimed {
        Some(k) => k.clone(),
        None => format!("{dir}/{name}{offset:020}{}.{extension}", naming.suffix(ctx)),
    };
    let parsed = Path::parse(&key).map_err(|e| WriteError::Key {
        table: table.name.clone(),
        key: key.clone(),
        message: e.to_string(),
    })?;
    Ok(OpenFile {
        encoder,
        upload: ObjectUpload::new(parsed),
        records: 0,
        sent: 0,
        unsettled: Vec::new(),
        unsettled_bytes: Vec::new(),
        charged: 0,
        min_event: i64::MAX,
        max_event: i64::MIN,
    })
}

/// Test hook for crash tests: `LAKESINK_FAILPOINT` lists `name:P` pairs (comma-separated),
/// and at the failpoint `name` the process kills itself (SIGKILL, no cleanup) with probability
/// `P`. The points, in a segment's life:
///
/// - `crash-after-claim`: the claim is written, no object of the segment is completed yet;
/// - `crash-mid-multipart`: a file's multipart upload has parts, and is not completed;
/// - `crash-before-commit`: every file is uploaded and registered, the ledger has not heard:
///   objects in the store whose offsets are not committed.
fn crash_point(name: &str, tp: &Tp, start: i64, end: i64) {
    static POINTS: std::sync::OnceLock<Vec<(String, f64)>> = std::sync::OnceLock::new();
    let points = POINTS.get_or_init(|| {
        std::env::var("LAKESINK_FAILPOINT")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| {
                let (n, p) = p.trim().split_once(':')?;
                Some((n.to_string(), p.parse().ok()?))
            })
            .collect()
    });
    let Some(&(_, p)) = points.iter().find(|(n, _)| n == name) else {
        return;
    };
    if rand::random::<f64>() < p {
        tracing::error!(%tp, start, end, "failpoint {name}: killing the process");
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
    recharge(ctx, f, held);
    Ok(file_full(&table.rotate, f.records, f.encoder.written()))
}

/// Whether a file holds enough unsettled rows to settle them before its cut.
fn settle_due(f: &OpenFile) -> bool {
    f.unsettled.len() >= SETTLE_ROWS || f.encoder.unsettled_bytes() >= SETTLE_BYTES
}

/// Charges the budget for what a file's encoder holds now and ships a part when one is ready.
fn recharge(ctx: &WriterCtx, f: &mut OpenFile, held: &mut usize) {
    let now = FILE_OVERHEAD
        + f.encoder.buffered()
        + f.encoder.overhead()
        + f.unsettled.capacity() * std::mem::size_of::<Unsettled>()
        + f.unsettled_bytes.capacity();
    if now > f.charged {
        ctx.budget.charge(now - f.charged);
        *held += now - f.charged;
    } else {
        ctx.budget.release(f.charged - now);
        *held -= f.charged - now;
    }
    f.charged = now;
    if let Some(part) = f.encoder.take_ready(ctx.part_size) {
        // The part's bytes stay charged until the store has them; the upload credits them.
        *held -= part.len();
        f.charged -= part.len();
        f.sent += part.len() as u64;
        f.upload.send_part(&ctx.rt, &ctx.store, &ctx.budget, part);
    }
}

impl Drop for PartitionWriter {
    fn drop(&mut self) {
        // Files still open are abandoned: their multipart uploads abort when their channel
        // closes. Return what they held to the budget.
        let mut held = 0;
        for files in &self.files {
            for f in files.values() {
                held += f.charged;
            }
        }
        // Sealed segments never completed: their tails were charged at the cut.
        held += self.sealed.iter().map(Sealed::held).sum::<usize>();
        if held > 0 {
            tracing::debug!(tp = %self.tp, held, "abandoning open files");
        }
        self.budget.release(held);
    }
}

/// Standard base64 with padding (RFC 4648), for dead-letter envelopes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::{NoCatalog, Registrar};
    use crate::config::Plan;
    use crate::error::Fatal;
    use std::time::Duration;

    fn ctx(rt: &tokio::runtime::Runtime) -> WriterCtx {
        ctx_on(rt, Arc::new(object_store::memory::InMemory::new()))
    }

    /// A writer context on `store` (two contexts on one store: two members of a group).
    fn ctx_on(rt: &tokio::runtime::Runtime, store: Arc<dyn ObjectStore>) -> WriterCtx {
        ctx_with(
            rt,
            store,
            r#"
[[tables]]
name = "t"
topics = ["t"]
timestamp = { field = "ts" }
max_future_skew = "1000d"
[tables.rotate]
max_records = 3
"#,
        )
    }

    /// A writer context with these `[[tables]]`.
    pub(crate) fn ctx_with(
        rt: &tokio::runtime::Runtime,
        store: Arc<dyn ObjectStore>,
        tables: &str,
    ) -> WriterCtx {
        let plan = Plan::with_tables(tables);
        WriterCtx {
            tables: Arc::new(plan.tables),
            store: store.clone(),
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
            workers: 1,
            stats: Arc::new(Stats::default()),
            fatal: Arc::new(Fatal::default()),
            part_size: 5 << 20,
            dead_letter_prefix: "_errors".into(),
            dead_letter_producer: None,
            upload_slots: Arc::new(tokio::sync::Semaphore::new(8)),
            claims: Arc::new(Claims::new(store, "")),
            reread: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Keys of the data and dead-letter objects (not the claims), sorted.
    fn data_keys(ctx: &WriterCtx) -> Vec<String> {
        ctx.rt.block_on(async {
            use futures::TryStreamExt;
            let list: Vec<_> = ctx.store.list(None).try_collect().await.unwrap();
            let mut keys: Vec<String> = list
                .iter()
                .map(|m| m.location.to_string())
                .filter(|k| !k.starts_with("_lakesink/"))
                .collect();
            keys.sort();
            keys
        })
    }

    /// The text of a gzip object.
    fn gunzipped(ctx: &WriterCtx, key: &str) -> String {
        let bytes = ctx.rt.block_on(async {
            use object_store::ObjectStoreExt;
            let got = ctx.store.get(&Path::from(key)).await.unwrap();
            got.bytes().await.unwrap()
        });
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .unwrap();
        text
    }

    /// The offsets in every data object, from the `o` field of the test records.
    fn stored_offsets(ctx: &WriterCtx) -> Vec<i64> {
        let mut out = Vec::new();
        for key in data_keys(ctx) {
            for line in gunzipped(ctx, &key).lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                out.push(v["o"].as_i64().unwrap());
            }
        }
        out.sort_unstable();
        out
    }

    fn push_o(w: &mut PartitionWriter, ctx: &WriterCtx, offset: i64) {
        let payload = format!(r#"{{"ts":"2024-01-02T01:00:00Z","o":{offset}}}"#);
        let rec = RecordIn {
            offset,
            kafka_millis: Some(1_704_157_200_000 + offset),
            payload: Some(payload.as_bytes()),
            key: None,
            headers: None,
        };
        w.push(ctx, rec, Instant::now(), 0).unwrap();
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_replay_cuts_where_the_claims_of_uploaded_uncommitted_segments_say() {
        let rt = runtime();
        let far = Instant::now() + Duration::from_secs(60);
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let tp = Tp::new("t", 0);

        // The first owner cuts by the clock at 2, 4 and 7; [2, 4) and [4, 7) reach the store,
        // but Kafka's committed offset stays at 2 (the commit was lost with the process).
        let first = ctx_on(&rt, store.clone());
        let epoch = first.ledger.lock().unwrap().assign(&tp);
        let mut w = PartitionWriter::new(&first, tp.clone(), epoch, None).unwrap();
        for (o, cut_after) in [
            (0, false),
            (1, true),
            (2, false),
            (3, true),
            (4, false),
            (5, false),
            (6, true),
        ] {
            push_o(&mut w, &first, o);
            if cut_after {
                w.cut(&first, CutReason::Age).unwrap();
                assert!(w.wait(&first.rt, far));
                let safe = safe(&first);
                first.ledger.lock().unwrap().committed(&safe);
                w.launch(&first);
                assert!(w.wait(&first.rt, far));
            }
        }
        drop(w);
        let before = data_keys(&first);
        assert_eq!(stored_offsets(&first), (0..7).collect::<Vec<_>>());

        // The next owner replays from 2 with max_records = 3: alone it would cut at 5 and
        // store records 5 and 6 a second time under a new key. It follows the claims instead;
        // a shutdown in the middle of a claimed segment does not cut it.
        let next = ctx_on(&rt, store.clone());
        let epoch = next.ledger.lock().unwrap().assign(&tp);
        let mut w = PartitionWriter::new(&next, tp.clone(), epoch, None).unwrap();
        for o in 2..6 {
            push_o(&mut w, &next, o);
        }
        assert!(w.following());
        w.cut(&next, CutReason::Shutdown).unwrap();
        assert!(w.following(), "a claimed segment is cut only at its end");
        push_o(&mut w, &next, 6);
        assert!(
            !w.following(),
            "cut at the claim's end, without waiting for another record"
        );
        for o in 7..9 {
            push_o(&mut w, &next, o);
        }
        w.cut(&next, CutReason::Shutdown).unwrap();
        for _ in 0..3 {
            assert!(w.wait(&next.rt, far));
            let safe = safe(&next);
            next.ledger.lock().unwrap().committed(&safe);
            w.launch(&next);
        }
        assert!(w.wait(&next.rt, far));
        assert_eq!(safe(&next), vec![]);
        assert!(next.reread.lock().unwrap().is_empty());
        assert_eq!(
            stored_offsets(&next),
            (0..9).collect::<Vec<_>>(),
            "every record once"
        );
        let after = data_keys(&next);
        assert_eq!(after.len(), before.len() + 1, "{before:?} → {after:?}");
    }

    #[test]
    fn a_writer_whose_claim_is_refused_completes_nothing_abandons_what_it_sealed_behind_and_asks_for_a_reread(
    ) {
        let rt = runtime();
        let far = Instant::now() + Duration::from_secs(60);
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let tp = Tp::new("t", 0);
        let a = ctx_on(&rt, store.clone());
        let b = ctx_on(&rt, store.clone());
        let epoch_a = a.ledger.lock().unwrap().assign(&tp);
        let epoch_b = b.ledger.lock().unwrap().assign(&tp);
        let mut wa = PartitionWriter::new(&a, tp.clone(), epoch_a, None).unwrap();
        let mut wb = PartitionWriter::new(&b, tp.clone(), epoch_b, None).unwrap();
        // Both own the partition at once (a zombie, or a broker that does not fence). B
        // starts first and finds no claim…
        push_o(&mut wb, &b, 0);
        // …then A cuts [0, 2) by its clock and claims it.
        push_o(&mut wa, &a, 0);
        push_o(&mut wa, &a, 1);
        wa.cut(&a, CutReason::Age).unwrap();
        assert!(wa.wait(&a.rt, far));
        assert_eq!(safe(&a), vec![(tp.clone(), 2)]);
        // B's clock cuts [0, 3): refused. Before hearing so, B cuts [3, 4), which waits behind
        // the gate for a commit of offset 3 that B will never make.
        push_o(&mut wb, &b, 1);
        push_o(&mut wb, &b, 2);
        wb.cut(&b, CutReason::Age).unwrap();
        push_o(&mut wb, &b, 3);
        wb.cut(&b, CutReason::Shutdown).unwrap();
        assert!(wb.wait(&b.rt, far));
        // None of its objects appears and nothing is committable; its partition is to be
        // re-read.
        assert_eq!(safe(&b), vec![]);
        assert_eq!(
            *b.reread.lock().unwrap(),
            vec![Reread {
                tp: tp.clone(),
                epoch: epoch_b,
                from: None
            }]
        );
        assert_eq!(stored_offsets(&a), vec![0, 1]);
        // A drain or revocation waits while segments are queued: this one never completes,
        // so the writer must not say it is waiting (a thawed zombie's drain spun to its
        // timeout on it).
        assert!(
            !wb.queued(),
            "a segment behind a refused claim counts as waiting"
        );
        wb.launch(&b);
        assert_eq!(
            b.budget.used(),
            0,
            "the refused segment's bytes, and those of the one behind it, are returned to the budget"
        );
        assert_eq!(safe(&b), vec![]);
        assert_eq!(stored_offsets(&a), vec![0, 1]);
    }

    /// Writes `offsets` as records of incarnation `inc` of the topic, cutting by the clock
    /// after each offset in `cuts`, and commits as it goes; returns the writer's ledger end.
    fn land(
        ctx: &WriterCtx,
        tp: &Tp,
        sought: Option<i64>,
        inc: i64,
        offsets: impl IntoIterator<Item = i64>,
        cuts: &[i64],
    ) -> PartitionWriter {
        let far = Instant::now() + Duration::from_secs(60);
        let epoch = ctx.ledger.lock().unwrap().assign(tp);
        let mut w = PartitionWriter::new(ctx, tp.clone(), epoch, sought).unwrap();
        for o in offsets {
            let payload = format!(r#"{{"ts":"2024-01-02T01:00:00Z","o":{o},"inc":{inc}}}"#);
            let rec = RecordIn {
                offset: o,
                kafka_millis: Some(1_704_157_200_000 + o + inc * 1_000_000),
                payload: Some(payload.as_bytes()),
                key: None,
                headers: None,
            };
            w.push(ctx, rec, Instant::now(), 0).unwrap();
            if cuts.contains(&o) {
                w.cut(ctx, CutReason::Age).unwrap();
            }
            for _ in 0..2 {
                assert!(w.wait(&ctx.rt, far));
                let safe = safe(ctx);
                ctx.ledger.lock().unwrap().committed(&safe);
                w.launch(ctx);
            }
        }
        w
    }

    /// Every stored record as (incarnation, offset), sorted.
    fn stored(ctx: &WriterCtx) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        for key in data_keys(ctx) {
            for line in gunzipped(ctx, &key).lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                out.push((v["inc"].as_i64().unwrap(), v["o"].as_i64().unwrap()));
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn a_writer_starting_inside_a_claimed_segment_has_it_read_again_from_its_start() {
        let rt = runtime();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let tp = Tp::new("t", 0);
        let first = ctx_on(&rt, store.clone());
        // [0, 2) and [2, 4) cut by the clock, [4, 7) by max_records = 3, [7, 9) at the end.
        let mut w = land(&first, &tp, None, 0, 0..9, &[1, 3, 8]);
        assert!(w.wait(&first.rt, Instant::now() + Duration::from_secs(60)));
        drop(w);
        let before = data_keys(&first);
        let all: Vec<(i64, i64)> = (0..9).map(|o| (0, o)).collect();
        assert_eq!(stored(&first), all);

        // The group's offsets are reset to 5, inside [4, 7). Cutting from 5 on would store
        // 5 and 6 a second time under a new key: the writer asks to read again from 4 instead,
        // and takes nothing meanwhile.
        let next = ctx_on(&rt, store.clone());
        let w = land(&next, &tp, None, 0, 5..9, &[]);
        let asked = next.reread.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![Reread {
                tp: tp.clone(),
                epoch: w.epoch(),
                from: Some(4)
            }]
        );
        assert_eq!(w.held(), 0, "no record taken");
        drop(w);

        // Read again from 4 (with a shutdown cut in the middle: a claimed segment is not cut
        // before its end), then to the end: the same objects, every record once.
        let again = ctx_on(&rt, store.clone());
        let mut w = land(&again, &tp, Some(4), 0, 4..9, &[5]);
        w.cut(&again, CutReason::Shutdown).unwrap();
        assert!(w.wait(&again.rt, Instant::now() + Duration::from_secs(60)));
        assert!(again.reread.lock().unwrap().is_empty());
        assert_eq!(data_keys(&again), before);
        assert_eq!(stored(&again), all);

        // Kafka no longer has 4 (retention) when the partition is read again from there: the
        // segment is replayed from 5 as the claim it is, and its stored object, which holds 4
        // too, is not overwritten with fewer records.
        let gone = ctx_on(&rt, store.clone());
        let mut w = land(&gone, &tp, Some(4), 0, 5..9, &[]);
        w.cut(&gone, CutReason::Shutdown).unwrap();
        assert!(w.wait(&gone.rt, Instant::now() + Duration::from_secs(60)));
        assert!(gone.reread.lock().unwrap().is_empty());
        assert_eq!(safe(&gone), vec![]);
        assert_eq!(
            gone.ledger
                .lock()
                .unwrap()
                .safe_offsets(std::slice::from_ref(&tp)),
            vec![(tp.clone(), 9)]
        );
        assert_eq!(data_keys(&gone), before);
        assert_eq!(stored(&gone), all);
    }

    #[test]
    fn a_replayed_claim_ends_at_its_claimed_end_when_its_last_offsets_are_gone() {
        let rt = runtime();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let tp = Tp::new("t", 0);
        let first = ctx_on(&rt, store.clone());
        // [0, 2) cut by the clock, [2, 5) by max_records = 3.
        let w = land(&first, &tp, None, 0, 0..5, &[1]);
        assert_eq!(safe(&first), vec![]);
        drop(w);
        let before = data_keys(&first);
        // Compaction removed 3 and 4 and the commit of 5 was lost: the replay from 2 sees 2,
        // then 6. It seals [2, 5) as claimed (a shorter segment would conflict with the claim
        // and be re-read forever), keeps the stored object that holds 3 and 4, and commits
        // past the gap.
        let next = ctx_on(&rt, store.clone());
        let mut w = land(&next, &tp, None, 0, [2, 6], &[]);
        w.cut(&next, CutReason::Shutdown).unwrap();
        assert!(w.wait(&next.rt, Instant::now() + Duration::from_secs(60)));
        assert!(next.reread.lock().unwrap().is_empty(), "no claim conflict");
        assert_eq!(safe(&next), vec![(tp.clone(), 7)]);
        let after = data_keys(&next);
        assert_eq!(after.len(), before.len() + 1, "{before:?} → {after:?}");
        let want: Vec<(i64, i64)> = [0, 1, 2, 3, 4, 6].iter().map(|o| (0, *o)).collect();
        assert_eq!(stored(&next), want);
    }

    #[test]
    fn another_incarnation_of_the_topic_lands_beside_the_first_and_never_over_it() {
        let rt = runtime();
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let tp = Tp::new("t", 0);
        let first = ctx_on(&rt, store.clone());
        let mut w = land(&first, &tp, None, 0, 0..8, &[1]);
        w.cut(&first, CutReason::Shutdown).unwrap();
        assert!(w.wait(&first.rt, Instant::now() + Duration::from_secs(60)));
        drop(w);
        let before = data_keys(&first);
        let old: Vec<Vec<u8>> = before
            .iter()
            .map(|k| gunzipped(&first, k).into_bytes())
            .collect();

        // The topic is deleted and created again: offsets start at 0 again, with other
        // records, cut elsewhere.
        let next = ctx_on(&rt, store.clone());
        let mut w = land(&next, &tp, None, 1, 0..6, &[2]);
        w.cut(&next, CutReason::Shutdown).unwrap();
        assert!(w.wait(&next.rt, Instant::now() + Duration::from_secs(60)));
        let mut want: Vec<(i64, i64)> = (0..8).map(|o| (0, o)).collect();
        want.extend((0..6).map(|o| (1, o)));
        assert_eq!(stored(&next), want, "both incarnations, each record once");
        for (k, bytes) in before.iter().zip(&old) {
            assert_eq!(&gunzipped(&next, k).into_bytes(), bytes, "{k} unchanged");
        }
        let after = data_keys(&next);
        assert!(
            after
                .iter()
                .filter(|k| !before.contains(k))
                .all(|k| k.ends_with(".g1.json.gz")),
            "{after:?}"
        );

        // A restart of the new incarnation follows its own generation's claims.
        drop(w);
        let again = ctx_on(&rt, store.clone());
        let mut w = land(&again, &tp, None, 1, 0..6, &[]);
        w.cut(&again, CutReason::Shutdown).unwrap();
        assert!(w.wait(&again.rt, Instant::now() + Duration::from_secs(60)));
        assert!(again.reread.lock().unwrap().is_empty());
        assert_eq!(stored(&again), want);
        assert_eq!(data_keys(&again), after);
    }

    /// A store that takes a create-only write for a plain one, as some S3-compatible stores and
    /// proxies that drop `If-None-Match` do.
    #[derive(Debug, Default)]
    struct IgnoresCreateOnly(object_store::memory::InMemory);

    impl std::fmt::Display for IgnoresCreateOnly {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "IgnoresCreateOnly")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for IgnoresCreateOnly {
        async fn put_opts(
            &self,
            location: &Path,
            payload: object_store::PutPayload,
            mut opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            opts.mode = object_store::PutMode::Overwrite;
            self.0.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.0.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    #[test]
    fn on_a_store_that_does_not_fence_a_zombie_yields_to_an_earlier_claim_and_never_replaces_a_file(
    ) {
        let rt = runtime();
        let far = Instant::now() + Duration::from_secs(60);
        let store: Arc<dyn ObjectStore> = Arc::new(IgnoresCreateOnly::default());
        assert_eq!(
            rt.block_on(crate::claim::probe_create_only(&store, ""))
                .unwrap(),
            crate::claim::CreateOnly::Ignored
        );
        let tp = Tp::new("t", 0);
        let (a, b) = (ctx_on(&rt, store.clone()), ctx_on(&rt, store.clone()));
        a.claims.set_unfenced();
        b.claims.set_unfenced();
        let epoch_a = a.ledger.lock().unwrap().assign(&tp);
        let epoch_b = b.ledger.lock().unwrap().assign(&tp);
        let mut wa = PartitionWriter::new(&a, tp.clone(), epoch_a, None).unwrap();
        let mut wb = PartitionWriter::new(&b, tp.clone(), epoch_b, None).unwrap();
        // B (the zombie) starts, then A cuts [0, 2) and claims it.
        push_o(&mut wb, &b, 0);
        push_o(&mut wa, &a, 0);
        push_o(&mut wa, &a, 1);
        wa.cut(&a, CutReason::Age).unwrap();
        assert!(wa.wait(&a.rt, far));
        let first = data_keys(&a);
        assert!(
            first
                .iter()
                .all(|k| k.contains(&format!(".u{}", crate::claim::writer_token()))),
            "files not replaying a claim carry their writer's token: {first:?}"
        );
        // B's clock cuts [0, 3): the claim it finds refuses it, though the store would not.
        push_o(&mut wb, &b, 1);
        push_o(&mut wb, &b, 2);
        wb.cut(&b, CutReason::Age).unwrap();
        assert!(wb.wait(&b.rt, far));
        assert_eq!(
            b.stats
                .claims_refused
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(b.reread.lock().unwrap().len(), 1);
        assert_eq!(data_keys(&b), first, "nothing of B's completed");
        assert_eq!(stored_offsets(&a), vec![0, 1]);
    }

    fn push(w: &mut PartitionWriter, ctx: &WriterCtx, offset: i64) {
        let payload = br#"{"ts":"2024-01-02T01:00:00Z"}"#;
        let rec = RecordIn {
            offset,
            kafka_millis: Some(1_704_157_200_000),
            payload: Some(payload),
            key: None,
            headers: None,
        };
        w.push(ctx, rec, Instant::now(), 0).unwrap();
    }

    fn safe(ctx: &WriterCtx) -> Vec<(Tp, i64)> {
        ctx.ledger.lock().unwrap().to_commit()
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn parquet_rows_settle_across_batches_and_a_refused_one_keeps_its_key_headers_and_value() {
        let rt = runtime();
        let ctx = ctx_with(
            &rt,
            Arc::new(object_store::memory::InMemory::new()),
            r#"
[[tables]]
name = "t"
topics = ["t"]
format = "parquet"
schema = { file = "cloudtrail.avsc" }
timestamp = { field = "eventTime" }
max_future_skew = "1000d"
on_bad_record = "dlq"
"#,
        );
        let tp = Tp::new("t", 0);
        let epoch = ctx.ledger.lock().unwrap().assign(&tp);
        let mut w = PartitionWriter::new(&ctx, tp.clone(), epoch, None).unwrap();
        // Demo events; the refused one has a string where the schema has a boolean.
        let row = |o: i64, bad: bool| {
            let mut text = String::new();
            crate::demo::generator::event(&Default::default(), o as u64, 9, &mut text);
            let at = text.find(r#""readOnly":"#).unwrap() + 11;
            let end = at + text[at..].find(',').unwrap();
            text.replace_range(at..end, if bad { r#""yes""# } else { "true" });
            text
        };
        let mut headers = Vec::new();
        crate::worker::encode_headers([("h", Some(&b"v"[..]))].into_iter(), &mut headers);
        // Three consumer batches of three; offset 4 does not fit the schema (a string where a
        // boolean goes).
        for batch in 0..3i64 {
            let texts: Vec<String> = (batch * 3..batch * 3 + 3).map(|o| row(o, o == 4)).collect();
            let recs: Vec<RecordIn<'_>> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| RecordIn {
                    offset: batch * 3 + i as i64,
                    kafka_millis: Some(1_704_157_200_000),
                    payload: Some(t.as_bytes()),
                    key: Some(b"k4".as_slice()).filter(|_| batch * 3 + i as i64 == 4),
                    headers: Some(headers.as_slice()).filter(|_| batch * 3 + i as i64 == 4),
                })
                .collect();
            w.push_batch(&ctx, &recs, Instant::now(), 0).unwrap();
            // Rows wait for more: nothing was checked yet, no dead letter written.
            let pending = w.files[0]
                .values()
                .map(|f| f.unsettled.len())
                .sum::<usize>();
            assert_eq!(pending, 3 * (batch as usize + 1));
        }
        w.cut(&ctx, CutReason::Shutdown).unwrap();
        assert!(w.wait(&ctx.rt, Instant::now() + Duration::from_secs(60)));
        assert_eq!(safe(&ctx), vec![(tp.clone(), 9)]);
        let keys = data_keys(&ctx);
        assert!(keys[0].starts_with("_errors/"), "{keys:?}");
        let envelopes = gunzipped(&ctx, &keys[0]);
        let lines: Vec<serde_json::Value> = envelopes
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{envelopes}");
        assert_eq!(lines[0]["offset"], 4);
        assert_eq!(lines[0]["value_base64"], base64(row(4, true).as_bytes()));
        assert_eq!(lines[0]["key_base64"], base64(b"k4"));
        assert_eq!(
            lines[0]["headers"],
            serde_json::json!([{"name": "h", "value_base64": base64(b"v")}])
        );
        assert!(lines[0].to_string().contains("readOnly"), "{}", lines[0]);
        // The other eight are rows of the Parquet files.
        use parquet::file::reader::FileReader;
        let rows: i64 = keys[1..]
            .iter()
            .map(|k| {
                assert!(k.ends_with(".parquet"), "{k}");
                let bytes = ctx.rt.block_on(async {
                    use object_store::ObjectStoreExt;
                    let got = ctx.store.get(&Path::from(k.as_str())).await.unwrap();
                    got.bytes().await.unwrap()
                });
                let reader = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
                reader.metadata().file_metadata().num_rows()
            })
            .sum();
        assert_eq!(rows, 8);
    }

    #[test]
    fn bad_records_go_to_the_dead_letter_prefix_within_the_segment() {
        let rt = runtime();
        let mut ctx = ctx(&rt);
        let mut tables = (*ctx.tables).clone();
        tables[0].on_bad_record = BadRecord::DeadLetter;
        tables[0].on_missing_timestamp = MissingTimestamp::DeadLetter;
        ctx.tables = Arc::new(tables);
        let tp = Tp::new("t", 0);
        let epoch = ctx.ledger.lock().unwrap().assign(&tp);
        let mut w = PartitionWriter::new(&ctx, tp.clone(), epoch, None).unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let recs: [Option<&[u8]>; 4] = [
            Some(br#"{"ts":"2024-01-02T01:00:00Z"}"#),
            Some(b"{not json"),
            None,
            Some(br#"{"no_ts":1}"#),
        ];
        for (o, payload) in recs.into_iter().enumerate() {
            let rec = RecordIn {
                offset: o as i64,
                kafka_millis: Some(1_704_157_200_000),
                payload,
                key: None,
                headers: None,
            };
            w.push(&ctx, rec, Instant::now(), 0).unwrap();
        }
        w.cut(&ctx, CutReason::Shutdown).unwrap();
        assert!(w.wait(&ctx.rt, far));
        // Every offset, bad ones included, is committable: the envelopes are stored.
        assert_eq!(safe(&ctx), vec![(tp.clone(), 4)]);
        let keys = data_keys(&ctx);
        let envelopes = gunzipped(&ctx, &keys[0]);
        assert_eq!(
            keys,
            vec![
                "_errors/t/date=2024-01-02/t+0+00000000000000000001.json.gz".to_string(),
                "t/date=2024-01-02/hour=01/t+0+00000000000000000000.json.gz".to_string(),
            ]
        );
        let lines: Vec<serde_json::Value> = envelopes
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let reasons: Vec<&str> = lines
            .iter()
            .map(|l| l["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["invalid_json", "empty", "missing_timestamp"]);
        assert_eq!(lines[0]["offset"], 1);
        assert_eq!(lines[0]["topic"], "t");
        assert_eq!(lines[0]["value_base64"], base64(b"{not json"));
        assert_eq!(lines[0]["kafka_timestamp"], "2024-01-02T01:00:00.000Z");
        assert!(lines[1]["value_base64"].is_null());
        assert_eq!(
            ctx.stats
                .dead_letters
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    #[test]
    fn a_segment_is_completed_in_the_store_only_after_the_one_before_is_committed() {
        let rt = runtime();
        let ctx = ctx(&rt);
        let tp = Tp::new("t", 0);
        let epoch = ctx.ledger.lock().unwrap().assign(&tp);
        let mut w = PartitionWriter::new(&ctx, tp.clone(), epoch, None).unwrap();
        let far = Instant::now() + Duration::from_secs(60);
        let stored = |ctx: &WriterCtx| data_keys(ctx).len();

        // Cuts fall where the data puts them (max_records = 3): at 3, 6 and 9…
        for o in 0..9 {
            push(&mut w, &ctx, o);
        }
        assert!(w.wait(&ctx.rt, far));
        // …but only the first segment is in the store; the others wait, sealed.
        assert_eq!(stored(&ctx), 1);
        assert_eq!(safe(&ctx), vec![(tp.clone(), 3)]);
        assert!(w.queued());

        // Each commit lets the next one out, one at a time.
        ctx.ledger.lock().unwrap().committed(&[(tp.clone(), 3)]);
        w.launch(&ctx);
        w.launch(&ctx);
        assert!(w.wait(&ctx.rt, far));
        assert_eq!(
            stored(&ctx),
            2,
            "the gate lets one segment through per commit"
        );
        assert_eq!(safe(&ctx), vec![(tp.clone(), 6)]);

        // A cut by the clock or a shutdown is queued the same way.
        push(&mut w, &ctx, 9);
        w.cut(&ctx, CutReason::Shutdown).unwrap();
        ctx.ledger.lock().unwrap().committed(&[(tp.clone(), 6)]);
        w.launch(&ctx);
        assert!(w.wait(&ctx.rt, far));
        assert_eq!(safe(&ctx), vec![(tp.clone(), 9)]);
        ctx.ledger.lock().unwrap().committed(&[(tp.clone(), 9)]);
        w.launch(&ctx);
        assert!(w.wait(&ctx.rt, far));
        assert_eq!(safe(&ctx), vec![(tp.clone(), 10)]);
        assert!(!w.queued());
        assert_eq!(stored(&ctx), 4);
    }
}
