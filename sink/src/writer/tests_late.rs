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
