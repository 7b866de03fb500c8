//! Parquet files concatenated without decoding: every row group of every input becomes a row
//! group of the output, its column chunks copied as bytes with their statistics, page indexes
//! and bloom filters (parquet's `append_column`). The inputs must share the first one's schema.

use std::sync::Arc;

use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::properties::{ReaderProperties, WriterProperties};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;

/// Whether two Parquet files have the same schema (their footers').
pub(super) fn same_schema(a: &Bytes, b: &Bytes) -> bool {
    let schema = |bytes: &Bytes| {
        SerializedFileReader::new(bytes.clone()).ok().map(|r| {
            r.metadata()
                .file_metadata()
                .schema_descr()
                .root_schema_ptr()
        })
    };
    matches!((schema(a), schema(b)), (Some(x), Some(y)) if x == y)
}

/// The inputs' row groups, in order, in one Parquet file (held in memory: at most the
/// compaction's `target_size`). Refuses inputs whose schema differs from the first's.
pub(super) fn concat(inputs: &[(String, Bytes)]) -> Result<Vec<u8>, String> {
    let open = |key: &str, bytes: &Bytes| {
        let options = ReadOptionsBuilder::new()
            .with_page_index()
            .with_reader_properties(
                ReaderProperties::builder()
                    .set_read_bloom_filter(true)
                    .build(),
            )
            .build();
        SerializedFileReader::new_with_options(bytes.clone(), options)
            .map_err(|e| format!("{key}: not a Parquet file: {e}"))
    };
    let (first_key, first) = inputs.first().ok_or("nothing to concatenate")?;
    let first = open(first_key, first)?;
    let meta = first.metadata().file_metadata();
    let schema = meta.schema_descr().root_schema_ptr();
    let mut props = WriterProperties::builder();
    if let Some(kv) = meta.key_value_metadata() {
        props = props.set_key_value_metadata(Some(kv.clone()));
    }
    if let Some(created_by) = Some(meta.created_by().unwrap_or("lakesink").to_string()) {
        props = props.set_created_by(created_by);
    }
    let mut out = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut out, schema.clone(), Arc::new(props.build()))
        .map_err(|e| format!("starting the compacted file: {e}"))?;
    for (key, bytes) in inputs {
        let reader = open(key, bytes)?;
        let m = reader.metadata();
        if m.file_metadata().schema_descr().root_schema() != schema.as_ref() {
            return Err(format!(
                "{key}: its schema differs from {first_key}'s (files of another schema are not compacted together)"
            ));
        }
        for rg in 0..m.num_row_groups() {
            let rg_meta = m.row_group(rg);
            let rg_reader = reader
                .get_row_group(rg)
                .map_err(|e| format!("{key}: row group {rg}: {e}"))?;
            let page_index = m.page_index_for_row_group(rg);
            let mut w = writer
                .next_row_group()
                .map_err(|e| format!("{key}: row group {rg}: {e}"))?;
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
                    .map_err(|e| format!("{key}: row group {rg}, column {col}: {e}"))?;
            }
            w.close()
                .map_err(|e| format!("{key}: row group {rg}: {e}"))?;
        }
    }
    writer
        .close()
        .map_err(|e| format!("finishing the compacted file: {e}"))?;
    Ok(out)
}
