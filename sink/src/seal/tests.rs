use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::*;
use crate::catalog::memory::MemoryCatalog;
use crate::catalog::NewPartition;
use crate::claim::ClaimedFile;
use crate::commit::Tp;

const HOUR: i64 = 3_600_000_000;
/// 2024-01-02T00:00:00Z.
const DAY: i64 = 1_704_153_600_000_000;

fn plan() -> Plan {
    Plan::from_toml(
        r#"[kafka]
brokers = "localhost:9092"
group_id = "g"
[storage]
url = "memory:///"
[catalog]
kind = "none"
[[tables]]
name = "ct"
topics = ["t"]
seal = true
[[tables]]
name = "other"
topics = ["t"]
"#,
        "t.toml",
    )
    .unwrap()
}

/// A committed file of `ct` in hour `h` of 2024-01-02, from segment `[start, start + 10)`.
fn file(h: i64, start: i64) -> CommittedFile {
    CommittedFile {
        tp: Tp::new("t", 0),
        generation: 0,
        start,
        end: start + 10,
        file: ClaimedFile {
            key: format!("ct/date=2024-01-02/hour={h:02}/t+0+{start:020}.json.gz"),
            table: Some("ct".into()),
            path: Some(format!("date=2024-01-02/hour={h:02}")),
            records: 10,
            bytes: 100,
            crc32: 7,
            min_event_micros: Some(DAY + h * HOUR),
            max_event_micros: Some(DAY + h * HOUR + 1),
        },
    }
}

struct Lake {
    store: Arc<dyn ObjectStore>,
    catalog: MemoryCatalog,
}

impl Lake {
    fn new() -> Lake {
        Lake {
            store: Arc::new(InMemory::new()),
            catalog: MemoryCatalog::default(),
        }
    }

    /// An instance's sealer, its catalog holding the hours 00–05 of `ct`.
    async fn sealer(&self) -> Sealer {
        let plan = plan();
        let tables = crate::catalog::tables(&plan, "memory:///lake");
        let mut ct = tables.iter().find(|t| t.name == "ct").unwrap().clone();
        ct.create = true;
        self.catalog.load(&ct).await.unwrap();
        let parts: Vec<NewPartition> = (0..6)
            .map(|h| NewPartition {
                table: "ct".into(),
                path: format!("date=2024-01-02/hour={h:02}"),
                location: String::new(),
                files: Vec::new(),
            })
            .collect();
        let refs: Vec<&NewPartition> = parts.iter().collect();
        self.catalog.register(&ct, &refs).await.unwrap();
        Sealer::new(
            &plan,
            self.store.clone(),
            "lake",
            Arc::new(self.catalog.clone()),
            vec![ct],
            Arc::new(crate::metrics::Metrics::default()),
        )
    }

    async fn copy(&self, h: i64) -> Option<Manifest> {
        let key = format!("lake/ct/date=2024-01-02/hour={h:02}/{MANIFEST}");
        let got = self.store.get(&Path::from(key)).await.ok()?;
        Some(serde_json::from_slice(&got.bytes().await.unwrap()).unwrap())
    }

    async fn records(&self, h: i64) -> Vec<u32> {
        let dir = Path::from(format!("lake/{SEALS_DIR}/ct/date=2024-01-02/hour={h:02}"));
        let mut gens: Vec<u32> = self
            .store
            .list(Some(&dir))
            .map_ok(|m| {
                m.location
                    .filename()
                    .unwrap()
                    .strip_suffix(".json")
                    .unwrap()
                    .parse::<u32>()
                    .unwrap()
            })
            .try_collect()
            .await
            .unwrap();
        gens.sort_unstable();
        gens
    }
}

fn w(hours_after_day: i64) -> Vec<(String, Option<i64>)> {
    vec![
        ("ct".into(), Some(DAY + hours_after_day * HOUR)),
        ("other".into(), Some(DAY + 100 * HOUR)),
    ]
}

