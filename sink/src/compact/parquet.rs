//! Parquet files joined into one: every row group of every input becomes a row group of the
//! output. Where an input has the output's schema its column chunks are copied as bytes with
//! their statistics, page indexes and bloom filters (parquet's `append_column`); where it has
//! another schema that converts into the output's (a registry table whose schema gained
//! optional fields), its row groups are decoded and encoded again in the output's schema, with
//! the table's statistics and bloom filters.
//!
//! The output's schema is chosen from the inputs' footers before any input is read whole
//! ([`runs`]): the schema every other converts into, else one output per run of inputs of one
//! schema. Inputs are then read one at a time and the output streams to its sink (a multipart
//! upload), so a join holds one input and a few parts, not the group.

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{ReaderProperties, WriterProperties};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;

/// Rows decoded at once when an input is encoded again.
const BATCH_ROWS: usize = 8192;

/// Where joining Parquet files failed: the file (an input, or the output being written), the
/// step, and parquet's error.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {step}: {source}")]
pub struct JoinError {
    key: String,
    step: String,
    #[source]
    source: ParquetError,
}

impl JoinError {
    pub(super) fn new(key: &str, step: impl Into<String>, source: ParquetError) -> JoinError {
        JoinError {
            key: key.to_string(),
            step: step.into(),
            source,
        }
    }
}

fn failed(key: &str, step: impl Into<String>) -> impl FnOnce(ParquetError) -> JoinError + '_ {
    let step = step.into();
    move |source| JoinError::new(key, step, source)
}

/// Opens a Parquet file with its page indexes and bloom filters (its footer parsed once).
pub(super) fn open(key: &str, bytes: &Bytes) -> Result<SerializedFileReader<Bytes>, JoinError> {
    let options = ReadOptionsBuilder::new()
        .with_page_index()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    SerializedFileReader::new_with_options(bytes.clone(), options)
        .map_err(failed(key, "not a Parquet file"))
}

/// The footer's length and magic, from a file's last 8 bytes.
pub(super) fn footer_len(key: &str, tail: &[u8]) -> Result<usize, JoinError> {
    if tail.len() != 8 || &tail[4..] != b"PAR1" {
        return Err(JoinError::new(
            key,
            "reading the footer",
            ParquetError::General("the file does not end in PAR1".into()),
        ));
    }
    Ok(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as usize)
}

/// An input's footer, without its page indexes: enough to choose the output's schema.
pub(super) fn footer(key: &str, footer: &[u8]) -> Result<ParquetMetaData, JoinError> {
    ParquetMetaDataReader::decode_metadata(footer).map_err(failed(key, "reading the footer"))
}

/// An input as [`runs`] sees it: its key and footer.
pub(super) struct Input {
    pub key: String,
    pub meta: ParquetMetaData,
}

impl Input {
    fn root(&self) -> parquet::schema::types::TypePtr {
        self.meta.file_metadata().schema_descr().root_schema_ptr()
    }

    fn arrow(&self) -> Result<Schema, JoinError> {
        let m = self.meta.file_metadata();
        parquet::arrow::parquet_to_arrow_schema(m.schema_descr(), m.key_value_metadata())
            .map_err(failed(&self.key, "reading its Arrow schema"))
    }
}

/// One output of a join: the inputs it holds, and the input whose schema (and key-value
/// metadata) it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Run {
    pub inputs: Range<usize>,
    pub target: usize,
}

