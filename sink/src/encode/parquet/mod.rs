//! Parquet files: JSON records decoded straight into Arrow with the table's schema, written as
//! row groups that stream to the store.
//!
//! Records are appended as bytes and checked in batches ([`Encoder::settle`]): arrow-json's
//! tape decoder parses a batch, and the batch becomes Arrow arrays only if every record fits
//! the schema. A batch with a record that does not fit is decoded again record by record, so
//! each refused record is named with the decoder's reason (which carries the field path) and
//! the others are kept. Nothing that failed ever reaches the Parquet writer, so a bad record
//! cannot produce a corrupt file.
//!
//! Columns of type `Utf8` take any JSON value: strings as they are, anything else (objects such
//! as CloudTrail's `requestParameters`, arrays, numbers) as its compact JSON text, the way
//! Athena's CloudTrail table stores them.
//!
//! Memory: settled rows wait as Arrow data until their row group is complete, bounded by rows
//! and by Arrow bytes (`row_group_rows`, `row_group_bytes`); the row group is then written,
//! one column at a time, and closed at once, and leaves through [`Encoder::take_ready`] as a
//! multipart part. So the
//! column writers and their codec state (parquet keeps a zstd compression and decompression
//! context per column, ~200 KB, 9 MB for CloudTrail's 45 columns) exist only while a row group
//! is written, not for the life of every open file. The zstd contexts are then kept by the
//! worker thread for the next row group (the patched `zstd-safe` in `vendor/`): creating one
//! runs `cpuid`, which a virtual machine traps. The JSON decoders are per worker thread
//! and table, not per file.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_json::reader::Decoder;
use arrow_json::ReaderBuilder;
use arrow_schema::{ArrowError, SchemaRef};
use direct::{JsonDirect, JsonRows};
use json_text::JsonTextFactory;
use lakesink_schema_registry::avro_arrow::AvroArrow;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowRowGroupWriterFactory, ArrowWriterOptions,
};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

use super::{EncodeError, Encoder, Rejected};

/// Rows decoded per Arrow batch. The tape decoder reserves room for this many rows up front
/// (about 1.5 MB for CloudTrail's 45 leaf fields at 1024), once per worker thread and table.
const DECODE_ROWS: usize = 1024;

/// Rows or bytes appended after which the writer settles a file without waiting for its cut.
pub const SETTLE_ROWS: usize = 4096;
pub const SETTLE_BYTES: usize = 4 * 1024 * 1024;

/// Estimated memory of an open Parquet file's writer between row groups (file metadata,
/// buffers); a row group's column writers exist only while it is written.
pub const PARQUET_STATE: usize = 64 * 1024;

/// How a Parquet table writes: its schema and writer settings (built by `config`).
#[derive(Debug)]
pub struct ParquetPlan {
    /// Identifies the plan in the per-thread decoder cache.
    id: usize,
    pub schema: SchemaRef,
    /// Where the schema came from, for messages.
    pub origin: String,
    pub props: WriterProperties,
    /// `unknown_fields = "fail"`: a field the schema lacks makes the record bad.
    pub strict: bool,
    /// Records of an Avro schema that the direct path reads: the encoder is given the Avro
    /// datums (without the Confluent header) and decodes them straight into Arrow.
    pub avro: Option<Arc<AvroArrow>>,
    /// The one-pass JSON parser of this schema, if it covers every column
    /// ([`direct::JsonDirect`]).
    pub json: Option<Arc<JsonDirect>>,
}

impl ParquetPlan {
    pub fn new(schema: SchemaRef, origin: String, props: WriterProperties, strict: bool) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        ParquetPlan {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            json: JsonDirect::new(schema.clone(), strict).map(Arc::new),
            schema,
            origin,
            props,
            strict,
            avro: None,
        }
    }

    /// The same plan for Avro datums of the schema `avro` reads (its schema must be this
    /// plan's).
    pub fn with_avro(mut self, avro: AvroArrow) -> Self {
        debug_assert_eq!(avro.schema(), &self.schema);
        self.avro = Some(Arc::new(avro));
        self
    }

    fn decoder(&self) -> Result<Decoder, ArrowError> {
        ReaderBuilder::new(self.schema.clone())
            .with_batch_size(DECODE_ROWS)
            .with_strict_mode(self.strict)
            .with_decoder_factory(Arc::new(JsonTextFactory))
            .build_decoder()
    }
}

