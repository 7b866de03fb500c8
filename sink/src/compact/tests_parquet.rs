//! Tests of the Parquet join: row groups copied with their statistics and bloom filters, an
//! older schema encoded again into the newer one, schemas that do not convert kept apart.

use super::*;

#[test]
fn parquet_files_are_joined_row_group_by_row_group_with_statistics_and_bloom_filters() {
    use crate::encode::{Encoder, ParquetEncoder};
    use ::parquet::file::reader::FileReader;
    use ::parquet::file::serialized_reader::SerializedFileReader;
    let plan = Plan::from_toml(
        r#"[kafka]
brokers = "localhost:9092"
group_id = "g"
[storage]
url = "memory:///lake"
[[tables]]
name = "pq"
topics = ["t"]
format = "parquet"
schema = { file = "cloudtrail.avsc" }
timestamp = { field = "eventTime" }
[tables.parquet]
row_group_rows = 50
bloom_filters = ["eventID"]
"#,
        "t.toml",
    )
    .unwrap();
    let pq = plan.tables[0].parquet.clone().expect("a Parquet plan");
    let cfg = crate::generator::GenConfig::default();
    let mut inputs = Vec::new();
    let mut ids = Vec::new();
    let mut groups_in = 0;
    for file in 0..3u64 {
        let mut enc: Box<dyn Encoder> = Box::new(ParquetEncoder::new(pq.clone()));
        let mut rejected = Vec::new();
        let mut text = String::new();
        for seq in file * 120..(file + 1) * 120 {
            crate::generator::event(&cfg, seq, 360, &mut text);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            ids.push(v["eventID"].as_str().unwrap().to_string());
            enc.append(text.as_bytes()).unwrap();
            if seq % 40 == 39 {
                enc.settle(&mut rejected).unwrap();
            }
        }
        let bytes = bytes::Bytes::from(enc.finish().unwrap());
        groups_in += SerializedFileReader::new(bytes.clone())
            .unwrap()
            .metadata()
            .num_row_groups();
        inputs.push((format!("f{file}.parquet"), bytes));
    }
    let mut joined = join(&inputs, &Default::default());
    assert_eq!(joined.len(), 1, "one schema, one file");
    assert_eq!(joined[0].0, 0..3);
    let joined = joined.remove(0).1;
    // Read back as compaction reads its inputs: with page indexes and bloom filters.
    let r = parquet::open("joined.parquet", &joined).unwrap();
    let m = r.metadata();
    assert_eq!(m.file_metadata().num_rows(), 360);
    assert_eq!(
        m.num_row_groups(),
        groups_in,
        "row groups copied, not rewritten"
    );
    let col = m
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == "eventID")
        .unwrap();
    let mut seen = 0;
    for rg in 0..m.num_row_groups() {
        let chunk = m.row_group(rg).column(col);
        assert!(chunk.statistics().is_some(), "statistics survive");
        let reader = r.get_row_group(rg).unwrap();
        let bloom = reader
            .get_column_bloom_filter(col)
            .expect("the bloom filter survives");
        let rows = m.row_group(rg).num_rows() as usize;
        for id in &ids[seen..seen + rows] {
            assert!(bloom.check(&id.as_str()), "{id} in row group {rg}'s filter");
        }
        seen += rows;
    }
    assert_eq!(seen, 360);
}

/// Parquet files joined as `compact::stream` joins them: footers, runs, then each output
/// written with its inputs fetched one at a time.
fn join(
    files: &[(String, bytes::Bytes)],
    reencode: &::parquet::file::properties::WriterProperties,
) -> Vec<(std::ops::Range<usize>, bytes::Bytes)> {
    let inputs: Vec<parquet::Input> = files
        .iter()
        .map(|(key, b)| {
            let len = parquet::footer_len(key, &b[b.len() - 8..]).unwrap();
            parquet::Input {
                key: key.clone(),
                meta: parquet::footer(key, &b[b.len() - 8 - len..b.len() - 8]).unwrap(),
            }
        })
        .collect();
    let mut fetched = Vec::new();
    let out = parquet::runs(&inputs)
        .unwrap()
        .into_iter()
        .map(|run| {
            let mut fetch = |i: usize| {
                fetched.push(i);
                Ok(files[i].1.clone())
            };
            let bytes =
                parquet::write_run(&inputs, &run, &mut fetch, Vec::new(), reencode, "out").unwrap();
            (run.inputs, bytes::Bytes::from(bytes))
        })
        .collect();
    assert_eq!(
        fetched,
        (0..files.len()).collect::<Vec<_>>(),
        "each input read once, in order"
    );
    out
}

