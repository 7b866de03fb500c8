//! `lakesink verify` on the real servers: a lake the daemon wrote passes, shallow and `--deep`
//! (gzip NDJSON and Parquet); then each planted fault — a deleted object, a truncated one, one
//! altered in place, a stray file, a deleted claim — is named with its kind, table, key and
//! offsets, and the audit exits 1.

use std::time::Duration;

use lakesink::demo::generator::GenConfig;
use lakesink_e2e::{report, Testbed};
use serde_json::Value;

const RECORDS: u64 = 4_000;
const PARTITIONS: i32 = 2;

fn tables(topic: &str) -> String {
    let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schema-registry/schemas/cloudtrail.avsc")
        .canonicalize()
        .unwrap();
    format!(
        r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 500
max_age = "2s"

[[tables]]
name = "ct_parquet"
topics = ["{topic}"]
format = "parquet"
schema = {{ file = "{schema}" }}
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.parquet]
row_group_rows = 200
[tables.rotate]
max_records = 500
max_age = "2s"
"#,
        schema = schema.display()
    )
}

/// The findings of a report as (kind, key or offsets).
fn findings(r: &Value) -> Vec<(String, String)> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let what = f["key"].as_str().map(str::to_string).unwrap_or_else(|| {
                format!(
                    "{}[{}] {}",
                    f["topic"].as_str().unwrap_or(""),
                    f["partition"],
                    f["offsets"]
                )
            });
            (f["kind"].as_str().unwrap().to_string(), what)
        })
        .collect()
}