thread_local! {
    /// One JSON decoder per table on each worker thread (by plan id).
    static DECODERS: RefCell<Vec<(usize, Decoder)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's decoder for `plan`. A decoder that failed is dropped (its tape
/// may hold part of a batch) and rebuilt on next use.
fn with_decoder<T>(
    plan: &ParquetPlan,
    f: impl FnOnce(&mut Decoder) -> Result<T, ArrowError>,
) -> Result<T, ArrowError> {
    DECODERS.with(|cell| {
        let mut cache = cell.borrow_mut();
        let i = match cache.iter().position(|(id, _)| *id == plan.id) {
            Some(i) => i,
            None => {
                cache.push((plan.id, plan.decoder()?));
                cache.len() - 1
            }
        };
        let r = f(&mut cache[i].1);
        if r.is_err() {
            cache.swap_remove(i);
        }
        r
    })
}

/// Decodes newline-separated JSON records into batches of [`DECODE_ROWS`].
fn decode_all(d: &mut Decoder, buf: &[u8], out: &mut Vec<RecordBatch>) -> Result<(), ArrowError> {
    let mut pos = 0;
    loop {
        let n = d.decode(&buf[pos..])?;
        pos += n;
        let flushed = d.flush()?;
        let progressed = n > 0 || flushed.is_some();
        out.extend(flushed);
        if pos >= buf.len() {
            return Ok(());
        }
        if !progressed {
            return Err(ArrowError::JsonError("decoder made no progress".into()));
        }
    }
}

/// One Parquet file.
pub struct ParquetEncoder {
    plan: Arc<ParquetPlan>,
    writer: Option<FileOut>,
    /// Records appended since the last settle, one per line.
    pending: Vec<u8>,
    /// End of each pending record in `pending`.
    ends: Vec<usize>,
    /// Arrow batches of a settle, reused.
    batches: Vec<RecordBatch>,
    /// Settled rows of the open row group, as Arrow data. They reach the `ArrowWriter` only
    /// when the row group is complete (or the file ends): its column writers, and the codec
    /// state each holds (a zstd compression *and* decompression context per column, some
    /// 200 KB), then live for one flush instead of the life of the file.
    group: Vec<RecordBatch>,
    group_rows: usize,
    group_bytes: usize,
    /// Rows the direct path parsed since the last settle (`plan.json`): the open batch's
    /// builders, the batches of [`DECODE_ROWS`] already finished, their memory, and how many
    /// rows and JSON bytes they came from (what a settle is due by, as for `pending`).
    parsed_rows: Option<JsonRows>,
    parsed: Vec<RecordBatch>,
    parsed_memory: usize,
    /// The open rows' memory, counted as they grow.
    open_memory: usize,
    parsed_count: usize,
    parsed_bytes: usize,
}

/// A file being written: parquet's file writer over the output bytes, and the factory of each
/// row group's column writers.
struct FileOut {
    file: SerializedFileWriter<Vec<u8>>,
    columns: ArrowRowGroupWriterFactory,
    /// Row groups written.
    groups: usize,
}

impl ParquetEncoder {
    pub fn new(plan: Arc<ParquetPlan>) -> ParquetEncoder {
        ParquetEncoder {
            plan,
            writer: None,
            pending: Vec::new(),
            ends: Vec::new(),
            batches: Vec::new(),
            group: Vec::new(),
            group_rows: 0,
            group_bytes: 0,
            parsed_rows: None,
            parsed: Vec::new(),
            parsed_memory: 0,
            open_memory: 0,
            parsed_count: 0,
            parsed_bytes: 0,
        }
    }

    /// Writes the open row group's rows and closes it; its bytes are then in the writer's
    /// output, ready for [`Encoder::take_ready`]. A settle can take the group past
    /// `row_group_rows`: the rows are then cut into row groups of at most that many, where
    /// parquet's `ArrowWriter` cut them (the bloom filters are sized for that many).
    fn flush_group(&mut self) -> Result<(), EncodeError> {
        let group = std::mem::take(&mut self.group);
        let max_rows = self
            .plan
            .props
            .max_row_group_row_count()
            .unwrap_or(usize::MAX)
            .max(1);
        let mut piece: Vec<RecordBatch> = Vec::new();
        let mut rows = 0;
        for b in &group {
            let mut offset = 0;
            while offset < b.num_rows() {
                let n = (b.num_rows() - offset).min(max_rows - rows);
                piece.push(b.slice(offset, n));
                offset += n;
                rows += n;
                if rows == max_rows {
                    self.write_row_group(&piece)?;
                    piece.clear();
                    rows = 0;
                }
            }
        }
        if !piece.is_empty() {
            self.write_row_group(&piece)?;
        }
        drop(piece);
        self.group = group;
        self.group.clear();
        self.group_rows = 0;
        self.group_bytes = 0;
        Ok(())
    }

    /// Writes the open row group if it is complete, by rows or by bytes.
    fn group_due(&mut self) -> Result<(), EncodeError> {
        let max_rows = self
            .plan
            .props
            .max_row_group_row_count()
            .unwrap_or(usize::MAX);
        let max_bytes = self.plan.props.max_row_group_bytes().unwrap_or(usize::MAX);
        if self.group_rows >= max_rows || self.group_bytes >= max_bytes {
            self.flush_group()?;
        }
        Ok(())
    }

    /// Writes one row group, one column at a time: a column's writer encodes that column of
    /// every batch, closes into its chunk, and the chunk goes to the output before the next
    /// column starts. Only one column's pages and dictionary are held at once, where parquet's
    /// `ArrowWriter` holds every column's until the row group closes: 0.54–0.76× the row
    /// group's Arrow data on CloudTrail (`tests/parquet_memory.rs`), memory that no budget
    /// counted. The bytes are the same either way.
    fn write_row_group(&mut self, batches: &[RecordBatch]) -> Result<(), EncodeError> {
        let schema = self.plan.schema.clone();
        let out = self.writer()?;
        let mut writers = out.columns.create_column_writers(out.groups)?.into_iter();
        let mut row_group = out.file.next_row_group()?;
        for (i, field) in schema.fields().iter().enumerate() {
            // A struct field has a leaf column per primitive field inside it.
            let leaves = batches
                .iter()
                .map(|b| compute_leaves(field, b.column(i)))
                .collect::<Result<Vec<_>, _>>()?;
            let width = leaves.first().map_or(0, Vec::len);
            for leaf in 0..width {
                let mut w = writers.next().ok_or_else(|| {
                    EncodeError::Arrow(ArrowError::SchemaError(format!(
                        "no column writer for a leaf of `{}`",
                        field.name()
                    )))
                })?;
                for l in &leaves {
                    w.write(&l[leaf])?;
                }
                w.close()?.append_to_row_group(&mut row_group)?;
            }
        }
        row_group.close()?;
        out.groups += 1;
        out.file.flush().map_err(|source| EncodeError::Io {
            what: "row group",
            source,
        })
    }

    fn writer(&mut self) -> Result<&mut FileOut, EncodeError> {
        if self.writer.is_none() {
            // No `ARROW:schema` footer entry: the Parquet schema and its logical types say it
            // all to every engine, and the base64 Arrow schema of a nested table costs
            // kilobytes per file.
            let options = ArrowWriterOptions::new()
                .with_properties(self.plan.props.clone())
                .with_skip_arrow_metadata(true);
            let (file, columns) = ArrowWriter::try_new_with_options(
                Vec::with_capacity(64 * 1024),
                self.plan.schema.clone(),
                options,
            )?
            .into_serialized_writer()?;
            self.writer = Some(FileOut {
                file,
                columns,
                groups: 0,
            });
        }
        Ok(self.writer.as_mut().expect("writer"))
    }

    /// Decodes each pending record alone: the good ones into `batches`, the others into
    /// `rejected`.
    fn one_by_one(&mut self, rejected: &mut Vec<Rejected>) -> Result<(), EncodeError> {
        self.batches.clear();
        let mut start = 0;
        for (index, &end) in self.ends.iter().enumerate() {
            let row = &self.pending[start..end];
            start = end;
            let r = with_decoder(&self.plan, |d| {
                let n = d.decode(row)?;
                if n < row.len() && row[n..].iter().any(|b| !b.is_ascii_whitespace()) {
                    return Err(ArrowError::JsonError(
                        "more than one JSON value in the record".into(),
                    ));
                }
                d.flush()
            });
            match r {
                Ok(Some(b)) => self.batches.push(b),
                Ok(None) => rejected.push(Rejected {
                    index,
                    record: record_of(row),
                    reason: "no JSON value".into(),
                }),
                Err(e) => rejected.push(Rejected {
                    index,
                    record: record_of(row),
                    reason: clean(e),
                }),
            }
        }
        Ok(())
    }
}

impl ParquetEncoder {
    /// Decodes the pending Avro datums into one batch; if one of them is refused, each alone
    /// (the good ones into `batches`, the others into `rejected`), as [`Self::one_by_one`]
    /// does for JSON.
    fn settle_avro(&mut self, avro: &AvroArrow, rejected: &mut Vec<Rejected>) {
        // Batches of DECODE_ROWS, as arrow-json's: parquet decides page boundaries between the
        // batches it is given, so both paths write the same bytes.
        let mut rows = avro.rows(DECODE_ROWS.min(self.ends.len()));
        let mut batches = Vec::new();
        let mut whole = Ok(());
        for d in datums(&self.pending, &self.ends) {
            whole = rows.append(d).map_err(|e| e.to_string());
            if whole.is_err() {
                break;
            }
            if rows.len() == DECODE_ROWS {
                let full = std::mem::replace(&mut rows, avro.rows(DECODE_ROWS));
                match full.finish() {
                    Ok(b) => batches.push(b),
                    Err(e) => {
                        whole = Err(e.to_string());
                        break;
                    }
                }
            }
        }
        if whole.is_ok() && !rows.is_empty() {
            whole = rows
                .finish()
                .map(|b| batches.push(b))
                .map_err(|e| e.to_string());
        }
        if whole.is_ok() {
            self.batches = batches;
            return;
        }
        for (index, d) in datums(&self.pending, &self.ends).enumerate() {
            let mut rows = avro.rows(1);
            let one = rows
                .append(d)
                .map_err(|e| e.to_string())
                .and_then(|()| rows.finish().map_err(|e| e.to_string()));
            match one {
                Ok(batch) => self.batches.push(batch),
                Err(reason) => rejected.push(Rejected {
                    index,
                    record: d.to_vec(),
                    reason,
                }),
            }
        }
    }
}

/// The pending records, each up to its end.
fn datums<'a>(pending: &'a [u8], ends: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    ends.iter().scan(0, move |start, &end| {
        let d = &pending[*start..end];
        *start = end;
        Some(d)
    })
}

