//! Partition writers: the open segment of one Kafka partition, its open files (one per table and
//! partition path), and the hand-over of a cut segment to upload → catalog → ledger.
//!
//! A writer lives on one worker thread and sees its partition's records in offset order, so every
//! decision it makes from the records (routing, cuts on count or bytes) is the same on a replay.

mod dead_letter;
mod files;
mod late;
mod parsed;
use late::compacted_place;
pub(crate) use late::late_after_seal;
mod replay;
mod segment;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_late;
#[cfg(test)]
mod tests_letters;
#[cfg(test)]
mod tests_parsed;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use object_store::ObjectStore;
use rdkafka::producer::DeliveryFuture;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::batch::RecordIn;
use crate::catalog::{CatalogError, NewPartition, Registrar};
use crate::claim::{ClaimError, Claims, Fingerprint};
use crate::commit::{CommitError, OffsetLedger, Tp};
use crate::config::{LateAfterSeal, TablePlan};
use crate::encode::{EncodeError, Encoder, GzipNdjson, ParquetEncoder, Rejected};
use crate::fatal::Fatal;
use crate::memory::Budget;
use crate::rotate::{CutReason, Deadline};
use crate::route::{RecordRef, RouteError, TableRouter};
use crate::stats::Stats;
use crate::upload::UploadError;