#[test]
fn verify_passes_a_clean_lake_and_names_every_planted_fault() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("verify", PARTITIONS);
    let gen = GenConfig {
        span_secs: 3 * 3600,
        ..GenConfig::default()
    };
    tb.produce_events(&topic, PARTITIONS, &gen, 0..RECORDS, RECORDS);
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(dir.path(), &group, &bucket, &tables(&topic));
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(180));
    daemon.stop(Duration::from_secs(60));

    // A clean lake: nothing wrong, shallow or deep, and the text report says so.
    let (ok, shallow) = tb.verify(&config, &[]);
    assert!(ok, "{shallow:#}");
    let (ok, deep) = tb.verify(&config, &["--deep"]);
    assert!(ok, "{deep:#}");
    let c = &deep["checked"];
    assert_eq!(
        c["deep_records"],
        2 * RECORDS,
        "both tables' records read back: {c}"
    );
    assert_eq!(c["offsets"], RECORDS, "{c}");
    assert_eq!(c["objects"], c["listed"], "{c}");
    assert_eq!(c["deep_objects"], c["objects"], "{c}");
    let text = tb.cli(&["verify", "--deep"], &config, &[]);
    assert!(
        text.contains("OK: nothing missing, nothing extra"),
        "{text}"
    );
    eprintln!("{text}");
    let (ok, parquet) = tb.verify(&config, &["--table", "ct_parquet", "--deep"]);
    assert!(ok, "{parquet:#}");
    assert_eq!(parquet["checked"]["deep_records"], RECORDS);
    // Against Kafka: every record Kafka holds, compared with its object in both tables.
    let (ok, kafka) = tb.verify(&config, &["--against-kafka"]);
    assert!(ok, "{kafka:#}");
    assert_eq!(kafka["checked"]["kafka_records"], RECORDS, "{kafka:#}");
    assert_eq!(kafka["checked"]["kafka_objects"], c["objects"], "{kafka:#}");

    // The watermark: every partition is caught up, so it is the newest event time in the
    // table (as DuckDB reads it) minus the default allowed lateness, an hour.
    let status: Value = serde_json::from_str(&tb.cli(&["status", "--json"], &config, &[])).unwrap();
    let rows = tb.duckdb(&format!(
        "SELECT epoch_us(max(CAST(eventTime AS TIMESTAMP))) AS newest \
         FROM read_json('s3://{bucket}/lake/cloudtrail/*/*/*.json.gz', hive_partitioning=false)"
    ));
    let newest = rows[0]["newest"].as_i64().unwrap();
    let table = status["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "cloudtrail")
        .unwrap();
    let watermark = chrono::DateTime::parse_from_rfc3339(table["watermark"].as_str().unwrap())
        .unwrap()
        .timestamp_micros();
    assert_eq!(watermark, newest - 3_600_000_000, "{table:#}");
    assert_eq!(table["allowed_lateness"], "1h");

    // Damage: three objects of partition 1's claims, and a claim of partition 0 (not its
    // last) deleted with its objects left in place.
    let claims: Vec<Value> = serde_json::from_str(&tb.python(
        "s3_admin.py",
        &[
            "json",
            &bucket,
            &format!("lake/_lakesink/segments/{topic}/"),
        ],
    ))
    .unwrap();
    let claim_of = |p: i64| {
        let mut v: Vec<&Value> = claims
            .iter()
            .filter(|c| c["body"]["partition"] == p && c["body"].get("start").is_some())
            .collect();
        v.sort_by_key(|c| c["body"]["start"].as_i64().unwrap());
        v
    };
    let p1 = claim_of(1);
    assert!(p1.len() >= 3, "partition 1 has {} claims", p1.len());
    let gz = |c: &Value| {
        c["body"]["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_string())
            .find(|k| k.contains("/cloudtrail/"))
            .unwrap()
    };
    assert!(p1.len() >= 4, "partition 1 has {} claims", p1.len());
    let (deleted, truncated, flipped, dropped) = (gz(p1[0]), gz(p1[1]), gz(p1[2]), gz(p1[3]));
    let dropped_from = (&p1[3]["body"]["start"], &p1[3]["body"]["end"]);
    let p0 = claim_of(0);
    assert!(p0.len() >= 2, "partition 0 has {} claims", p0.len());
    let gone = p0[1];
    let gone_objects: Vec<String> = gone["body"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    let gone_span = (gone["body"]["start"].clone(), gone["body"]["end"].clone());
    let stray = "lake/cloudtrail/date=2024-01-01/hour=00/stray.json.gz";
    tb.python("s3_admin.py", &["delete", &bucket, &deleted]);
    tb.python("s3_admin.py", &["truncate", &bucket, &truncated, "10"]);
    tb.python("s3_admin.py", &["flip", &bucket, &flipped]);
    tb.python("s3_admin.py", &["dropline", &bucket, &dropped, "2"]);
    tb.python(
        "s3_admin.py",
        &["put", &bucket, stray, "{\"not\":\"ours\"}\n"],
    );
    tb.python(
        "s3_admin.py",
        &["delete", &bucket, gone["key"].as_str().unwrap()],
    );

    let (ok, damaged) = tb.verify(&config, &[]);
    assert!(!ok);
    let found = findings(&damaged);
    let has = |kind: &str, what: &str| found.iter().any(|(k, w)| k == kind && w == what);
    assert!(has("missing_object", &deleted), "{found:#?}");
    assert!(has("size_mismatch", &truncated), "{found:#?}");
    assert!(has("orphan", stray), "{found:#?}");
    assert!(has("size_mismatch", &dropped), "{found:#?}");
    for o in &gone_objects {
        assert!(has("orphan", o), "{o}: {found:#?}");
    }
    let gap = damaged["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "gap")
        .unwrap_or_else(|| panic!("no gap: {found:#?}"));
    assert_eq!(gap["topic"], topic.as_str());
    assert_eq!(gap["partition"], 0);
    // A claim in the middle leaves a gap between its neighbours; the last one, a gap up to
    // the committed offset: either way its offsets.
    assert_eq!(
        (&gap["offsets"][0], &gap["offsets"][1]),
        (&gone_span.0, &gone_span.1),
        "{gap}"
    );
    assert!(
        !found.iter().any(|(k, _)| k == "checksum_mismatch"),
        "shallow: no checksums"
    );
    assert_eq!(
        found.len(),
        4 + gone_objects.len() + 1,
        "nothing else: {found:#?}"
    );

    let (ok, deep) = tb.verify(&config, &["--deep"]);
    assert!(!ok);
    let found = findings(&deep);
    assert!(
        found
            .iter()
            .any(|(k, w)| k == "checksum_mismatch" && w == &flipped),
        "{found:#?}"
    );
    // Against Kafka, the record the rewritten object lost is named with its offset.
    let (ok, kafka) = tb.verify(&config, &["--against-kafka"]);
    assert!(!ok);
    let lost: Vec<&Value> = kafka["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "missing_record" && f["key"] == dropped.as_str())
        .collect();
    assert_eq!(lost.len(), 1, "{kafka:#}");
    let at = lost[0]["offsets"][0].as_i64().unwrap();
    assert!(
        (dropped_from.0.as_i64().unwrap()..dropped_from.1.as_i64().unwrap()).contains(&at),
        "{lost:?}"
    );
    let text = String::from_utf8(
        std::process::Command::new(&tb.bin)
            .args(["verify", "--deep", "--config"])
            .arg(&config)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(text.contains("FAILED:"), "{text}");
    assert!(
        text.contains(&format!(
            "FAULT missing_object        table=cloudtrail topic={topic} partition=1"
        )),
        "{text}"
    );
    report(&format!(
        "e2e verify (tansu + SeaweedFS): a clean lake of {RECORDS} records in 2 tables passes (--deep read {} objects, {} records back); planted faults named: {}",
        c["deep_objects"], c["deep_records"],
        found.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
    ));
    eprintln!("{text}");
}
