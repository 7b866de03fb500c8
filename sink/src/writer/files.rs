//! An open file of a segment: its encoder and upload, opened under a key that carries the
//! offset of its first record, appended to (shipping parts as they fill), charged to the memory
//! budget as it grows, and closed at the cut.

use std::collections::HashMap;

use object_store::path::Path;

use super::{WriteError, WriterCtx};
use crate::catalog::FileFacts;
use crate::commit::Tp;
use crate::config::TablePlan;
use crate::encode::parquet::direct::JsonRows;
use crate::encode::parquet::{SETTLE_BYTES, SETTLE_ROWS};
use crate::encode::{EncodeError, Encoder};
use crate::rotate::{file_full, CutReason};
use crate::route::escape::escape_partition_value;
use crate::route::MAX_KEY_BYTES;
use crate::storage::under_root;
use crate::upload::ObjectUpload;

/// A row appended to a file and not settled yet: what its dead letter would need besides the
/// bytes the encoder holds. Ranges are into [`OpenFile::unsettled_bytes`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Unsettled {
    pub(super) offset: i64,
    pub(super) kafka_millis: Option<i64>,
    pub(super) key: Option<(u32, u32)>,
    pub(super) headers: Option<(u32, u32)>,
    /// The record's value, when the encoder was given another text (decoded Avro).
    pub(super) value: Option<(u32, u32)>,
}

pub(super) struct OpenFile {
    pub(super) encoder: Box<dyn Encoder>,
    pub(super) upload: ObjectUpload,
    pub(super) records: u64,
    /// Bytes handed to the upload as parts.
    pub(super) sent: u64,
    /// CRC-32 of those bytes, continued over the tail at the close: the object's checksum
    /// its claim records for `lakesink verify --deep`.
    pub(super) crc: crc32fast::Hasher,
    /// What a dead letter needs of each row not settled yet (formats that check rows in
    /// batches: Parquet), whose bytes are in [`OpenFile::unsettled_bytes`]. Rows wait across
    /// consumer batches until [`settle_due`] or the segment is cut: Arrow then decodes them in
    /// large batches.
    pub(super) unsettled: Vec<Unsettled>,
    /// Keys and headers of the unsettled rows (and their values, for tables whose encoder is
    /// given another text than the record's value).
    pub(super) unsettled_bytes: Vec<u8>,
    /// Budget charged for this file: encoded bytes and records the encoder holds, its state,
    /// and [`FILE_OVERHEAD`].
    pub(super) charged: usize,
    /// Smallest and largest event time written, µs since the epoch.
    pub(super) min_event: i64,
    pub(super) max_event: i64,
    pub(super) _counted: Counted,
}

/// Memory of an open file besides its encoder: key, upload handle, map entry and allocator
/// slack (an estimate).
pub(super) const FILE_OVERHEAD: usize = 1024;

/// How a writer names its files: its generation, and the keys of the claimed segment it
/// replays (see [`open_file`]).
#[derive(Clone, Copy)]
pub(super) struct Naming<'a> {
    pub(super) generation: u32,
    pub(super) claimed: &'a HashMap<String, String>,
}

