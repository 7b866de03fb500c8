//! Parquet tables on tansu + SeaweedFS: typed, nested CloudTrail rows that DuckDB (over S3) and
//! pyarrow both read back with the declared types, timestamps equal to the source instants, the
//! partition columns, a bloom filter on the chosen column, and records that do not fit the
//! schema in the dead-letter prefix with the field that failed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use lakesink::demo::generator::{event, GenConfig};
use lakesink_e2e::{report, Testbed};
use serde_json::Value;

const GOOD: u64 = 3_000;

/// The values produced, the bad ones (offset → the field that is wrong), the good events.
type Produced = (
    Vec<Option<Vec<u8>>>,
    BTreeMap<i64, &'static str>,
    Vec<Value>,
);

/// Generated events with records that are valid JSON with a usable event time but do not fit
/// `cloudtrail.avsc`, at known offsets (offset → what is wrong).
fn records() -> Produced {
    let cfg = GenConfig::default();
    let mut buf = String::new();
    let mut out = Vec::new();
    let mut bad = BTreeMap::new();
    let mut good = Vec::new();
    for seq in 0..GOOD {
        event(&cfg, seq, GOOD, &mut buf);
        let mut v: Value = serde_json::from_str(&buf).unwrap();
        if seq == 100 {
            // A field the schema lacks is dropped (unknown_fields = "drop"), the record kept.
            v["notInTheSchema"] = serde_json::json!({"x": 1});
        }
        if seq % 1000 == 500 {
            let mut broken = v.clone();
            let what = match seq / 1000 {
                0 => {
                    broken.as_object_mut().unwrap().remove("eventSource");
                    "eventSource"
                }
                1 => {
                    broken["readOnly"] = Value::from("yes");
                    "readOnly"
                }
                _ => {
                    broken["sequence"] = Value::from("not a number");
                    "sequence"
                }
            };
            bad.insert(out.len() as i64, what);
            out.push(Some(serde_json::to_vec(&broken).unwrap()));
        }
        out.push(Some(serde_json::to_vec(&v).unwrap()));
        good.push(v);
    }
    (out, bad, good)
}

#[test]
fn parquet_rows_read_back_typed_by_duckdb_and_pyarrow_with_bloom_filters_and_dead_letters() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("parquet", 1);
    let (values, bad, good) = records();
    tb.produce_raw(&topic, 0, &values);
    let ends = tb.high_watermarks(&topic, 1);

    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schema-registry/schemas/cloudtrail.avsc")
        .canonicalize()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            r#"[[tables]]
