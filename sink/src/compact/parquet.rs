//! Parquet files concatenated without decoding: every row group of every input becomes a row
//! group of the output, its column chunks copied as bytes with their statistics, page indexes
//! and bloom filters (parquet's `append_column`). The inputs must share the first one's schema.

use std::sync::Arc;

use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::properties::{ReaderProperties, WriterProperties};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;

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

fn failed(key: &str, step: impl Into<String>) -> impl FnOnce(ParquetError) -> JoinError + '_ {
    let step = step.into();
    move |source| JoinError {
        key: key.to_string(),
        step,
        source,
    }
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

/// A joined file: the range of the inputs it holds, and its bytes.
pub(super) type Joined = (std::ops::Range<usize>, Vec<u8>);

/// The inputs joined, in order, into one file per run of inputs of one schema (held in memory:
/// the compaction's group). `output` names the file being written in errors.
pub(super) fn join(inputs: &[(String, Bytes)], output: &str) -> Result<Vec<Joined>, JoinError> {
    let readers = inputs
        .iter()
        .map(|(key, bytes)| open(key, bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = |r: &SerializedFileReader<Bytes>| {
        r.metadata()
            .file_metadata()
            .schema_descr()
            .root_schema_ptr()
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < readers.len() {
        let first = schema(&readers[i]);
        let mut j = i + 1;
        while j < readers.len() && schema(&readers[j]) == first {
            j += 1;
        }
        out.push((i..j, concat(&inputs[i..j], &readers[i..j], output)?));
        i = j;
    }
    Ok(out)
}

/// The row groups of `readers` (all of one schema), in order, in one Parquet file.
fn concat(
    inputs: &[(String, Bytes)],
    readers: &[SerializedFileReader<Bytes>],
    output: &str,
) -> Result<Vec<u8>, JoinError> {
    let first = readers.first().expect("a run holds one input at least");
    let meta = first.metadata().file_metadata();
    let schema = meta.schema_descr().root_schema_ptr();
    let mut props = WriterProperties::builder()
        .set_created_by(meta.created_by().unwrap_or("lakesink").to_string());
    if let Some(kv) = meta.key_value_metadata() {
        props = props.set_key_value_metadata(Some(kv.clone()));
    }
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema, Arc::new(props.build()))
        .map_err(failed(output, "starting the compacted file"))?;
    for ((key, bytes), reader) in inputs.iter().zip(readers) {
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
    }
    writer
        .close()
        .map_err(failed(output, "finishing the compacted file"))?;
    Ok(out)
}