#[tokio::test]
async fn hours_seal_in_order_once_the_watermark_passes_their_end() {
    let lake = Lake::new();
    let mut s = lake.sealer().await;
    s.committed(vec![file(0, 0), file(1, 10), file(0, 20), file(2, 30)]);
    // Files of a table that does not seal are not kept.
    let mut other = file(0, 40);
    other.file.table = Some("other".into());
    s.committed(vec![other]);
    assert_eq!(s.open.len(), 3);

    // The watermark at 00:59: nothing ends below it.
    let w0: Vec<(String, Option<i64>)> = vec![("ct".into(), Some(DAY + HOUR - 1))];
    assert!(s.seal_due(&w0).await.unwrap().is_empty());
    // At 02:00: hours 00 and 01, in that order; hour 02 stays open.
    let sealed = s.seal_due(&w(2)).await.unwrap();
    let paths: Vec<&str> = sealed.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(
        paths,
        ["date=2024-01-02/hour=00", "date=2024-01-02/hour=01"]
    );
    let m = lake.copy(0).await.expect("the manifest copy");
    assert_eq!(m.generation, 1);
    assert_eq!((m.records, m.bytes, m.files.len()), (20, 200, 2));
    assert_eq!(m.files[1].offsets[0].start, 20);
    assert_eq!(m.span_end, "2024-01-02T01:00:00.000000Z");
    assert!(lake
        .store
        .head(&Path::from("lake/ct/date=2024-01-02/hour=00/_SUCCESS"))
        .await
        .is_ok());
    assert_eq!(lake.records(0).await, vec![1]);
    assert!(lake.copy(2).await.is_none());
    let seals = lake.catalog.seals();
    assert_eq!(seals.len(), 2, "{seals:?}");
    assert!(s
        .open
        .contains_key(&("ct".into(), "date=2024-01-02/hour=02".into())));

    // A late file for hour 00 re-seals it: generation 2 lists all three files.
    s.committed(vec![file(0, 50)]);
    let sealed = s.seal_due(&w(2)).await.unwrap();
    assert_eq!(sealed.len(), 1);
    let m = lake.copy(0).await.unwrap();
    assert_eq!((m.generation, m.files.len(), m.records), (2, 3, 30));
    assert_eq!(lake.records(0).await, vec![1, 2]);
    assert_eq!(lake.catalog.seals().values().max(), Some(&2));
}

#[tokio::test]
async fn a_second_instance_or_a_restart_seals_nothing_twice() {
    let lake = Lake::new();
    let mut a = lake.sealer().await;
    let mut b = lake.sealer().await;
    // Both saw the same committed files (as two instances reading the claims do).
    for s in [&mut a, &mut b] {
        s.committed(vec![file(0, 0), file(0, 10)]);
    }
    assert_eq!(a.seal_due(&w(3)).await.unwrap().len(), 1);
    assert!(
        b.seal_due(&w(3)).await.unwrap().is_empty(),
        "already sealed"
    );
    assert_eq!(lake.records(0).await, vec![1]);
    // B saw one more file than A had: it writes the next generation with both.
    b.committed(vec![file(0, 20)]);
    assert_eq!(b.seal_due(&w(3)).await.unwrap().len(), 1);
    assert_eq!(lake.copy(0).await.unwrap().files.len(), 3);

    // A crash after the record, before the copy: the next instance writes the copy (and tells
    // the catalog) without a new generation.
    let mut c = lake.sealer().await;
    c.committed(vec![file(1, 30)]);
    let m = Manifest::next(
        None,
        "ct",
        "date=2024-01-02/hour=01",
        vec![ManifestFile::of(
            &file(1, 30).file,
            Offsets {
                topic: "t".into(),
                partition: 0,
                generation: 0,
                start: 30,
                end: 40,
            },
        )],
        DAY + 2 * HOUR,
        DAY + 3 * HOUR,
    );
    c.put(
        &c.record_key("ct", "date=2024-01-02/hour=01", 1),
        serde_json::to_vec(&m).unwrap(),
        PutMode::Create,
    )
    .await
    .unwrap();
    assert!(lake.copy(1).await.is_none());
    assert!(c.seal_due(&w(3)).await.unwrap().is_empty());
    assert_eq!(lake.copy(1).await.unwrap().generation, 1);
    assert_eq!(lake.records(1).await, vec![1]);
}

#[tokio::test]
async fn a_catalog_that_is_down_leaves_the_partition_open_for_the_next_round() {
    let lake = Lake::new();
    let mut s = lake.sealer().await;
    s.committed(vec![file(0, 0)]);
    lake.catalog.set_down(true);
    assert!(matches!(
        s.seal_due(&w(3)).await,
        Err(SealError::Catalog { .. })
    ));
    assert!(
        lake.copy(0).await.is_none(),
        "no copy before the catalog heard"
    );
    lake.catalog.set_down(false);
    assert!(
        s.seal_due(&w(3)).await.unwrap().is_empty(),
        "the record stands"
    );
    assert_eq!(lake.copy(0).await.unwrap().generation, 1);
    assert_eq!(lake.catalog.seals().len(), 1);
}

#[test]
fn a_compaction_directory_belongs_to_its_partition() {
    use super::compactions::partition_dir;
    assert_eq!(
        partition_dir("lake/ct/date=2024-01-02/hour=01/_c000001-0a1b2c3d"),
        "lake/ct/date=2024-01-02/hour=01"
    );
    assert_eq!(
        partition_dir("lake/ct/date=2024-01-02/hour=01"),
        "lake/ct/date=2024-01-02/hour=01"
    );
    // Only the exact shape: a partition value that merely starts with `_c` is a partition.
    for dir in [
        "ct/v=_c1",
        "ct/_c000001-0a1b2c3",
        "ct/_c00000x-0a1b2c3d",
        "ct/_c000001-0a1b2c3z",
    ] {
        assert_eq!(partition_dir(dir), dir);
    }
}