/// A pending row without the newline [`Encoder::append`] added.
fn record_of(row: &[u8]) -> Vec<u8> {
    row.strip_suffix(b"\n").unwrap_or(row).to_vec()
}

/// The decoder's message without arrow's "Json error: " prefix.
fn clean(e: ArrowError) -> String {
    match e {
        ArrowError::JsonError(m) => m,
        other => other.to_string(),
    }
}

impl Encoder for ParquetEncoder {
    fn append(&mut self, record: &[u8]) -> Result<(), EncodeError> {
        if self.pending.is_empty() {
            self.pending.reserve(record.len().max(1024) * 4);
        }
        self.pending.extend_from_slice(record);
        if self.plan.avro.is_none() {
            self.pending.push(b'\n');
        }
        self.ends.push(self.pending.len());
        Ok(())
    }

    fn written(&self) -> u64 {
        // What the file would be now (for `rotate.max_bytes`): the row groups written, and the
        // open one's Arrow data at an assumed 8:1 (zstd CloudTrail rows compress ~10:1).
        let done = self.writer.as_ref().map_or(0, |w| w.file.bytes_written());
        (done + self.group_bytes / 8) as u64
    }

    fn buffered(&self) -> usize {
        self.writer.as_ref().map_or(0, |w| w.file.inner().len())
    }