/// The outputs of a join. One output when one input's schema is one every other input's
/// converts into (see [`converts`]); else one per run of inputs of one schema, each copied.
pub(super) fn runs(inputs: &[Input]) -> Result<Vec<Run>, JoinError> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    // The distinct schemas, each with the last input that has it (the newest, in key order).
    let mut distinct: Vec<(parquet::schema::types::TypePtr, usize)> = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let root = input.root();
        match distinct.iter_mut().find(|(r, _)| *r == root) {
            Some(d) => d.1 = i,
            None => distinct.push((root, i)),
        }
    }
    if distinct.len() == 1 {
        return Ok(vec![Run {
            inputs: 0..inputs.len(),
            target: inputs.len() - 1,
        }]);
    }
    let arrows = distinct
        .iter()
        .map(|(_, i)| inputs[*i].arrow())
        .collect::<Result<Vec<_>, _>>()?;
    // The widest schema first: the one the others gained fields towards.
    let mut order: Vec<usize> = (0..distinct.len()).collect();
    order.sort_by_key(|&d| std::cmp::Reverse((arrows[d].fields().len(), distinct[d].1)));
    for d in order {
        if arrows.iter().all(|a| converts(a, &arrows[d])) {
            return Ok(vec![Run {
                inputs: 0..inputs.len(),
                target: distinct[d].1,
            }]);
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < inputs.len() {
        let first = inputs[i].root();
        let mut j = i + 1;
        while j < inputs.len() && inputs[j].root() == first {
            j += 1;
        }
        out.push(Run {
            inputs: i..j,
            target: i,
        });
        i = j;
    }
    Ok(out)
}

/// Whether rows of schema `from` convert into schema `to` without loss: every field of `from`
/// is in `to` with the same type, or a primitive type arrow casts to `to`'s (an int widened);
/// a field nullable in `from` is nullable in `to`; and a field only `to` has is nullable (it
/// is null in the converted rows).
pub(super) fn converts(from: &Schema, to: &Schema) -> bool {
    let widens = |a: &DataType, b: &DataType| {
        a == b
            || (a.is_primitive()
                && b.is_primitive()
                && matches!(
                    (a, b),
                    (
                        DataType::Int8,
                        DataType::Int16 | DataType::Int32 | DataType::Int64
                    ) | (DataType::Int16, DataType::Int32 | DataType::Int64)
                        | (DataType::Int32, DataType::Int64)
                        | (DataType::Float32, DataType::Float64)
                ))
    };
    from.fields().iter().all(|f| {
        to.field_with_name(f.name()).is_ok_and(|t| {
            widens(f.data_type(), t.data_type()) && (t.is_nullable() || !f.is_nullable())
        })
    }) && to
        .fields()
        .iter()
        .all(|t| t.is_nullable() || from.field_with_name(t.name()).is_ok())
}

/// A batch of rows in schema `to` (which [`converts`] accepted).
fn convert(batch: &RecordBatch, to: &SchemaRef) -> Result<RecordBatch, ParquetError> {
    let rows = batch.num_rows();
    let columns = to
        .fields()
        .iter()
        .map(|t| match batch.column_by_name(t.name()) {
            Some(c) if c.data_type() == t.data_type() => Ok(c.clone()),
            Some(c) => arrow_cast::cast(c, t.data_type()).map_err(ParquetError::from),
            None => Ok(new_null_array(t.data_type(), rows)),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(to.clone(), columns)?)
}

/// Writes one output: `run`'s inputs, fetched one at a time by `fetch`, into `sink`. Inputs of
/// the target's schema are copied; the others are encoded again with `reencode` (the table's
/// writer properties: compression, statistics, bloom filters). Returns the sink, finished.
pub(super) fn write_run<W: Write + Send>(
    inputs: &[Input],
    run: &Run,
    fetch: &mut dyn FnMut(usize) -> Result<Bytes, JoinError>,
    sink: W,
    reencode: &WriterProperties,
    output: &str,
) -> Result<W, JoinError> {
    let target = &inputs[run.target];
    let meta = target.meta.file_metadata();
    let schema = meta.schema_descr().root_schema_ptr();
    // (Copied chunks keep their own encoding; only encoded ones use the table's properties.)
    let props = reencode
        .clone()
        .into_builder()
        .set_created_by(meta.created_by().unwrap_or("lakesink").to_string())
        .set_key_value_metadata(meta.key_value_metadata().cloned());
    let mut writer = SerializedFileWriter::new(sink, schema.clone(), Arc::new(props.build()))
        .map_err(failed(output, "starting the compacted file"))?;
    let mut factory: Option<(ArrowRowGroupWriterFactory, SchemaRef)> = None;
    for i in run.inputs.clone() {
        let key = &inputs[i].key;
        let bytes = fetch(i)?;
        if inputs[i].root() == schema {
            copy(&mut writer, key, &bytes)?;
        } else {
            if factory.is_none() {
                let arrow = Arc::new(target.arrow()?);
                factory = Some((
                    ArrowRowGroupWriterFactory::new(&writer, arrow.clone()),
                    arrow,
                ));
            }
            let (factory, arrow) = factory.as_ref().expect("set above");
            encode(&mut writer, factory, arrow, key, bytes)?;
        }
    }
    writer
        .into_inner()
        .map_err(failed(output, "finishing the compacted file"))
}

/// An input's row groups, column chunks copied as bytes.
fn copy<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    key: &str,
    bytes: &Bytes,
) -> Result<(), JoinError> {
    let reader = open(key, bytes)?;
    let m = reader.metadata();
    for rg in 0..m.num_row_groups() {
        let rg_meta = m.row_group(rg);
        let rg_reader = reader
            .get_row_group(rg)
            .map_err(failed(key, format!("row group {rg}")))?;
        let page_index = m.page_index_for_row_group(rg);
        let mut w = writer
            .next_row_group()
            .map_err(failed(key, format!("row group {rg}")))?;
        for (col, chunk) in rg_meta.columns().iter().enumerate() {
            let close = ColumnCloseResult {
                bytes_written: chunk.compressed_size() as u64,
                rows_written: rg_meta.num_rows() as u64,
                metadata: chunk.clone(),
                bloom_filter: rg_reader.get_column_bloom_filter(col).cloned(),
                column_index: page_index.column_index(col).cloned(),
                offset_index: page_index.offset_index(col).cloned(),
            };
            w.append_column(bytes, close)
                .map_err(failed(key, format!("row group {rg}, column {col}")))?;
        }
        w.close().map_err(failed(key, format!("row group {rg}")))?;
    }
    Ok(())
}

/// An input of another schema: each row group decoded, converted to the output's schema and
/// encoded as a row group of the output.
fn encode<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    factory: &ArrowRowGroupWriterFactory,
    arrow: &SchemaRef,
    key: &str,
    bytes: Bytes,
) -> Result<(), JoinError> {
    let meta = ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new())
        .map_err(failed(key, "not a Parquet file"))?;
    for rg in 0..meta.metadata().num_row_groups() {
        let step = || format!("row group {rg}, encoded again in the compacted file's schema");
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(bytes.clone(), meta.clone())
                .with_row_groups(vec![rg])
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(failed(key, step()))?;
        let index = writer.flushed_row_groups().len();
        let mut columns = factory
            .create_column_writers(index)
            .map_err(failed(key, step()))?;
        for batch in reader {
            let batch = batch.map_err(|e| JoinError::new(key, step(), e.into()))?;
            let batch = convert(&batch, arrow).map_err(failed(key, step()))?;
            let mut w = columns.iter_mut();
            for (field, column) in arrow.fields().iter().zip(batch.columns()) {
                for leaf in compute_leaves(field, column).map_err(failed(key, step()))? {
                    w.next()
                        .expect("a writer per leaf")
                        .write(&leaf)
                        .map_err(failed(key, step()))?;
                }
            }
        }
        let mut group = writer.next_row_group().map_err(failed(key, step()))?;
        for c in columns {
            c.close()
                .and_then(|chunk| chunk.append_to_row_group(&mut group))
                .map_err(failed(key, step()))?;
        }
        group.close().map_err(failed(key, step()))?;
    }
    Ok(())
}
