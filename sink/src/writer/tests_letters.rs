//! Tests of the partition writer's dead letters and Parquet settling.

use super::dead_letter::base64;
use super::tests::*;
use super::*;
use crate::config::{BadRecord, MissingTimestamp};
use object_store::path::Path;
use std::time::Duration;

#[test]
fn base64_matches_rfc4648() {
    for (raw, enc) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(raw.as_bytes()), enc);
    }
}

#[test]
fn parquet_rows_settle_across_batches_and_a_refused_one_keeps_its_key_headers_and_value() {
    let rt = runtime();
    let ctx = ctx_with(
        &rt,
        Arc::new(object_store::memory::InMemory::new()),
        r#"
[[tables]]
name = "t"
topics = ["t"]
format = "parquet"
schema = { file = "cloudtrail.avsc" }
timestamp = { field = "eventTime" }
max_future_skew = "1000d"
on_bad_record = "dlq"
"#,
    );
    let tp = Tp::new("t", 0);
    let epoch = ctx.ledger.lock().unwrap().assign(&tp);
    let mut w = PartitionWriter::new(&ctx, tp.clone(), epoch, None).unwrap();
    // Demo events; the refused one has a string where the schema has a boolean.
    let row = |o: i64, bad: bool| {
        let mut text = String::new();
        crate::generator::event(&Default::default(), o as u64, 9, &mut text);
        let at = text.find(r#""readOnly":"#).unwrap() + 11;
        let end = at + text[at..].find(',').unwrap();
        text.replace_range(at..end, if bad { r#""yes""# } else { "true" });
        text
    };
    let mut headers = Vec::new();
    crate::batch::encode_headers([("h", Some(&b"v"[..]))].into_iter(), &mut headers);
    // Three consumer batches of three; offset 4 does not fit the schema (a string where a
    // boolean goes).
    for batch in 0..3i64 {
        let texts: Vec<String> = (batch * 3..batch * 3 + 3).map(|o| row(o, o == 4)).collect();
        let recs: Vec<RecordIn<'_>> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| RecordIn {
                offset: batch * 3 + i as i64,
                kafka_millis: Some(1_704_157_200_000),
                payload: Some(t.as_bytes()),
                key: Some(b"k4".as_slice()).filter(|_| batch * 3 + i as i64 == 4),
                headers: Some(headers.as_slice()).filter(|_| batch * 3 + i as i64 == 4),
            })
            .collect();
        w.push_batch(&ctx, &recs, Instant::now(), 0).unwrap();
        // Rows wait for more: nothing was checked yet, no dead letter written. (The good
        // rows were parsed by the direct path; the bad one took the old way and waits with
        // what its dead letter needs.)
        let pending = w.files[0]
            .values()
            .map(|f| f.encoder.unsettled())
            .sum::<usize>();
        assert_eq!(pending, 3 * (batch as usize + 1));
        let kept = w.files[0]
            .values()
            .map(|f| f.unsettled.len())
            .sum::<usize>();
        assert_eq!(kept, usize::from(batch >= 1));
    }
    w.cut(&ctx, CutReason::Shutdown).unwrap();
    assert!(w.wait(&ctx.rt, Instant::now() + Duration::from_secs(60)));
    assert_eq!(safe(&ctx), vec![(tp.clone(), 9)]);
    let keys = data_keys(&ctx);
    assert!(keys[0].starts_with("_errors/"), "{keys:?}");
    let envelopes = gunzipped(&ctx, &keys[0]);
    let lines: Vec<serde_json::Value> = envelopes
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{envelopes}");
    assert_eq!(lines[0]["offset"], 4);
    assert_eq!(lines[0]["value_base64"], base64(row(4, true).as_bytes()));
    assert_eq!(lines[0]["key_base64"], base64(b"k4"));
    assert_eq!(
        lines[0]["headers"],
        serde_json::json!([{"name": "h", "value_base64": base64(b"v")}])
    );
    assert!(lines[0].to_string().contains("readOnly"), "{}", lines[0]);
    // The other eight are rows of the Parquet files.
    use parquet::file::reader::FileReader;
    let rows: i64 = keys[1..]
        .iter()
        .map(|k| {
            assert!(k.ends_with(".parquet"), "{k}");
            let bytes = ctx.rt.block_on(async {
                use object_store::ObjectStoreExt;
                let got = ctx.store.get(&Path::from(k.as_str())).await.unwrap();
                got.bytes().await.unwrap()
            });
            let reader = parquet::file::reader::SerializedFileReader::new(bytes).unwrap();
            reader.metadata().file_metadata().num_rows()
        })
        .sum();
    assert_eq!(rows, 8);
}

#[test]
fn bad_records_go_to_the_dead_letter_prefix_within_the_segment() {
    let rt = runtime();
    let mut ctx = ctx(&rt);
    let mut tables = (*ctx.tables).clone();
    tables[0].on_bad_record = BadRecord::DeadLetter;
    tables[0].on_missing_timestamp = MissingTimestamp::DeadLetter;
    ctx.tables = Arc::new(tables);
    let tp = Tp::new("t", 0);
    let epoch = ctx.ledger.lock().unwrap().assign(&tp);
    let mut w = PartitionWriter::new(&ctx, tp.clone(), epoch, None).unwrap();
    let far = Instant::now() + Duration::from_secs(60);
    let recs: [Option<&[u8]>; 4] = [
        Some(br#"{"ts":"2024-01-02T01:00:00Z"}"#),
        Some(b"{not json"),
        None,
        Some(br#"{"no_ts":1}"#),
    ];
    for (o, payload) in recs.into_iter().enumerate() {
        let rec = RecordIn {
            offset: o as i64,
            kafka_millis: Some(1_704_157_200_000),
            payload,
            key: None,
            headers: None,
        };
        w.push(&ctx, rec, Instant::now(), 0).unwrap();
    }
    w.cut(&ctx, CutReason::Shutdown).unwrap();
    assert!(w.wait(&ctx.rt, far));
    // Every offset, bad ones included, is committable: the envelopes are stored.
    assert_eq!(safe(&ctx), vec![(tp.clone(), 4)]);
    let keys = data_keys(&ctx);
    let envelopes = gunzipped(&ctx, &keys[0]);
    assert_eq!(
        keys,
        vec![
            "_errors/t/date=2024-01-02/t+0+00000000000000000001.json.gz".to_string(),
            "t/date=2024-01-02/hour=01/t+0+00000000000000000000.json.gz".to_string(),
        ]
    );
    let lines: Vec<serde_json::Value> = envelopes
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<&str> = lines
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["invalid_json", "empty", "missing_timestamp"]);
    assert_eq!(lines[0]["offset"], 1);
    assert_eq!(lines[0]["topic"], "t");
    assert_eq!(lines[0]["value_base64"], base64(b"{not json"));
    assert_eq!(lines[0]["kafka_timestamp"], "2024-01-02T01:00:00.000Z");
    assert!(lines[1]["value_base64"].is_null());
    assert_eq!(
        ctx.stats
            .dead_letters
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}
