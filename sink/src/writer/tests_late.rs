//! `late_after_seal = "dlq"`: a record for a partition that ended at or before its table's
//! watermark when its segment began is dead-lettered, and a replay of the segment decides by
//! the watermark its claim recorded, not by today's: the same objects again.

use std::time::{Duration, Instant};

use super::tests::{ctx_with, data_keys, gunzipped, runtime, safe};
use super::*;

const TABLES: &str = r#"
[[tables]]
name = "t"
topics = ["t"]
timestamp = { field = "ts" }
max_future_skew = "1000d"
on_bad_record = "dlq"
seal = true
late_after_seal = "dlq"
[tables.rotate]
max_records = 100
"#;

fn micros(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_micros()
}

/// Pushes records at offsets 0–2 with these event times, cuts, and waits for the upload
/// without committing (the next writer replays the segment).
fn write(ctx: &WriterCtx, times: &[&str]) -> Vec<(String, String)> {
    let far = Instant::now() + Duration::from_secs(60);
    let tp = Tp::new("t", 0);
    let epoch = ctx.ledger.lock().unwrap().assign(&tp);
    let mut w = PartitionWriter::new(ctx, tp, epoch, None).unwrap();
    for (o, ts) in times.iter().enumerate() {
        let payload = format!(r#"{{"ts":"{ts}","o":{o}}}"#);
        let rec = RecordIn {
            offset: o as i64,
            kafka_millis: Some(1_704_157_200_000 + o as i64),
            payload: Some(payload.as_bytes()),
            key: None,
            headers: None,
        };
        w.push(ctx, rec, Instant::now(), 0).unwrap();
    }
    w.cut(ctx, CutReason::Age).unwrap();
    assert!(w.wait(&ctx.rt, far));
    assert_eq!(safe(ctx).len(), 1, "uploaded, committable, not committed");
    data_keys(ctx)
        .into_iter()
        .map(|k| {
            let text = gunzipped(ctx, &k);
            (k, text)
        })
        .collect()
}

#[test]
fn a_late_record_for_a_sealed_partition_is_dead_lettered_and_a_replay_decides_the_same() {
    let rt = runtime();
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let times = [
        "2024-01-02T04:00:00Z", // hour 04 ends at 05:00: after the watermark
        "2024-01-02T01:30:00Z", // hour 01 ends at 02:00: sealed
        "2024-01-02T02:59:59Z", // hour 02 ends at 03:00, the watermark itself: sealed
    ];
    let first = ctx_with(&rt, store.clone(), TABLES);
    first
        .watermarks
        .set("t", Some(micros("2024-01-02T03:00:00Z")));
    let landed = write(&first, &times);
    let data: Vec<&(String, String)> = landed.iter().filter(|(k, _)| k.starts_with("t/")).collect();
    assert_eq!(data.len(), 1, "{landed:?}");
    assert!(data[0].0.starts_with("t/date=2024-01-02/hour=04/"));
    let letters: Vec<&(String, String)> = landed
        .iter()
        .filter(|(k, _)| k.starts_with("_errors/"))
        .collect();
    assert_eq!(letters.len(), 1, "{landed:?}");
    let reasons: Vec<String> = letters[0]
        .1
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"].to_string())
        .collect();
    assert_eq!(reasons, ["\"late_after_seal\"", "\"late_after_seal\""]);

    // The next owner knows a later watermark (hour 04 would be sealed by it too), but the
    // segment's claim recorded 03:00: the replay writes the same objects with the same records.
    let next = ctx_with(&rt, store.clone(), TABLES);
    next.watermarks
        .set("t", Some(micros("2024-01-02T06:00:00Z")));
    assert_eq!(write(&next, &times), landed);
    // A segment that replays nothing takes today's watermark.
    drop(next);
    let fresh = ctx_with(&rt, Arc::new(object_store::memory::InMemory::new()), TABLES);
    fresh
        .watermarks
        .set("t", Some(micros("2024-01-02T06:00:00Z")));
    let all_late = write(&fresh, &times);
    assert!(
        all_late.iter().all(|(k, _)| k.starts_with("_errors/")),
        "{all_late:?}"
    );
}

/// A table that compacts (`[tables.compact]` needs a catalog that holds locations).
const COMPACTING: &str = r#"
[catalog]
kind = "hive"
uri = "thrift://localhost:9083"
database = "lake"
[[tables]]
name = "t"
topics = ["t"]
timestamp = { field = "ts" }
max_future_skew = "1000d"
seal = true
[tables.compact]
[tables.rotate]
max_records = 100
"#;

/// Records compaction `number` of `t`'s partition `path`, its files under `dir`.
fn compacted(
    store: &Arc<dyn ObjectStore>,
    rt: &tokio::runtime::Runtime,
    path: &str,
    number: u32,
    dir: &str,
) {
    use object_store::ObjectStoreExt;
    let c = crate::seal::compactions::Compaction {
        table: "t".into(),
        path: path.into(),
        number,
        seal_generation: 1,
        location: format!("t/{path}/{dir}"),
        files: Vec::new(),
        replaced: Vec::new(),
        replaced_dir: format!("t/{path}"),
        created_at: "2024-01-03T00:00:00Z".into(),
        delete_after: "2024-01-03T01:00:00Z".into(),
    };
    let key = format!("_lakesink/compactions/t/{path}/{number:06}.json");
    rt.block_on(store.put(
        &object_store::path::Path::from(key),
        serde_json::to_vec(&c).unwrap().into(),
    ))
    .unwrap();
}

#[test]
fn a_late_record_for_a_compacted_partition_goes_to_the_compaction_directory_and_a_replay_keeps_its_key(
) {
    let rt = runtime();
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    compacted(
        &store,
        &rt,
        "date=2024-01-02/hour=01",
        1,
        "_c000001-0a1b2c3d",
    );
    let times = [
        "2024-01-02T01:30:00Z", // sealed and compacted: the compaction's directory
        "2024-01-02T02:30:00Z", // sealed, never compacted: its own directory
        "2024-01-02T04:00:00Z", // after the watermark: its own directory
    ];
    let first = ctx_with(&rt, store.clone(), COMPACTING);
    first
        .watermarks
        .set("t", Some(micros("2024-01-02T03:00:00Z")));
    let landed = write(&first, &times);
    let keys: Vec<&str> = landed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert!(
        keys[0].starts_with("t/date=2024-01-02/hour=01/_c000001-0a1b2c3d/t+0+"),
        "{keys:?}"
    );
    assert!(
        keys[1].starts_with("t/date=2024-01-02/hour=02/t+0+"),
        "{keys:?}"
    );
    assert!(
        keys[2].starts_with("t/date=2024-01-02/hour=04/t+0+"),
        "{keys:?}"
    );

    // The partition is compacted again before the segment is committed; the replay rewrites
    // the claimed key (the next compaction joins it), never a second copy in the new directory.
    compacted(
        &store,
        &rt,
        "date=2024-01-02/hour=01",
        2,
        "_c000002-0a1b2c3d",
    );
    let next = ctx_with(&rt, store.clone(), COMPACTING);
    next.watermarks
        .set("t", Some(micros("2024-01-02T03:00:00Z")));
    assert_eq!(write(&next, &times), landed);

    // Without a watermark (a daemon that just started) the writer cannot know: its own
    // directory, which the next compaction pass joins at once (docs/DESIGN.md).
    let fresh = ctx_with(
        &rt,
        Arc::new(object_store::memory::InMemory::new()),
        COMPACTING,
    );
    compacted(
        &fresh.store,
        &rt,
        "date=2024-01-02/hour=01",
        1,
        "_c000001-0a1b2c3d",
    );
    let own = write(&fresh, &times[..1]);
    assert!(
        own[0].0.starts_with("t/date=2024-01-02/hour=01/t+0+"),
        "{own:?}"
    );
}