impl Naming<'_> {
    /// The suffix of a new file's name before its extension: the generation (`.g1`) and, on a
    /// store that does not fence writers, this writer's token (`.u1a2b3c4d`).
    pub(super) fn suffix(&self, ctx: &WriterCtx) -> String {
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
pub(crate) fn path_room(root: &str, table: &str, tp: &Tp) -> usize {
    let mut topic = String::new();
    escape_partition_value(&tp.topic, &mut topic);
    let prefix = if root.is_empty() { 0 } else { root.len() + 1 };
    let suffix = ".g4294967295".len() + ".u12345678".len();
    let file = topic.len() + 1 + 11 + 1 + 20 + suffix + ".parquet".len();
    // (A late file of a compacted partition goes to the compaction's directory below it.)
    let compaction = crate::seal::compactions::DIR_BYTES;
    MAX_KEY_BYTES.saturating_sub(prefix + table.len() + 1 + 1 + compaction + file)
}

/// Creates the file for a new partition path; its key carries the offset of its first record.
///
/// `dir` is the partition's directory below the store root: `{table}/{partition path}`, or
/// `{dead-letter prefix}/{table}/date=…`. A new file goes to `place` instead when given (the
/// directory of the partition's compaction, below the store root); a replayed one keeps the key
/// its claim lists for `dir`, wherever that is.
#[allow(clippy::too_many_arguments)]
pub(super) fn open_file(
    ctx: &WriterCtx,
    table: &TablePlan,
    tp: &Tp,
    dir: &str,
    place: Option<&str>,
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
    let dir = under_root(&ctx.root, dir);
    // A replayed segment's file keeps the key its claim lists for this directory (its first
    // record may be gone from Kafka); a new one is named by its first offset.
    let claimed = naming.claimed.get(&dir).filter(|k| {
        k.rsplit_once('/').is_some_and(|(_, file)| {
            file.starts_with(&name) && file.ends_with(&format!(".{extension}"))
        })
    });
    let key = match claimed {
        Some(k) => k.clone(),
        None => {
            let dir = place.map_or(dir, |place| under_root(&ctx.root, place));
            format!("{dir}/{name}{offset:020}{}.{extension}", naming.suffix(ctx))
        }
    };
    let parsed = Path::parse(&key).map_err(|source| WriteError::Key {
        table: table.name.clone(),
        key: key.clone(),
        source,
    })?;
    Ok(OpenFile {
        encoder,
        upload: ObjectUpload::new(parsed),
        records: 0,
        sent: 0,
        crc: crc32fast::Hasher::new(),
        unsettled: Vec::new(),
        unsettled_bytes: Vec::new(),
        charged: 0,
        min_event: i64::MAX,
        max_event: i64::MIN,
        _counted: Counted::new(&ctx.stats.metrics),
    })
}

/// One file in `lakesink_open_files` and `lakesink_oldest_open_file_age_seconds` for as long as
/// it lives (closed or abandoned).
pub(super) struct Counted {
    open: prometheus_client::metrics::gauge::Gauge,
    ages: std::sync::Arc<crate::metrics::OpenAges>,
    since: std::time::Instant,
}

impl Counted {
    fn new(m: &crate::metrics::Metrics) -> Counted {
        let since = std::time::Instant::now();
        m.open_files.inc();
        m.open_ages.opened(since);
        Counted {
            open: m.open_files.clone(),
            ages: m.open_ages.clone(),
            since,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.dec();
        self.ages.closed(self.since);
    }
}

impl OpenFile {
    pub(super) fn saw(&mut self, event_micros: i64) {
        self.min_event = self.min_event.min(event_micros);
        self.max_event = self.max_event.max(event_micros);
    }
}

/// Appends one record to a file, ships a part when one is ready, and says whether the file is
/// now full.
pub(super) fn append(
    ctx: &WriterCtx,
    table: &TablePlan,
    f: &mut OpenFile,
    payload: &[u8],
    held: &mut usize,
) -> Result<Option<CutReason>, WriteError> {
    let r = f.encoder.append(payload);
    appended(ctx, table, f, held, r)
}

/// Appends a record the direct JSON path parsed (row 0 of `rows`), or, if the file's encoder
/// has no direct path, its JSON `payload` as bytes; says which (`true`: parsed).
pub(super) fn append_parsed(
    ctx: &WriterCtx,
    table: &TablePlan,
    f: &mut OpenFile,
    rows: &JsonRows,
    payload: &[u8],
    held: &mut usize,
) -> Result<(Option<CutReason>, bool), WriteError> {
    match f.encoder.append_parsed(rows, 0, payload.len()) {
        Ok(false) => Ok((append(ctx, table, f, payload, held)?, false)),
        r => Ok((appended(ctx, table, f, held, r.map(drop))?, true)),
    }
}

/// Counts the record the direct JSON path parsed into the file's own open rows.
pub(super) fn commit_parsed(
    ctx: &WriterCtx,
    table: &TablePlan,
    f: &mut OpenFile,
    payload: &[u8],
    held: &mut usize,
) -> Result<Option<CutReason>, WriteError> {
    let r = f.encoder.commit_parsed(payload.len());
    appended(ctx, table, f, held, r)
}

/// After a record went into the file's encoder (`r`): counts it, charges the budget, and says
/// whether the file is full.
fn appended(
    ctx: &WriterCtx,
    table: &TablePlan,
    f: &mut OpenFile,
    held: &mut usize,
    r: Result<(), EncodeError>,
) -> Result<Option<CutReason>, WriteError> {
    r.map_err(|source| WriteError::Encode {
        key: f.upload.key().to_string(),
        source,
    })?;
    f.records += 1;
    recharge(ctx, f, held);
    Ok(file_full(&table.rotate, f.records, f.encoder.written()))
}

/// Whether a file holds enough unsettled rows to settle them before its cut.
pub(super) fn settle_due(f: &OpenFile) -> bool {
    f.encoder.unsettled() >= SETTLE_ROWS || f.encoder.unsettled_bytes() >= SETTLE_BYTES
}

/// Charges the budget for what a file's encoder holds now and ships a part when one is ready.
pub(super) fn recharge(ctx: &WriterCtx, f: &mut OpenFile, held: &mut usize) {
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
        f.crc.update(&part);
        f.upload.send_part(&ctx.rt, &ctx.store, &ctx.budget, part);
    }
}

/// Finishes an open file: its last bytes (charged to the budget until the store has them, the
/// file's own charge returned) and what the catalog and webhook are told about it.
pub(super) fn close(
    ctx: &WriterCtx,
    f: OpenFile,
    held: &mut usize,
) -> Result<(ObjectUpload, Vec<u8>, FileFacts), WriteError> {
    let key = f.upload.key().to_string();
    let written_before = f.sent;
    let mut crc = f.crc.clone();
    let tail = f.encoder.finish().map_err(|source| WriteError::Encode {
        key: key.clone(),
        source,
    })?;
    crc.update(&tail);
    ctx.budget.charge(tail.len());
    ctx.budget.release(f.charged);
    *held = held.saturating_sub(f.charged);
    let facts = FileFacts {
        key,
        records: f.records,
        bytes: written_before + tail.len() as u64,
        crc32: crc.finalize(),
        min_event_micros: f.min_event,
        max_event_micros: f.max_event,
    };
    Ok((f.upload, tail, facts))
}
