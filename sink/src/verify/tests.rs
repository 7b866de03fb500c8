use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::*;
use crate::claim::{Claim, ClaimedFile, Claims};

const TOPIC: &str = "t";

fn gz_lines(n: u64, seed: u64) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..n {
        writeln!(gz, "{{\"i\":{i},\"seed\":{seed}}}").unwrap();
    }
    gz.finish().unwrap()
}

/// A lake of one table with two partitions of three segments each, every object in place.
async fn lake() -> (Arc<dyn ObjectStore>, Vec<Claim>) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let claims = Claims::new(store.clone(), "lake");
    let mut all = Vec::new();
    for partition in 0..2 {
        for (start, end) in [(0, 10), (10, 25), (25, 40)] {
            let key = format!(
                "lake/cloudtrail/date=2024-01-02/hour=0{partition}/{TOPIC}+{partition}+{start:020}.json.gz"
            );
            let body = gz_lines((end - start) as u64, start as u64);
            store
                .put(&Path::from(key.as_str()), PutPayload::from(body.clone()))
                .await
                .unwrap();
            let claim = Claim {
                topic: TOPIC.into(),
                partition,
                start,
                end,
                first_timestamp: Some(1),
                first_crc: Some(2),
                generation: 0,
                records: (end - start) as u64,
                newest_event_micros: Some(1_704_157_200_000_000),
                objects: vec![key.clone()],
                files: vec![ClaimedFile {
                    key,
                    table: Some("cloudtrail".into()),
                    path: Some(format!("date=2024-01-02/hour=0{partition}")),
                    records: (end - start) as u64,
                    bytes: body.len() as u64,
                    crc32: crc32fast::hash(&body),
                    min_event_micros: Some(
                        1_704_157_200_000_000 + partition as i64 * 3_600_000_000,
                    ),
                    max_event_micros: Some(
                        1_704_157_200_000_000 + partition as i64 * 3_600_000_000,
                    ),
                }],
                late_before: Default::default(),
                writer: "test".into(),
            };
            claims
                .claim(&crate::commit::Tp::new(TOPIC, partition), &claim)
                .await
                .unwrap();
            all.push(claim);
        }
    }
    (store, all)
}

async fn run(store: &Arc<dyn ObjectStore>, committed: [i64; 2], options: &Options) -> Report {
    let tables = [Scope {
        name: "cloudtrail".into(),
        topics: vec![TOPIC.into()],
    }];
    let offsets: BTreeMap<(String, i32), Option<i64>> = (0..2)
        .map(|p| ((TOPIC.to_string(), p), Some(committed[p as usize])))
        .collect();
    audit(store, "lake", &tables, async { Ok(offsets) }, options)
        .await
        .unwrap()
}