    fn overhead(&self) -> usize {
        self.pending.capacity()
            + self.ends.capacity() * std::mem::size_of::<usize>()
            + self.open_memory
            + self.parsed_memory
            + self.group_bytes
            + self.writer.as_ref().map_or(0, |w| {
                // The output grows by doubling: its spare capacity is memory too.
                let out = w.file.inner();
                PARQUET_STATE + (out.capacity() - out.len())
            })
    }

    fn take_ready(&mut self, min: usize) -> Option<Vec<u8>> {
        // The row group's bytes were flushed through to the Vec when it closed.
        let out = self.writer.as_mut()?.file.inner_mut();
        if out.len() < min {
            return None;
        }
        Some(std::mem::take(out))
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, EncodeError> {
        let mut rejected = Vec::new();
        self.settle(&mut rejected)?;
        if let Some(r) = rejected.first() {
            // The writer settles before it finishes; this is a bug if it happens.
            return Err(EncodeError::Arrow(ArrowError::JsonError(format!(
                "record refused while finishing the file: {}",
                r.reason
            ))));
        }
        if !self.group.is_empty() {
            self.flush_group()?;
        }
        self.writer()?;
        let w = self.writer.take().expect("writer");
        let mut out = w.file.into_inner()?;
        out.shrink_to_fit();
        Ok(out)
    }

    fn unsettled(&self) -> usize {
        self.ends.len() + self.parsed_count
    }

    fn unsettled_bytes(&self) -> usize {
        self.pending.len() + self.parsed_bytes
    }

    fn parsed_rows(&mut self) -> Option<&mut JsonRows> {
        let direct = self.plan.json.as_ref()?;
        Some(self.parsed_rows.get_or_insert_with(|| direct.rows()))
    }

    fn commit_parsed(&mut self, bytes: usize) -> Result<(), EncodeError> {
        let direct = self
            .plan
            .json
            .as_ref()
            .expect("parsed rows need a direct path");
        let open = self.parsed_rows.as_mut().expect("a parsed row");
        self.parsed_count += 1;
        self.parsed_bytes += bytes;
        let n = open.len();
        if n == DECODE_ROWS {
            // Batches of DECODE_ROWS, as arrow-json makes them: parquet decides page
            // boundaries between the batches it is given.
            let b = open.finish(direct, true)?;
            self.parsed_memory += b.get_array_memory_size();
            self.parsed.push(b);
            self.open_memory = 0;
        } else if n.is_power_of_two() || n % 64 == 0 {
            // Walking every column costs as much as a row: the builders' memory is counted
            // again as they grow (by doubling) and every 64 rows.
            self.open_memory = open.memory();
        }
        Ok(())
    }

    fn append_parsed(
        &mut self,
        rows: &JsonRows,
        row: usize,
        bytes: usize,
    ) -> Result<bool, EncodeError> {
        let Some(open) = self.parsed_rows() else {
            return Ok(false);
        };
        open.push_row(rows, row);
        self.commit_parsed(bytes)?;
        Ok(true)
    }

    fn settle(&mut self, rejected: &mut Vec<Rejected>) -> Result<(), EncodeError> {
        if self.parsed_count == 0 && self.ends.is_empty() {
            return Ok(());
        }
        if self.parsed_count > 0 {
            let direct = self
                .plan
                .json
                .as_ref()
                .expect("rows were parsed for this plan");
            if let Some(open) = self.parsed_rows.as_mut().filter(|r| !r.is_empty()) {
                self.parsed.push(open.finish(direct, false)?);
            }
            self.parsed_memory = 0;
            self.open_memory = 0;
            self.parsed_count = 0;
            self.parsed_bytes = 0;
        }
        self.batches.clear();
        if !self.ends.is_empty() {
            if let Some(avro) = self.plan.avro.clone() {
                self.settle_avro(&avro, rejected);
            } else {
                let batches = &mut self.batches;
                let pending = &self.pending;
                let whole = with_decoder(&self.plan, |d| decode_all(d, pending, batches));
                let rows: usize = self.batches.iter().map(RecordBatch::num_rows).sum();
                if whole.is_err() || rows != self.ends.len() {
                    self.one_by_one(rejected)?;
                }
            }
            self.pending.clear();
            self.ends.clear();
            if self.pending.capacity() > SETTLE_BYTES * 2 {
                self.pending.shrink_to(SETTLE_BYTES);
            }
        }
        // Parsed rows first, then the records that took the old way: the order is decided by
        // the data, so the same records give the same file.
        for b in self.parsed.drain(..).chain(self.batches.drain(..)) {
            self.group_rows += b.num_rows();
            self.group_bytes += b.get_array_memory_size();
            self.group.push(b);
        }
        self.group_due()
    }
}

/// How a table's Parquet files are written: `[tables.parquet]`, validated once at load.
#[derive(Clone, Debug)]
pub struct ParquetOptions {
    pub compression: parquet::basic::Compression,
    pub statistics: parquet::file::properties::EnabledStatistics,
    pub dictionary: bool,
    /// A row group holds at most this many rows…
    pub row_group_rows: usize,
    /// …and at most this much Arrow data.
    pub row_group_bytes: usize,
    /// Columns (dotted paths into structs) that get a bloom filter.
    pub bloom_filters: Vec<String>,
    pub bloom_filter_fpp: f64,
    /// A JSON field the schema lacks is a bad record (`unknown_fields = "fail"`).
    pub strict: bool,
    /// JSON records are parsed once, into Arrow, as they are routed ([`direct`]).
    pub one_pass: bool,
}

/// The plan of a table's Parquet files: its Arrow schema (`origin` says where it came from)
/// and the writer properties its options ask for. A bloom filter column must be a primitive
/// column of the schema.
pub fn plan(
    options: &ParquetOptions,
    arrow: &arrow_schema::SchemaRef,
    origin: &str,
) -> Result<ParquetPlan, String> {
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use parquet::schema::types::ColumnPath;

    let p = options;
    let mut props = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(p.compression)
        .set_statistics_enabled(p.statistics)
        .set_dictionary_enabled(p.dictionary)
        .set_max_row_group_row_count(Some(p.row_group_rows))
        .set_max_row_group_bytes(Some(p.row_group_bytes))
        .set_created_by(format!("lakesink {}", env!("CARGO_PKG_VERSION")));
    for column in &p.bloom_filters {
        let path: Vec<String> = column.split('.').map(str::to_string).collect();
        leaf_type(arrow, &path).map_err(|m| format!("parquet.bloom_filters: `{column}` {m}"))?;
        props = props
            .set_column_bloom_filter_enabled(ColumnPath::new(path.clone()), true)
            .set_column_bloom_filter_fpp(ColumnPath::new(path.clone()), p.bloom_filter_fpp)
            .set_column_bloom_filter_max_ndv(ColumnPath::new(path), p.row_group_rows as u64);
    }
    let mut plan = ParquetPlan::new(arrow.clone(), origin.to_string(), props.build(), p.strict);
    if !p.one_pass {
        plan.json = None;
    }
    Ok(plan)
}

/// The type of the primitive column at a dotted path through structs.
fn leaf_type(
    schema: &arrow_schema::Schema,
    path: &[String],
) -> Result<arrow_schema::DataType, String> {
    use arrow_schema::DataType;
    let mut fields = schema.fields().clone();
    for (i, name) in path.iter().enumerate() {
        let f = fields
            .iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| format!("is not a column of the schema (no field `{name}`)"))?;
        match f.data_type() {
            DataType::Struct(children) if i + 1 < path.len() => fields = children.clone(),
            DataType::Struct(_)
            | DataType::List(_)
            | DataType::Map(..)
            | DataType::LargeList(_) => {
                return Err(format!("is a {}, not a primitive column", f.data_type()))
            }
            dt if i + 1 == path.len() => return Ok(dt.clone()),
            _ => return Err(format!("`{name}` is not a struct")),
        }
    }
    Err("is empty".into())
}

pub mod direct;
mod json_text;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod zstd_reuse;
