use std::io::Write;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::*;
use crate::catalog::memory::MemoryCatalog;
use crate::catalog::NewPartition;
use crate::claim::ClaimedFile;
use crate::commit::Tp;
use crate::watermark::CommittedFile;

const HOUR: i64 = 3_600_000_000;
/// 2024-01-02T00:00:00Z.
const DAY: i64 = 1_704_153_600_000_000;
const PATH: &str = "date=2024-01-02/hour=01";

fn plan(grace: &str) -> Plan {
    Plan::from_toml(
        &format!(
            r#"[kafka]
brokers = "localhost:9092"
group_id = "g"
[storage]
url = "memory:///lake"
[catalog]
kind = "hive"
uri = "thrift://localhost:9083"
database = "lake"
[[tables]]
name = "ct"
topics = ["t"]
seal = true
[tables.compact]
min_files = 3
target_size = "200B"
grace = "{grace}"
"#
        ),
        "t.toml",
    )
    .unwrap()
}

fn gz(n: u64, seed: u64) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..n {
        writeln!(
            gz,
            "{{\"i\":{i},\"seed\":{seed},\"pad\":\"{}\"}}",
            "x".repeat(40)
        )
        .unwrap();
    }
    gz.finish().unwrap()
}

struct Lake {
    lake: crate::storage::Lake,
    catalog: MemoryCatalog,
    plan: Plan,
}

impl Lake {
    async fn new(grace: &str) -> Lake {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let lake = crate::storage::Lake {
            store,
            root: Path::from("lake"),
            url: "memory:///lake".into(),
        };
        let plan = plan(grace);
        let catalog = MemoryCatalog::default();
        let mut ct = crate::catalog::tables(&plan, &lake.url)[0].clone();
        ct.create = true;
        catalog.load(&ct).await.unwrap();
        let p = NewPartition {
            table: "ct".into(),
            path: PATH.into(),
            location: String::new(),
            files: Vec::new(),
        };
        catalog.register(&ct, &[&p]).await.unwrap();
        Lake {
            lake,
            catalog,
            plan,
        }
    }

    fn sealer(&self) -> Sealer {
        Sealer::new(
            &self.plan,
            self.lake.store.clone(),
            "lake",
            Arc::new(self.catalog.clone()),
            crate::catalog::tables(&self.plan, &self.lake.url),
            Arc::new(crate::metrics::Metrics::default()),
        )
    }

    fn compactor(&self) -> Compactor {
        Compactor::new(
            &self.plan,
            &self.lake,
            Arc::new(self.catalog.clone()),
            Arc::new(crate::metrics::Metrics::default()),
        )
    }

    /// Lands a file of `n` records at offset `start` in hour 01 and seals it.
    async fn land(&self, start: i64, n: u64) -> String {
        self.land_in(&format!("lake/ct/{PATH}"), start, n).await
    }

    /// [`Lake::land`] into directory `dir` (a compaction's, for a late file).
    async fn land_in(&self, dir: &str, start: i64, n: u64) -> String {
        let key = format!("{dir}/t+0+{start:020}.json.gz");
        let body = gz(n, start as u64);
        self.lake
            .store
            .put(&Path::from(key.as_str()), PutPayload::from(body.clone()))
            .await
            .unwrap();
        let mut s = self.sealer();
        s.committed(vec![CommittedFile {
            tp: Tp::new("t", 0),
            generation: 0,
            start,
            end: start + n as i64,
            file: ClaimedFile {
                key: key.clone(),
                table: Some("ct".into()),
                path: Some(PATH.into()),
                records: n,
                bytes: body.len() as u64,
                crc32: crc32fast::hash(&body),
                min_event_micros: Some(DAY + HOUR),
                max_event_micros: Some(DAY + HOUR + 1),
            },
        }]);
        s.seal_due(&[("ct".into(), Some(DAY + 5 * HOUR))])
            .await
            .unwrap();
        key
    }

    async fn exists(&self, key: &str) -> bool {
        self.lake.store.head(&Path::from(key)).await.is_ok()
    }

    async fn lines(&self, key: &str) -> Vec<String> {
        let bytes = self
            .lake
            .store
            .get(&Path::from(key))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(&bytes[..]),
            &mut text,
        )
        .unwrap();
        text.lines().map(str::to_string).collect()
    }
}