fn kinds(r: &Report) -> Vec<(Kind, Option<String>)> {
    r.findings
        .iter()
        .map(|f| {
            (
                f.kind,
                f.key
                    .clone()
                    .or_else(|| f.offsets.map(|o| format!("{o:?}"))),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_whole_lake_passes_even_deep() {
    let (store, _) = lake().await;
    let r = run(
        &store,
        [40, 40],
        &Options {
            deep: true,
            ..Options::default()
        },
    )
    .await;
    assert!(r.ok, "{}", r.render());
    assert_eq!(r.checked.claims, 6);
    assert_eq!(r.checked.objects, 6);
    assert_eq!(r.checked.deep_records, 80);
    assert_eq!(r.checked.offsets, 80);
    // A segment claimed past the committed offset is in flight: its object is not required.
    store
        .delete(&Path::from(r_key(0, 25).as_str()))
        .await
        .unwrap();
    let r = run(&store, [25, 40], &Options::default()).await;
    assert!(r.ok, "{}", r.render());
    assert_eq!(r.checked.in_flight, 1);
}

fn r_key(partition: i32, start: i64) -> String {
    format!(
        "lake/cloudtrail/date=2024-01-02/hour=0{partition}/{TOPIC}+{partition}+{start:020}.json.gz"
    )
}

#[tokio::test]
async fn each_planted_fault_is_named() {
    let (store, _) = lake().await;
    // A deleted object, a truncated one, one altered in place (same size), a stray file, a
    // deleted claim, and committed offsets beyond the last claim.
    store
        .delete(&Path::from(r_key(0, 0).as_str()))
        .await
        .unwrap();
    let whole = store
        .get(&Path::from(r_key(0, 10).as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    store
        .put(
            &Path::from(r_key(0, 10).as_str()),
            PutPayload::from(whole[..whole.len() - 7].to_vec()),
        )
        .await
        .unwrap();
    let other = gz_lines(15, 999);
    let mut altered = store
        .get(&Path::from(r_key(1, 10).as_str()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let n = altered.len().min(other.len());
    altered[..n].copy_from_slice(&other[..n]);
    store
        .put(
            &Path::from(r_key(1, 10).as_str()),
            PutPayload::from(altered),
        )
        .await
        .unwrap();
    let stray = "lake/cloudtrail/date=2024-01-02/hour=05/stray.json.gz";
    store
        .put(&Path::from(stray), PutPayload::from(gz_lines(1, 1)))
        .await
        .unwrap();
    // Files the sealing writes are not data: never orphans.
    store
        .put(
            &Path::from("lake/cloudtrail/date=2024-01-02/hour=00/_SUCCESS"),
            PutPayload::from(Vec::new()),
        )
        .await
        .unwrap();
    store
        .delete(&Path::from(
            "lake/_lakesink/segments/t/1/00000000000000000025.json",
        ))
        .await
        .unwrap();

    let shallow = run(&store, [40, 50], &Options::default()).await;
    assert!(!shallow.ok);
    assert_eq!(
        kinds(&shallow),
        vec![
            (Kind::Gap, Some("(Some(25), 50)".into())),
            (Kind::MissingObject, Some(r_key(0, 0))),
            (Kind::SizeMismatch, Some(r_key(0, 10))),
            (Kind::Orphan, Some(r_key(1, 25))),
            (Kind::Orphan, Some(stray.into())),
        ],
        "{}",
        shallow.render()
    );
    let gap = &shallow.findings[0];
    assert_eq!(
        (gap.topic.as_deref(), gap.partition),
        (Some(TOPIC), Some(1))
    );

    let deep = run(
        &store,
        [40, 50],
        &Options {
            deep: true,
            ..Options::default()
        },
    )
    .await;
    let found = kinds(&deep);
    assert!(
        found.contains(&(Kind::ChecksumMismatch, Some(r_key(1, 10)))),
        "{}",
        deep.render()
    );
    assert!(!found
        .iter()
        .any(|(k, key)| *k == Kind::ChecksumMismatch && key.as_deref() != Some(&r_key(1, 10))));
    assert!(deep.render().contains("FAULT checksum_mismatch"));
    // The table's name and offsets are in the report's lines.
    assert!(
        deep.render().contains(&format!(
            "table=cloudtrail topic={TOPIC} partition=0 offsets=0..10 key={}",
            r_key(0, 0)
        )),
        "{}",
        deep.render()
    );
}

#[tokio::test]
async fn a_gap_between_claims_and_a_time_window() {
    let (store, _) = lake().await;
    store
        .delete(&Path::from(
            "lake/_lakesink/segments/t/0/00000000000000000010.json",
        ))
        .await
        .unwrap();
    let r = run(&store, [40, 40], &Options::default()).await;
    let found = kinds(&r);
    assert_eq!(found[0], (Kind::Gap, Some("(Some(10), 25)".into())));
    assert_eq!(found[1], (Kind::Orphan, Some(r_key(0, 10))));
    // A window over 02:00–03:00 (partition 1's objects, in hour=01) sees nothing wrong: partition 0's orphan
    // is in another directory; the offsets are checked whole.
    let window = Options {
        from: Some(parse_time("2024-01-02T02").unwrap()),
        to: Some(parse_time("2024-01-02T03").unwrap()),
        ..Options::default()
    };
    let r = run(&store, [40, 40], &window).await;
    assert_eq!(kinds(&r), vec![(Kind::Gap, Some("(Some(10), 25)".into()))]);
    assert_eq!(r.checked.objects, 3);
}

#[test]
fn records_are_counted_in_every_gzip_member_and_times_parse() {
    let mut two = gz_lines(3, 0);
    two.extend(gz_lines(4, 1));
    assert_eq!(deep::count_records("x.json.gz", &two).unwrap(), 7);
    assert!(deep::count_records("x.json.gz", &two[..two.len() - 3]).is_err());
    assert_eq!(
        parse_time("2024-01-02").unwrap().to_rfc3339(),
        "2024-01-02T00:00:00+00:00"
    );
    assert_eq!(
        parse_time("2024-01-02T03:00:00+01:00")
            .unwrap()
            .to_rfc3339(),
        "2024-01-02T02:00:00+00:00"
    );
    assert!(parse_time("yesterday").is_err());
}

#[tokio::test]
async fn an_object_a_replay_rewrote_with_other_bytes_matches_its_amendment() {
    let (store, all) = lake().await;
    let claims = Claims::new(store.clone(), "lake");
    let tp = crate::commit::Tp::new(TOPIC, 0);
    // The replay of [10, 25) wrote the same 15 records with other bytes (as a Parquet file
    // with other row groups would).
    let key = r_key(0, 10);
    let body = gz_lines(15, 77);
    let mut replay = all
        .iter()
        .find(|c| c.partition == 0 && c.start == 10)
        .unwrap()
        .clone();
    replay.files[0].bytes = body.len() as u64;
    replay.files[0].crc32 = crc32fast::hash(&body);
    store
        .put(&Path::from(key.as_str()), PutPayload::from(body))
        .await
        .unwrap();
    let before = run(
        &store,
        [40, 40],
        &Options {
            deep: true,
            ..Options::default()
        },
    )
    .await;
    assert!(
        !before.ok,
        "without its amendment the object differs from its claim"
    );
    claims
        .amend(&tp, &replay, std::slice::from_ref(&key))
        .await
        .unwrap();
    // Twice, as two replays would: the same amendment.
    claims
        .amend(&tp, &replay, std::slice::from_ref(&key))
        .await
        .unwrap();
    assert_eq!(claims.amendments(&tp, 0).await.unwrap().len(), 1);
    let after = run(
        &store,
        [40, 40],
        &Options {
            deep: true,
            ..Options::default()
        },
    )
    .await;
    assert!(after.ok, "{}", after.render());
    // The amendment is not a claim: the offsets still follow each other.
    assert_eq!(after.checked.claims, 6);
    // Facts that match the claim need no amendment.
    let original = all
        .iter()
        .find(|c| c.partition == 1 && c.start == 0)
        .unwrap();
    claims
        .amend(&crate::commit::Tp::new(TOPIC, 1), original, &[r_key(1, 0)])
        .await
        .unwrap();
    assert!(claims
        .amendments(&crate::commit::Tp::new(TOPIC, 1), 0)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_sealed_partitions_manifest_must_list_exactly_its_directory() {
    use crate::seal::manifest::{Manifest, ManifestFile, Offsets, MANIFEST};
    let (store, all) = lake().await;
    // Partition 0's objects are all in hour=00: seal it with the first two only.
    let files = |n: usize| -> Vec<ManifestFile> {
        all.iter()
            .filter(|c| c.partition == 0)
            .take(n)
            .map(|c| {
                ManifestFile::of(
                    &c.files[0],
                    Offsets {
                        topic: TOPIC.into(),
                        partition: 0,
                        generation: 0,
                        start: c.start,
                        end: c.end,
                    },
                )
            })
            .collect()
    };
    let copy = Path::from(format!(
        "lake/cloudtrail/date=2024-01-02/hour=00/{MANIFEST}"
    ));
    let put = |m: Manifest| {
        let store = store.clone();
        let copy = copy.clone();
        async move {
            store
                .put(&copy, PutPayload::from(serde_json::to_vec(&m).unwrap()))
                .await
                .unwrap();
        }
    };
    let path = "date=2024-01-02/hour=00";
    put(Manifest::next(None, "cloudtrail", path, files(2), 0, 0)).await;
    let r = run(&store, [40, 40], &Options::default()).await;
    assert_eq!(
        kinds(&r),
        vec![(Kind::ManifestMismatch, Some(r_key(0, 25)))],
        "{}",
        r.render()
    );
    // Past the committed offset, its object is in flight: not yet a mismatch.
    assert!(run(&store, [25, 40], &Options::default()).await.ok);
    put(Manifest::next(None, "cloudtrail", path, files(3), 0, 0)).await;
    let r = run(&store, [40, 40], &Options::default()).await;
    assert!(r.ok, "{}", r.render());
    assert_eq!(r.checked.sealed_partitions, 1);
    // An object the manifest lists is deleted: named twice, as a claim's and a manifest's.
    store
        .delete(&Path::from(r_key(0, 0).as_str()))
        .await
        .unwrap();
    let r = run(&store, [40, 40], &Options::default()).await;
    assert_eq!(
        kinds(&r),
        vec![
            (Kind::MissingObject, Some(r_key(0, 0))),
            (Kind::ManifestMismatch, Some(r_key(0, 0)))
        ]
    );
}
