//! Tests of the direct JSON path in the partition writer: a record parsed into the file the
//! one before went to, moved when it routes elsewhere, cut off when it is bad.

use super::dead_letter::base64;
use super::tests::*;
use super::*;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use object_store::path::Path;
use std::time::Duration;

/// The `id` column of every row of the Parquet object at `key`, in order.
fn ids(ctx: &WriterCtx, key: &str) -> Vec<i64> {
    let bytes = ctx.rt.block_on(async {
        use object_store::ObjectStoreExt;
        let got = ctx.store.get(&Path::from(key)).await.unwrap();
        got.bytes().await.unwrap()
    });
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .flat_map(|b| {
            let b = b.unwrap();
            let c = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            c.values().to_vec()
        })
        .collect()
}

#[test]
fn rows_parsed_into_the_last_file_move_when_the_record_routes_elsewhere_and_are_cut_off_when_it_is_bad(
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ids.schema.json"),
        r#"{"type":"object","properties":{
            "id":{"type":"integer"},
            "ts":{"type":"string","format":"date-time"},
            "n":{"type":["string","null"]}},
          "required":["id","ts"]}"#,
    )
    .unwrap();
    let rt = runtime();
    let ctx = ctx_with(
        &rt,
        Arc::new(object_store::memory::InMemory::new()),
        &format!(
            r#"
[[tables]]
name = "t"
topics = ["t"]
format = "parquet"
schema = {{ file = "{}" }}
timestamp = {{ field = "ts" }}
max_future_skew = "2h"
on_bad_record = "dlq"
on_missing_timestamp = "dlq"
"#,
            dir.path().join("ids.schema.json").display()
        ),
    );
    let tp = Tp::new("t", 0);
    let epoch = ctx.ledger.lock().unwrap().assign(&tp);
    let mut w = PartitionWriter::new(&ctx, tp.clone(), epoch, None).unwrap();
    // Hours 01 and 02 interleaved; offset 4 is in the far future (refused by the router after
    // the direct path parsed it); offset 6 is not for the direct path (a string id) and
    // takes arrow-json's way, which refuses it too.
    let records = [
        r#"{"id":0,"ts":"2024-01-02T01:00:00Z"}"#,
        r#"{"id":1,"ts":"2024-01-02T01:10:00Z","n":"a"}"#,
        r#"{"id":2,"ts":"2024-01-02T02:00:00Z"}"#,
        r#"{"id":3,"ts":"2024-01-02T01:20:00Z"}"#,
        r#"{"id":4,"ts":"2099-01-02T01:00:00Z"}"#,
        r#"{"id":5,"ts":"2024-01-02T01:30:00Z","n":null}"#,
        r#"{"id":"six","ts":"2024-01-02T01:40:00Z"}"#,
        r#"{"id":7,"ts":"2024-01-02T02:10:00Z"}"#,
        r#"{"id":8,"ts":"2024-01-02T02:20:00Z"}"#,
    ];
    let recs: Vec<RecordIn<'_>> = records
        .iter()
        .enumerate()
        .map(|(o, t)| RecordIn {
            offset: o as i64,
            kafka_millis: Some(1_704_157_200_000),
            payload: Some(t.as_bytes()),
            key: None,
            headers: None,
        })
        .collect();
    w.push_batch(&ctx, &recs, Instant::now(), 1_704_157_200_000_000)
        .unwrap();
    w.cut(&ctx, CutReason::Shutdown).unwrap();
    assert!(w.wait(&ctx.rt, Instant::now() + Duration::from_secs(60)));
    assert_eq!(safe(&ctx), vec![(tp.clone(), 9)]);
    let keys = data_keys(&ctx);
    assert_eq!(
        keys,
        [
            "_errors/t/date=2024-01-02/t+0+00000000000000000004.json.gz",
            "t/date=2024-01-02/hour=01/t+0+00000000000000000000.parquet",
            "t/date=2024-01-02/hour=02/t+0+00000000000000000002.parquet",
        ]
    );
    assert_eq!(ids(&ctx, &keys[1]), [0, 1, 3, 5]);
    assert_eq!(ids(&ctx, &keys[2]), [2, 7, 8]);
    let letters: Vec<serde_json::Value> = gunzipped(&ctx, &keys[0])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let offsets: Vec<i64> = letters
        .iter()
        .map(|l| l["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(offsets, [4, 6]);
    assert_eq!(letters[1]["value_base64"], base64(records[6].as_bytes()));
}