/// A Parquet file of `rows` rows `id-{file}-{i}` in `schema` (`id` Utf8, `n` Int32 or Int64,
/// and any other field null), in row groups of 40.
fn pq_file(schema: &arrow_schema::SchemaRef, file: usize, rows: usize) -> bytes::Bytes {
    use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
    use arrow_schema::DataType;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match (f.name().as_str(), f.data_type()) {
                ("id", _) => std::sync::Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("id-{file}-{i}")),
                )),
                ("n", DataType::Int32) => {
                    std::sync::Arc::new(Int32Array::from_iter_values(0..rows as i32))
                }
                ("n", DataType::Int64) => {
                    std::sync::Arc::new(Int64Array::from_iter_values(0..rows as i64))
                }
                (_, t) => arrow_array::new_null_array(t, rows),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let props = ::parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(40))
        .set_bloom_filter_enabled(true)
        .build();
    let mut out = Vec::new();
    let mut w =
        ::parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    bytes::Bytes::from(out)
}

#[test]
fn a_file_of_an_older_schema_is_encoded_again_in_the_newer_schema_beside_copied_row_groups() {
    use ::parquet::file::reader::FileReader;
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let old = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Int32, true),
    ]));
    // The registry's next version: `n` widened, a field added (optional).
    let new = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Int64, true),
        Field::new("region", DataType::Utf8, true),
    ]));
    let files = vec![
        ("f0.parquet".to_string(), pq_file(&old, 0, 100)),
        ("f1.parquet".to_string(), pq_file(&new, 1, 70)),
        ("f2.parquet".to_string(), pq_file(&old, 2, 30)),
    ];
    let props = ::parquet::file::properties::WriterProperties::builder()
        .set_compression(::parquet::basic::Compression::ZSTD(Default::default()))
        .set_column_bloom_filter_enabled("id".into(), true)
        .build();
    let mut joined = join(&files, &props);
    assert_eq!(
        joined.len(),
        1,
        "the older schema converts into the newer: one file"
    );
    assert_eq!(joined[0].0, 0..3);
    let bytes = joined.remove(0).1;
    let r = parquet::open("out", &bytes).unwrap();
    let m = r.metadata();
    let f1 = parquet::open("f1", &files[1].1).unwrap();
    assert_eq!(
        m.file_metadata().schema_descr().root_schema(),
        f1.metadata().file_metadata().schema_descr().root_schema(),
        "the newer file's schema"
    );
    // 3 + 2 + 1 row groups, the newer file's copied byte for byte.
    assert_eq!(m.num_row_groups(), 6);
    for rg in 0..2 {
        assert_eq!(
            m.row_group(3 + rg).compressed_size(),
            f1.metadata().row_group(rg).compressed_size()
        );
    }
    let mut seen = Vec::new();
    let reader =
        ::parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes.clone(), 1000)
            .unwrap();
    for batch in reader {
        let batch = batch.unwrap();
        assert_eq!(batch.schema().fields(), new.fields());
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        let ns = batch
            .column(1)
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        for i in 0..batch.num_rows() {
            seen.push((ids.value(i).to_string(), ns.value(i)));
        }
        assert_eq!(batch.column(2).null_count(), batch.num_rows());
    }
    let expected: Vec<(String, i64)> = [(0, 100), (1, 70), (2, 30)]
        .iter()
        .flat_map(|&(f, rows)| (0..rows).map(move |i| (format!("id-{f}-{i}"), i as i64)))
        .collect();
    assert_eq!(seen, expected, "every row once, in order");
    // Encoded row groups get the table's statistics and bloom filters.
    for rg in 0..m.num_row_groups() {
        assert!(m.row_group(rg).column(0).statistics().is_some());
        let bloom = r
            .get_row_group(rg)
            .unwrap()
            .get_column_bloom_filter(0)
            .cloned();
        let bloom = bloom.expect("a bloom filter on id");
        let first = (0..rg)
            .map(|g| m.row_group(g).num_rows() as usize)
            .sum::<usize>();
        assert!(bloom.check(&expected[first].0.as_str()));
    }
}

#[test]
fn files_whose_schemas_do_not_convert_are_joined_per_run_of_one_schema() {
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let a = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
    // `n` narrowed from Int64 to Int32 one way, a required field added the other.
    let b = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("n", DataType::Int64, false),
    ]));
    let files = vec![
        ("f0.parquet".to_string(), pq_file(&a, 0, 10)),
        ("f1.parquet".to_string(), pq_file(&a, 1, 10)),
        ("f2.parquet".to_string(), pq_file(&b, 2, 10)),
        ("f3.parquet".to_string(), pq_file(&a, 3, 10)),
    ];
    let joined = join(&files, &Default::default());
    let runs: Vec<_> = joined.iter().map(|(r, _)| r.clone()).collect();
    assert_eq!(runs, vec![0..2, 2..3, 3..4]);
}
