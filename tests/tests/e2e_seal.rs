//! Sealing on the real servers (tansu, SeaweedFS, moto's Glue, DuckDB): two members of one
//! group land four hours of events; the hours whose span ends below
//! the watermark are sealed once each, in its directory a manifest listing exactly the objects
//! there and the records DuckDB counts, `_SUCCESS`, and the Glue partition parameters; the hour
//! above the watermark is not. A late record for a sealed hour re-seals it (generation 2), and
//! `lakesink verify --deep` holds the manifests to their directories.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lakesink_e2e::{glue_catalog, report, wait_until, InOrder, Testbed};
use serde_json::Value;

const RECORDS: u64 = 3_000;
const PARTITIONS: i32 = 2;
const HOUR_US: i64 = 3_600_000_000;
const LATENESS_US: i64 = 30 * 60 * 1_000_000;

fn config(topic: &str, glue: &str, database: &str, strict: bool) -> String {
    let strict = if strict {
        format!(
            r#"
[[tables]]
name = "strict"
topics = ["{topic}"]
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
seal = true
allowed_lateness = "30m"
late_after_seal = "dlq"
[tables.rotate]
max_records = 400
max_age = "2s"
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{catalog}
[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
seal = true
allowed_lateness = "30m"
[tables.rotate]
max_records = 400
max_age = "2s"
{strict}"#,
        catalog = glue_catalog(glue, database)
    )
}

/// Seal records' generations by partition path.
fn seal_records(tb: &Testbed, bucket: &str, table: &str) -> BTreeMap<String, Vec<u64>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let prefix = format!("lake/_lakesink/seals/{table}/");
    for o in tb.list_objects(bucket, &prefix) {
        let key = o["key"].as_str().unwrap();
        let rest = key.strip_prefix(&prefix).unwrap();
        let (path, file) = rest.rsplit_once('/').unwrap();
        out.entry(path.to_string())
            .or_default()
            .push(file.strip_suffix(".json").unwrap().parse().unwrap());
    }
    out
}

/// `date=2024-01-02/hour=03` → the end of its hour, µs.
fn span_end(path: &str) -> i64 {
    let date = &path["date=".len().."date=".len() + 10];
    let hour: i64 = path.rsplit_once("hour=").unwrap().1.parse().unwrap();
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    day + (hour + 1) * HOUR_US
}

#[test]
fn hours_below_the_watermark_are_sealed_once_and_a_late_record_reseals() {
    let tb = Testbed::from_env();
    // Four hours of event time, in order within each Kafka partition (late records come
    // later, one at a time).
    let InOrder {
        topic,
        bucket,
        group,
        database,
        ends,
    } = tb.fresh_in_order("seal", PARTITIONS, RECORDS);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &config(&topic, &tb.glue_endpoint, &database, true),
    );
    // Two members of one group: each computes the watermark from the lake and the group's
    // offsets, and each seals what is due.
    let mut a = tb.start_daemon(&config, dir.path(), &[]);
    let mut b = tb.start_daemon(&config, dir.path(), &[]);
    wait_until(Duration::from_secs(180), "every offset committed", || {
        assert!(a.running(), "a exited:\n{}", a.log_text());
        assert!(b.running(), "b exited:\n{}", b.log_text());
        tb.committed(&group, &topic, PARTITIONS) == ends
    });

    // The watermark: every partition caught up, so the newest event time minus 30 minutes.
    let newest = tb.duckdb(&format!(
        "SELECT epoch_us(max(CAST(eventTime AS TIMESTAMP))) AS newest \
         FROM read_json('s3://{bucket}/lake/cloudtrail/*/*/*.json.gz', hive_partitioning=false)"
    ))[0]["newest"]
        .as_i64()
        .unwrap();
    let watermark = newest - LATENESS_US;
    let paths: BTreeSet<String> = tb
        .list_objects(&bucket, "lake/cloudtrail/")
        .iter()
        .filter_map(|o| {
            let key = o["key"].as_str().unwrap();
            key.ends_with(".json.gz").then(|| {
                let rest = key.strip_prefix("lake/cloudtrail/").unwrap();
                rest.rsplit_once('/').unwrap().0.to_string()
            })
        })
        .collect();
    let due: BTreeSet<String> = paths
        .iter()
        .filter(|p| span_end(p) <= watermark)
        .cloned()
        .collect();
    assert!(
        due.len() >= 3 && due.len() < paths.len(),
        "{due:?} of {paths:?}"
    );
    let mut sealed = BTreeMap::new();
    wait_until(Duration::from_secs(90), "the due hours sealed", || {
        sealed = tb.manifests(&bucket, "cloudtrail");
        sealed.len() >= due.len() && tb.manifests(&bucket, "strict").len() >= due.len()
    });
    assert_eq!(
        sealed.keys().cloned().collect::<BTreeSet<_>>(),
        due,
        "exactly the hours below the watermark"
    );
    // Once each, though two members sealed.
    for table in ["cloudtrail", "strict"] {
        let records = seal_records(&tb, &bucket, table);
        assert_eq!(records.len(), due.len(), "{table}: {records:?}");
        assert!(records.values().all(|g| g == &[1]), "{table}: {records:?}");
    }

    let glue: BTreeMap<String, Value> = tb
        .glue_partitions(&database, "cloudtrail")
        .into_iter()
        .map(|p| {
            let v = p["values"].as_array().unwrap();
            (
                format!(
                    "date={}/hour={}",
                    v[0].as_str().unwrap(),
                    v[1].as_str().unwrap()
                ),
                p["parameters"].clone(),
            )
        })
        .collect();
    let mut sealed_records = 0;
    for (path, m) in &sealed {
        let stored: BTreeSet<String> = tb
            .list_objects(&bucket, &format!("lake/cloudtrail/{path}/"))
            .iter()
            .map(|o| o["key"].as_str().unwrap().to_string())
            .filter(|k| k.ends_with(".json.gz"))
            .collect();
        let listed: BTreeSet<String> = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["key"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            listed, stored,
            "{path}: the manifest lists exactly its directory"
        );
        let counted = tb.duckdb(&format!(
            "SELECT count(*) AS n FROM read_json('s3://{bucket}/lake/cloudtrail/{path}/*.json.gz')"
        ))[0]["n"]
            .as_u64()
            .unwrap();
        assert_eq!(m["records"], counted, "{path}: the manifest's records");
        sealed_records += counted;
        let success = tb.list_objects(&bucket, &format!("lake/cloudtrail/{path}/_SUCCESS"));
        assert_eq!(success.len(), 1, "{path}: _SUCCESS");
        let params = &glue[path];
        assert_eq!(params["lakesink.sealed"], "true", "{path}: {params}");
        assert_eq!(params["lakesink.records"], counted.to_string(), "{path}");
        assert_eq!(params["lakesink.seal_generation"], "1", "{path}");
    }
    for path in paths.difference(&due) {
        assert!(
            glue[path].get("lakesink.sealed").is_none(),
            "{path} is above the watermark"
        );
    }

    // A late record for a sealed hour: written, and the hour re-sealed as generation 2.
    let late_path = due.iter().nth(1).unwrap().clone();
    let late_time =
        chrono::DateTime::from_timestamp_micros(span_end(&late_path) - HOUR_US + 1_000_000)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let late =
        format!(r#"{{"eventID":"late-after-seal","eventTime":"{late_time}","eventName":"Late"}}"#);
    tb.produce_raw(&topic, 0, &[Some(late.into_bytes())]);
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    let mut m = Value::Null;
    wait_until(
        Duration::from_secs(120),
        "the late record re-sealed",
        || {
            assert!(a.running() && b.running());
            m = tb
                .manifests(&bucket, "cloudtrail")
                .remove(&late_path)
                .unwrap();
            m["generation"] == 2
        },
    );
    let before = &sealed[&late_path];
    assert_eq!(
        m["records"].as_u64(),
        before["records"].as_u64().map(|n| n + 1)
    );
    assert_eq!(
        m["files"].as_array().unwrap().len(),
        before["files"].as_array().unwrap().len() + 1
    );
    assert_eq!(
        seal_records(&tb, &bucket, "cloudtrail")[&late_path],
        vec![1, 2]
    );
    // The table with late_after_seal = "dlq" dead-lettered it instead, and stays sealed.
    let letters = tb.duckdb(&format!(
        "SELECT reason, \"offset\" AS o FROM read_json('s3://{bucket}/lake/_errors/strict/**/*.json.gz')"
    ));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "late_after_seal");
    assert_eq!(letters[0]["o"].as_i64(), Some(ends[&0] - 1), "{letters:?}");
    assert_eq!(seal_records(&tb, &bucket, "strict")[&late_path], vec![1]);
    assert_eq!(tb.committed(&group, &topic, PARTITIONS), ends);
    a.stop(Duration::from_secs(60));
    b.stop(Duration::from_secs(60));

    let (ok, audit) = tb.verify(&config, &["--deep"]);
    assert!(ok, "{audit:#}");
    assert_eq!(
        audit["checked"]["sealed_partitions"],
        2 * due.len(),
        "both tables"
    );
    report(&format!(
        "e2e seal (tansu + SeaweedFS + Glue, 2 members): {RECORDS} records over 4 h; watermark {} (newest event − 30 min); {} of {} hours sealed once each ({} records in their manifests = DuckDB's count); a late record re-sealed {late_path} as generation 2 (and went to the dead letters of the table with late_after_seal = dlq); verify --deep passes",
        chrono::DateTime::from_timestamp_micros(watermark).unwrap().to_rfc3339(),
        due.len(),
        paths.len(),
        sealed_records
    ));
}

