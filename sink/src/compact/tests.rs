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