#[tokio::test]
async fn a_sealed_partition_is_compacted_switched_resealed_and_cleaned_up() {
    let l = Lake::new("0s").await;
    let mut old = Vec::new();
    let mut lines = Vec::new();
    for (i, start) in [0i64, 10, 20, 30, 40].into_iter().enumerate() {
        let key = l.land(start, 10 + i as u64).await;
        lines.extend(l.lines(&key).await);
        old.push(key);
    }
    let c = l.compactor();
    // Dry run: nothing changes.
    // A window that ends before the hour, or starts after it: nothing.
    let at = |s: &str| Some(crate::verify::parse_time(s).unwrap());
    for (from, to) in [(None, at("2024-01-02T01")), (at("2024-01-02T02"), None)] {
        let none = c
            .run(&Options {
                from,
                to,
                dry_run: true,
                ..Options::default()
            })
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
    }
    let would = c
        .run(&Options {
            from: at("2024-01-02T01"),
            to: at("2024-01-02T02"),
            dry_run: true,
            ..Options::default()
        })
        .await
        .unwrap();
    assert_eq!(would.len(), 1);
    assert_eq!(would[0].action, "would compact");
    assert!(l.catalog.locations().is_empty());

    let done = c.run(&Options::default()).await.unwrap();
    let actions: Vec<&str> = done.iter().map(|d| d.action).collect();
    assert_eq!(actions, ["compacted", "deleted"], "{done:?}");
    let sealer = l.sealer();
    let m = sealer.newest("ct", PATH).await.unwrap().unwrap();
    let dir = m.location.clone().expect("a compaction's directory");
    assert!(dir.starts_with(&format!("ct/{PATH}/_c000001-")), "{dir}");
    assert_eq!(m.generation, 6, "five seals, then the compaction's");
    assert_eq!(m.records, 10 + 11 + 12 + 13 + 14);
    assert!(
        m.files.len() >= 2 && m.files.len() < 5,
        "target_size 200 B: {:?}",
        m.files
    );
    // Every record once, in the compacted files (multi-member gzip), in key order.
    let mut after = Vec::new();
    for f in &m.files {
        assert!(f.key.starts_with(&format!("lake/{dir}/part-")));
        after.extend(l.lines(&f.key).await);
        let bytes = l
            .lake
            .store
            .get(&Path::from(f.key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(crc32fast::hash(&bytes), f.crc32);
    }
    assert_eq!(after, lines);
    let offsets: Vec<i64> = m
        .files
        .iter()
        .flat_map(|f| f.offsets.iter().map(|o| o.start))
        .collect();
    assert_eq!(offsets, [0, 10, 20, 30, 40]);
    // The catalog points at the new directory; the old files and the old copy are gone.
    let loc = l.catalog.locations();
    assert_eq!(
        loc.values().next().unwrap(),
        &format!("memory:///lake/{dir}/")
    );
    for k in &old {
        assert!(!l.exists(k).await, "{k} deleted after grace 0");
    }
    assert!(!l.exists(&format!("lake/ct/{PATH}/{MANIFEST}")).await);
    assert!(l.exists(&format!("lake/{dir}/{MANIFEST}")).await);
    assert!(l.exists(&format!("lake/{dir}/{SUCCESS}")).await);
    // Another pass: nothing to do.
    assert!(c.run(&Options::default()).await.unwrap().is_empty());

    // A late file in the compaction's directory (where the writer puts one once the partition
    // is compacted) is where the catalog points: sealed there, and left alone while fewer
    // than `min_files` (3) such files have come.
    let inside = l.land_in(&format!("lake/{dir}"), 60, 2).await;
    let m = sealer.newest("ct", PATH).await.unwrap().unwrap();
    assert!(m.lists(&inside));
    assert_eq!(m.location.as_deref(), Some(dir.as_str()));
    assert!(c.run(&Options::default()).await.unwrap().is_empty());
    assert!(l.exists(&inside).await);

    // A late file lands in the old directory and is sealed: the next pass compacts again,
    // the compacted files and the late one together, into a new directory.
    let late = l.land(50, 3).await;
    let m = sealer.newest("ct", PATH).await.unwrap().unwrap();
    assert_eq!(
        m.location.as_deref(),
        Some(dir.as_str()),
        "a late seal keeps the location"
    );
    assert!(m.lists(&late));
    let done = c.run(&Options::default()).await.unwrap();
    assert_eq!(done[0].action, "compacted");
    let m2 = sealer.newest("ct", PATH).await.unwrap().unwrap();
    let dir2 = m2.location.clone().unwrap();
    assert!(dir2.starts_with(&format!("ct/{PATH}/_c000002-")), "{dir2}");
    assert_eq!(m2.records, m.records);
    assert!(!l.exists(&late).await);
    assert_eq!(
        replaced(&l.lake.store, "lake", "ct", PATH)
            .await
            .unwrap()
            .len(),
        5 + m.files.len()
    );
    // The sealer never lists a replaced file again (a replay that rewrote one).
    let mut s = l.sealer();
    let again = l.land(0, 10).await;
    assert_eq!(again, old[0]);
    s.seal_due(&[("ct".into(), Some(DAY + 5 * HOUR))])
        .await
        .unwrap();
    let m3 = sealer.newest("ct", PATH).await.unwrap().unwrap();
    assert!(!m3.lists(&again), "{m3:?}");
}

#[tokio::test]
async fn a_compaction_a_crash_interrupted_is_finished_and_grace_keeps_the_old_files() {
    let l = Lake::new("1h").await;
    for start in [0, 10, 20] {
        l.land(start, 5).await;
    }
    let c = l.compactor();
    let done = c.run(&Options::default()).await.unwrap();
    assert_eq!(
        done.len(),
        1,
        "compacted; grace 1h keeps the old files: {done:?}"
    );
    let m = l.sealer().newest("ct", PATH).await.unwrap().unwrap();
    // Undo the switch as a crash after the record would have left it: the catalog and the
    // seal still at the old files.
    let records = records(&l.lake.store, "lake", "ct", PATH).await.unwrap();
    assert_eq!(records.len(), 1);
    let before: Vec<ManifestFile> = records[0]
        .replaced
        .iter()
        .map(|k| ManifestFile {
            key: k.clone(),
            records: 5,
            bytes: 1,
            crc32: 0,
            min_event_time: None,
            max_event_time: None,
            offsets: Vec::new(),
        })
        .collect();
    let stale = m.with_files(None, before);
    assert!(l.sealer().create(&stale).await.unwrap());
    let done = c.run(&Options::default()).await.unwrap();
    assert_eq!(done[0].action, "finished", "{done:?}");
    let m = l.sealer().newest("ct", PATH).await.unwrap().unwrap();
    assert_eq!(m.location.as_deref(), Some(records[0].location.as_str()));
    assert!(m.files.iter().all(|f| f.key.contains("/_c000001-")));
    // Within grace: the replaced files stay.
    for k in &records[0].replaced {
        assert!(l.exists(k).await);
    }
}

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

#[tokio::test]
async fn the_daemon_s_passes_visit_the_partitions_sealed_since_and_those_waiting_for_their_grace() {
    use std::collections::BTreeSet;
    let l = Lake::new("1h").await;
    let mut originals = Vec::new();
    for start in [0i64, 10, 20] {
        originals.push(l.land(start, 5).await);
    }
    let c = l.compactor();
    let actions = |done: Vec<Done>| done.iter().map(|d| d.action).collect::<Vec<_>>();
    // Sealed but not reported sealed: a pass over what was sealed since does not look.
    assert!(c.run_sealed(&BTreeSet::new()).await.unwrap().is_empty());
    let reported = BTreeSet::from([("ct".to_string(), PATH.to_string())]);
    assert_eq!(
        actions(c.run_sealed(&reported).await.unwrap()),
        ["compacted"]
    );
    // Its grace (1 h) has not passed: visited again, nothing to do yet.
    assert!(c.run_sealed(&BTreeSet::new()).await.unwrap().is_empty());
    // A late file in the old directory: compacted again within the first one's grace.
    let late = l.land(50, 3).await;
    assert_eq!(
        actions(c.run_sealed(&reported).await.unwrap()),
        ["compacted"]
    );
    let first = sealer_files(&l, 1).await;
    // Both graces pass: a pass over nothing sealed deletes what each compaction replaced.
    for number in [1, 2] {
        let key = Path::from(format!("lake/{COMPACTIONS_DIR}/ct/{PATH}/{number:06}.json"));
        let bytes = l.lake.store.get(&key).await.unwrap().bytes().await.unwrap();
        let mut r: Compaction = serde_json::from_slice(&bytes).unwrap();
        r.delete_after = "2000-01-01T00:00:00Z".into();
        l.lake
            .store
            .put(&key, PutPayload::from(serde_json::to_vec(&r).unwrap()))
            .await
            .unwrap();
    }
    assert_eq!(
        actions(c.run_sealed(&BTreeSet::new()).await.unwrap()),
        ["deleted", "deleted"]
    );
    for k in originals.iter().chain([&late]).chain(first.iter()) {
        assert!(!l.exists(k).await, "{k} deleted");
    }
    assert!(c.run_sealed(&BTreeSet::new()).await.unwrap().is_empty());
    assert!(c.waiting.lock().unwrap().is_empty());
}

/// The files compaction `number` of the test partition wrote.
async fn sealer_files(l: &Lake, number: u32) -> Vec<String> {
    records(&l.lake.store, "lake", "ct", PATH).await.unwrap()[number as usize - 1]
        .files
        .iter()
        .map(|f| f.key.clone())
        .collect()
}

#[tokio::test]
async fn a_partition_another_compactor_holds_is_left_to_it_until_its_lease_is_stale() {
    let l = Lake::new("0s").await;
    for start in [0i64, 10, 20] {
        l.land(start, 5).await;
    }
    // Another compactor took compaction 1's lease and is writing.
    let taken = lease::take(&l.lake.store, "lake", "ct", PATH, 1, lease::LEASE)
        .await
        .unwrap();
    assert_eq!(taken, lease::Lease::Taken);
    let c = l.compactor();
    assert!(c.run(&Options::default()).await.unwrap().is_empty());
    assert!(l.catalog.locations().is_empty(), "nothing switched");
    assert!(
        c.waiting
            .lock()
            .unwrap()
            .contains(&("ct".to_string(), PATH.to_string())),
        "looked at again at the next pass"
    );
    // Its holder stopped before recording: once the lease is older than its time, this one
    // compacts, and gives the lease back.
    let mut c = l.compactor();
    c.lease = std::time::Duration::ZERO;
    let done = c.run(&Options::default()).await.unwrap();
    let actions: Vec<&str> = done.iter().map(|d| d.action).collect();
    assert_eq!(actions, ["compacted", "deleted"]);
    let lease = format!("lake/{COMPACTIONS_DIR}/ct/{PATH}/000001.lease");
    assert!(!l.exists(&lease).await, "the lease is given back");
}