#[test]
fn sigkill_around_sealing_leaves_no_partition_half_sealed_or_sealed_twice() {
    let tb = Testbed::from_env();
    let InOrder {
        topic,
        bucket,
        group,
        database,
        ends,
    } = tb.fresh_in_order("sealkill", 1, RECORDS);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &config(&topic, &tb.glue_endpoint, &database, false),
    );
    // Each run dies at its first pass of one failpoint: after the seal record, after the
    // catalog heard, after `_SUCCESS` and before the manifest copy.
    for point in [
        "seal-after-record",
        "seal-after-catalog",
        "seal-before-copy",
    ] {
        let fail = format!("{point}:1");
        let mut d =
            tb.start_daemon_with_env(&config, dir.path(), &[], &[("LAKESINK_FAILPOINT", &fail)]);
        wait_until(Duration::from_secs(180), point, || !d.running());
        let log = d.log_text();
        assert!(
            log.contains(&format!("failpoint {point}")),
            "{point}:\n{log}"
        );
    }
    let mut d = tb.start_daemon(&config, dir.path(), &[]);
    d.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(180));
    // Hours 01, 02 and 03 end below the watermark (the newest event is at 04:59).
    let mut sealed = BTreeMap::new();
    wait_until(Duration::from_secs(90), "three hours sealed", || {
        sealed = tb.manifests(&bucket, "cloudtrail");
        sealed.len() == 3 && sealed.values().all(|m| m["generation"] == 1)
    });
    d.stop(Duration::from_secs(60));
    let records = seal_records(&tb, &bucket, "cloudtrail");
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(
        records.values().all(|g| g == &[1]),
        "sealed once each: {records:?}"
    );
    let glue = tb.glue_partitions(&database, "cloudtrail");
    let with_seal = glue
        .iter()
        .filter(|p| p["parameters"]["lakesink.sealed"] == "true")
        .count();
    assert_eq!(with_seal, 3, "{glue:#?}");
    for path in sealed.keys() {
        let success = tb.list_objects(&bucket, &format!("lake/cloudtrail/{path}/_SUCCESS"));
        assert_eq!(success.len(), 1, "{path}: _SUCCESS");
    }
    let (ok, audit) = tb.verify(&config, &["--deep"]);
    assert!(ok, "{audit:#}");
    report(
        "e2e seal kills (tansu + SeaweedFS + Glue): SIGKILL after the seal record, after the catalog, before the manifest copy; then 3 hours sealed once each (one generation, parameters in Glue, _SUCCESS and manifest in place); verify --deep passes",
    );
}