name = "ct"
topics = ["{topic}"]
format = "parquet"
schema = {{ file = "{schema}" }}
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
on_bad_record = "dlq"
[tables.parquet]
compression = "zstd"
row_group_rows = 300
bloom_filters = ["eventID", "userIdentity.arn"]
[tables.rotate]
max_records = 1000
max_age = "2s"
"#,
            schema = schema.display()
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(120));
    daemon.stop(Duration::from_secs(60));

    // DuckDB over S3: every record once, with its types, instants and partition columns.
    let src =
        format!("read_parquet('s3://{bucket}/lake/ct/*/*/*.parquet', hive_partitioning = true)");
    let types = tb.duckdb(&format!(
        "SELECT typeof(eventTime) AS t, typeof(userIdentity) AS u, typeof(resources) AS r, \
         typeof(readOnly) AS b, typeof(sequence) AS s FROM {src} LIMIT 1"
    ));
    assert_eq!(types[0]["t"], "TIMESTAMP WITH TIME ZONE", "{types:?}");
    assert!(
        types[0]["u"]
            .as_str()
            .unwrap()
            .starts_with("STRUCT(\"type\" VARCHAR"),
        "{types:?}"
    );
    assert!(
        types[0]["r"]
            .as_str()
            .unwrap()
            .starts_with("STRUCT(ARN VARCHAR"),
        "{types:?}"
    );
    assert!(types[0]["r"].as_str().unwrap().ends_with("[]"), "{types:?}");
    assert_eq!(types[0]["b"], "BOOLEAN");
    assert_eq!(types[0]["s"], "BIGINT");
    let rows = tb.duckdb(&format!(
        "SELECT sequence AS seq, epoch_ms(eventTime) AS ms, date, hour, eventID, \
         userIdentity.userName AS user_name, \
         epoch_ms(userIdentity.sessionContext.attributes.creationDate) AS created_ms, \
         requestParameters AS params, len(resources) AS n_resources, resources[1].ARN AS arn0, \
         readOnly AS read_only FROM {src}"
    ));
    assert_eq!(rows.len() as u64, GOOD, "every good record once");
    let by_seq: HashMap<u64, &Value> = rows
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r))
        .collect();
    assert_eq!(by_seq.len() as u64, GOOD, "no duplicates, none lost");
    let ms = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    for src in &good {
        let seq = src["sequence"].as_u64().unwrap();
        let r = by_seq[&seq];
        let t = src["eventTime"].as_str().unwrap();
        assert_eq!(r["ms"].as_i64().unwrap(), ms(t), "eventTime of {seq}");
        assert_eq!(
            r["date"].as_str().unwrap(),
            &t[..10],
            "date column of {seq}"
        );
        assert_eq!(
            r["hour"]
                .as_i64()
                .map(|h| format!("{h:02}"))
                .or_else(|| r["hour"].as_str().map(str::to_string))
                .unwrap(),
            &t[11..13],
            "hour column of {seq}"
        );
        assert_eq!(r["eventID"], src["eventID"]);
        assert_eq!(r["user_name"], src["userIdentity"]["userName"]);
        let created = src["userIdentity"]["sessionContext"]["attributes"]["creationDate"]
            .as_str()
            .unwrap();
        assert_eq!(r["created_ms"].as_i64().unwrap(), ms(created));
        // Free-form objects are stored as their JSON text.
        let params: Value = serde_json::from_str(r["params"].as_str().unwrap()).unwrap();
        assert_eq!(
            params, src["requestParameters"],
            "requestParameters of {seq}"
        );
        assert_eq!(r["n_resources"], src["resources"].as_array().unwrap().len());
        assert_eq!(r["arn0"], src["resources"][0]["ARN"]);
        assert_eq!(r["read_only"], src["readOnly"]);
    }

    // pyarrow, an independent reader: the same rows, the declared Parquet types.
    let pa: Value =
        serde_json::from_str(&tb.python("parquet_read.py", &[&bucket, "lake/ct/"])).unwrap();
    assert_eq!(pa["rows"], GOOD, "{pa}");
    assert_eq!(pa["event_ids"], GOOD, "{pa}");
    assert_eq!(pa["schemas"].as_array().unwrap().len(), 1, "{pa}");
    let leaf = |p: &str| pa["leaves"][p].clone();
    assert_eq!(leaf("eventTime")["physical"], "INT64", "{pa}");
    let logical = leaf("eventTime")["logical"].as_str().unwrap().to_string();
    assert!(
        logical.contains("isAdjustedToUTC=true") && logical.contains("milliseconds"),
        "eventTime is TIMESTAMP(MILLIS, UTC): {logical}"
    );
    assert_eq!(leaf("readOnly")["physical"], "BOOLEAN");
    assert_eq!(leaf("userIdentity.userName")["logical"], "String");
    assert_eq!(
        pa["bloom"]["eventID"], true,
        "bloom filter on eventID: {pa}"
    );
    assert_eq!(pa["bloom"]["userIdentity.arn"], true, "{pa}");
    assert_eq!(
        pa["bloom"]["eventName"], false,
        "only the chosen columns: {pa}"
    );
    assert_eq!(pa["compression"], serde_json::json!(["ZSTD"]), "{pa}");
    assert!(
        pa["max_row_groups"].as_u64().unwrap() >= 3,
        "row groups of at most 300 rows: {pa}"
    );
    for (key, n) in pa["rows_by_key"].as_object().unwrap() {
        assert!(n.as_u64().unwrap() <= 1000, "{key}: max_records");
    }

    // Records that do not fit are in the dead-letter prefix with the field that failed.
    let letters = tb.duckdb(&format!(
        "SELECT \"offset\" AS o, reason, error FROM read_json('s3://{bucket}/lake/_errors/ct/*/*.json.gz') ORDER BY o"
    ));
    let got: BTreeMap<i64, String> = letters
        .iter()
        .map(|r| {
            (
                r["o"].as_i64().unwrap(),
                r["error"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        bad.keys().collect::<Vec<_>>(),
        "{letters:?}"
    );
    for r in &letters {
        assert_eq!(r["reason"], "schema_mismatch", "{r}");
    }
    for (o, field) in &bad {
        assert!(
            got[o].contains(field),
            "offset {o}: `{}` names {field}",
            got[o]
        );
    }
    report(&format!(
        "e2e parquet: {GOOD} CloudTrail records in {} files (max {} row groups), read back typed by DuckDB and pyarrow; bloom filters on eventID and userIdentity.arn; {} schema mismatches dead-lettered with their field",
        pa["files"], pa["max_row_groups"], bad.len()
    ));
}