pub(crate) use dead_letter::DeadLetterProducer;
use dead_letter::{bad_record, DeadLetterFiles};
pub(crate) use files::path_room as path_room_for;
use files::{
    append, append_parsed, close, commit_parsed, open_file, path_room, recharge, settle_due,
    OpenFile, Unsettled,
};
use parsed::{Parsing, Row};
use replay::Replay;
use segment::{Completion, Owner, Sealed};
use wire::{route_parsed, unwrap_wire};

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
    #[error("table `{table}`: object key `{key}` is invalid: {source}")]
    Key {
        table: String,
        key: String,
        #[source]
        source: object_store::path::Error,
    },
    #[error("table `{table}`: {message}")]
    Schema { table: String, message: String },
    #[error("table `{table}`: {source}")]
    Registry {
        table: String,
        #[source]
        source: lakesink_schema_registry::registry::RegistryError,
    },
    #[error("{tp}: producing a dead letter failed: {source}")]
    DeadLetter {
        tp: Tp,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("{tp}: table `{table}` cannot route records: {source}")]
    Route {
        tp: Tp,
        table: String,
        #[source]
        source: crate::route::json::TooManyFields,
    },
    #[error("segment {tp} [{start}, {end}): upload task failed: {source}")]
    Task {
        tp: Tp,
        start: i64,
        end: i64,
        #[source]
        source: tokio::task::JoinError,
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
    /// The tables' watermarks, for `late_after_seal = "dlq"` (see [`crate::watermark`]).
    pub watermarks: Arc<crate::watermark::Current>,
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

/// The open segment of one Kafka partition.
pub(crate) struct PartitionWriter {
    tp: Tp,
    epoch: u64,
    /// Tables fed by this partition's topic: (index into ctx.tables, router).
    routers: Vec<(usize, TableRouter)>,
    /// Per slot, the table's `lakesink_timestamp_fallbacks_total` (found once, counted per
    /// record without a lookup).
    fallbacks: Vec<prometheus_client::metrics::counter::Counter>,
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
    /// Per router slot: where a Parquet table's direct path parses a record before its file
    /// is known (see [`parsed`]).
    parsing: Vec<Parsing>,
    /// Per router slot: the schema id of its open files (registry tables).
    schema_ids: Vec<Option<u32>>,
    /// Where the lake's claims say this partition's segments were cut, and how the writer
    /// follows them (see [`replay`]).
    replay: Replay,
    /// Fingerprint of the open segment's first record.
    first: Fingerprint,
    /// Per table with `late_after_seal = "dlq"`, its watermark when the open segment began
    /// (a replayed segment's, from its claim): its records for partitions that end at or
    /// before it are dead-lettered.
    late_before: std::collections::BTreeMap<String, i64>,
}

impl PartitionWriter {
    /// A writer for `tp` under `epoch`; `sought` is the offset the consumer sought to for a
    /// [`Reread`] from a claimed segment's start.
    pub(crate) fn new(
        ctx: &WriterCtx,
        tp: Tp,
        epoch: u64,
        sought: Option<i64>,
    ) -> Result<PartitionWriter, WriteError> {
        let mut routers = Vec::new();
        for (i, t) in ctx.tables.iter().enumerate() {
            if t.topics.iter().any(|x| **x == *tp.topic) {
                let mut router =
                    TableRouter::new(&t.route_rules()).map_err(|source| WriteError::Route {
                        tp: tp.clone(),
                        table: t.name.clone(),
                        source,
                    })?;
                router.limit_path(path_room(&ctx.root, &t.name, &tp));
                routers.push((i, router));
            }
        }
        let files = routers.iter().map(|_| HashMap::new()).collect();
        let fallbacks = routers
            .iter()
            .map(|(i, _)| {
                let table: Arc<str> = Arc::from(ctx.tables[*i].name.as_str());
                ctx.stats
                    .metrics
                    .timestamp_fallbacks
                    .get_or_create(&crate::metrics::labels([("table", &table)]))
                    .clone()
            })
            .collect();
        Ok(PartitionWriter {
            fallbacks,
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
            parsing: Vec::new(),
            schema_ids: routers.iter().map(|_| None).collect(),
            routers,
            replay: Replay::new(sought),
            first: Fingerprint::default(),
            late_before: std::collections::BTreeMap::new(),
        })
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn tp(&self) -> &Tp {
        &self.tp
    }

    /// Bytes held by the open files.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    pub(crate) fn deadline_expired(&self, now: Instant) -> bool {
        self.start.is_some() && self.deadline.expired(now)
    }

    /// Whether the open segment replays a claimed one (it can only be cut at the claim's end).
    pub(crate) fn following(&self) -> bool {
        self.replay.following()
    }

    /// Writes one record to every table its topic feeds; cuts the segment after it when a file
    /// is full. (The workers write whole batches: [`PartitionWriter::push_batch`].)
    #[cfg(test)]
    pub(crate) fn push(
        &mut self,
        ctx: &WriterCtx,
        rec: RecordIn<'_>,
        now: Instant,
        now_micros: i64,
    ) -> Result<(), WriteError> {
        self.push_batch(ctx, std::slice::from_ref(&rec), now, now_micros)
    }

    /// Keeps the listing of this partition's claims the consumer started with its first record.
    pub(crate) fn prefetched(&mut self, p: crate::claim::Prefetch) {
        self.replay.prefetched(p);
    }

    /// Writes consecutive records of the partition; cuts the segment after a record that fills
    /// a file. Rows that formats check in batches (Parquet) are settled when a file holds
    /// [`SETTLE_ROWS`](crate::encode::parquet::SETTLE_ROWS) of them (or
    /// [`SETTLE_BYTES`](crate::encode::parquet::SETTLE_BYTES)) and before every cut.
    pub(crate) fn push_batch(
        &mut self,
        ctx: &WriterCtx,
        recs: &[RecordIn<'_>],
        now: Instant,
        now_micros: i64,
    ) -> Result<(), WriteError> {
        for rec in recs {
            if self.replay.rewinding() {
                return Ok(()); // the consumer re-reads the partition from an earlier offset
            }
            if self.start.is_some() && self.replay.ends_before(rec.offset) {
                // The end of a claimed segment, or the start of the next one.
                self.cut(ctx, CutReason::Claim)?;
            }
            if !self.replay.following() && self.schema_changes(ctx, rec) {
                self.cut(ctx, CutReason::Schema)?;
            }
            if self.start.is_none() {
                let Some(begun) = self.replay.begin(ctx, &self.tp, self.epoch, rec)? else {
                    return Ok(()); // asked to read the partition again from an earlier offset
                };
                self.start = begun.start;
                self.first = begun.first;
                self.late_before = match begun.late_before {
                    Some(claimed) => claimed,
                    None => self
                        .routers
                        .iter()
                        .map(|(i, _)| &ctx.tables[*i])
                        .filter(|t| t.late_after_seal == LateAfterSeal::DeadLetter)
                        .filter_map(|t| Some((t.name.clone(), ctx.watermarks.get(&t.name)?)))
                        .collect(),
                };
            }
            let mut full = self.push_one(ctx, rec, now, now_micros)?;
            if self.settle_now {
                full = full.or(self.settle(ctx, now, true)?);
            }
            if self.replay.reached_end(self.next) {
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
    /// that hold [`crate::encode::parquet::SETTLE_ROWS`] or [`crate::encode::parquet::SETTLE_BYTES`]). A row the format refuses follows the table's
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
                        naming: self.replay.naming(),
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
            let unwrapped = unwrap_wire(ctx, table, router, rec.payload, json)?;
            let (payload, schema_id) = match &unwrapped {
                Ok(x) => (x.encode, x.schema_id),
                Err(_) => (rec.payload, None),
            };
            let r = RecordRef {
                topic: &self.tp.topic,
                partition: self.tp.partition,
                offset: rec.offset,
                kafka_millis: rec.kafka_millis,
                payload: unwrapped.as_ref().map_or(rec.payload, |x| x.route),
            };
            let late_before = self.late_before.get(&table.name).copied();
            // A Parquet table of one schema parses its JSON records once, as it routes them.
            let direct = match (&table.registry, &table.parquet) {
                (None, Some(plan)) => plan.json.as_deref(),
                _ => None,
            };
            if self.parsing.len() <= slot {
                self.parsing.resize_with(slot + 1, Parsing::default);
            }
            let parsing = &mut self.parsing[slot];
            let files = &mut self.files[slot];
            // Where the record's row is, if it was parsed; `at`, where it would be.
            let mut row = Row::None;
            let mut at = Row::None;
            let routed = unwrapped
                .and_then(|_| match direct {
                    Some(d) => {
                        let rows;
                        (rows, at) = parsing.target(files, d);
                        let (routed, parsed) =
                            route_parsed(router, &r, now_micros, &mut self.path, d, rows)?;
                        if parsed {
                            row = at;
                        }
                        Ok(routed)
                    }
                    None => router.route(&r, now_micros, &mut self.path),
                })
                .and_then(|routed| match late_before {
                    Some(w) if late_after_seal(table, routed.event_micros, w) => {
                        Err(RouteError::LateAfterSeal {
                            path: self.path.clone(),
                            watermark: crate::route::timestamp::micros_to_utc(w).to_rfc3339(),
                        })
                    }
                    _ => Ok(routed),
                });
            let routed = match routed {
                Ok(routed) => routed,
                Err(source) => {
                    // A row parsed for a record the router then refused is cut off.
                    parsing.undo(files, at);
                    let cut = bad_record(
                        DeadLetterFiles {
                            naming: self.replay.naming(),
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
                self.fallbacks[slot].inc();
            }
            let payload = payload.unwrap_or_default();
            if let Some(d) = direct {
                row = parsing.place(files, row, &self.path, d);
            }
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
                    let place = if self.replay.following() {
                        None // a replay keeps its claimed keys
                    } else {
                        compacted_place(ctx, table, &self.path, routed.event_micros)?
                    };
                    let naming = self.replay.naming();
                    let f = open_file(
                        ctx,
                        table,
                        &self.tp,
                        &dir,
                        place.as_deref(),
                        rec.offset,
                        naming,
                        encoder,
                    )?;
                    self.deadline.file_opened(now, table.rotate.max_age);
                    files.entry(self.path.clone()).or_insert(f)
                }
            };
            f.saw(routed.event_micros);
            let (cut, parsed) = match row {
                Row::InLast(_) => (commit_parsed(ctx, table, f, payload, &mut self.held)?, true),
                Row::Staged => {
                    append_parsed(ctx, table, f, parsing.staged(), payload, &mut self.held)?
                }
                Row::None => (append(ctx, table, f, payload, &mut self.held)?, false),
            };
            if parsed {
                parsing.went_to(&self.path);
            }
            if f.encoder.unsettled() == 1 {
                self.dirty.push((slot, self.path.clone()));
            }
            if parsed {
                // No refusal can come of a parsed row at the settle: nothing to keep for one.
                self.settle_now |= settle_due(f);
            } else if f.encoder.unsettled() > 0 {
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
    pub(crate) fn cut(&mut self, ctx: &WriterCtx, reason: CutReason) -> Result<(), WriteError> {
        let Some(start) = self.start else {
            return Ok(());
        };
        if let Some(end) = self.replay.holds(reason) {
            if matches!(reason, CutReason::Revoke | CutReason::Shutdown) {
                tracing::info!(tp = %self.tp, start, end, reached = self.next, reason = reason.as_str(), "not cutting a replay of a claimed segment before its end: its records stay uncommitted for the next reader");
            }
            return Ok(());
        }
        // Rows still unsettled are checked now: a refused one becomes a dead letter of this
        // segment (a dead-letter file that fills is cut with it).
        self.settle(ctx, Instant::now(), false)?;
        let (end, partial) = self.replay.end_segment(reason, self.next);
        self.start = None;
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
        let mut dead_letters = Vec::new();
        for (_, f) in self.errors.drain() {
            let (upload, tail, facts) = close(ctx, f, &mut self.held)?;
            tracing::debug!(key = %facts.key, records = facts.records, "dead-letter file closed");
            files.push((upload, tail));
            dead_letters.push(facts);
        }
        self.sealed.push_back(Sealed {
            start,
            end,
            first: self.first,
            late_before: std::mem::take(&mut self.late_before),
            generation: self.replay.generation(),
            partial,
            ticket,
            deliveries: std::mem::take(&mut self.deliveries),
            files,
            partitions,
            dead_letters,
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
    pub(crate) fn launch(&mut self, ctx: &WriterCtx) {
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
        let owner = Owner {
            tp: self.tp.clone(),
            epoch: self.epoch,
            lost: self.lost.clone(),
        };
        let daemon = Completion::of(ctx);
        let fatal = ctx.fatal.clone();
        let task = ctx.rt.spawn(async move {
            if let Err(e) = seg.complete(owner, daemon).await {
                fatal.set(e);
            }
        });
        self.in_flight.push(task);
    }

    /// Whether sealed segments wait for the gate (and may still complete: behind a refused
    /// claim they never will, and a flush need not wait for them).
    pub(crate) fn queued(&self) -> bool {
        !self.sealed.is_empty() && !self.lost.load(Ordering::Acquire)
    }

    /// Forgets segment tasks that have finished.
    pub(crate) fn reap(&mut self) {
        self.in_flight.retain(|t| !t.is_finished());
    }

    /// Blocks until every sealed segment of this writer has finished uploading (or failed), or
    /// until `deadline`. Returns whether all finished.
    pub(crate) fn wait(&mut self, rt: &Handle, deadline: Instant) -> bool {
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
