//! End to end on real, separate servers: tansu (Kafka protocol, sqlite storage) as the broker,
//! SeaweedFS as S3, DuckDB reading the bucket over S3 with hive partitioning.

use std::time::{Duration, Instant};

use lakesink::demo::generator::GenConfig;
use lakesink_e2e::{report, Testbed};

const RECORDS: u64 = 50_000;
const PARTITIONS: i32 = 3;

#[test]
fn records_land_exactly_once_in_their_event_hour_and_a_restart_rereads_nothing() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("cloudtrail", PARTITIONS);

    // ≥ 3 event hours (4 h span plus late events up to 90 minutes older).
    let gen = GenConfig {
        span_secs: 4 * 3600,
        ..GenConfig::default()
    };
    let t0 = Instant::now();
    let bytes = tb.produce_events(&topic, PARTITIONS, &gen, 0..RECORDS, RECORDS);
    let produce_secs = t0.elapsed().as_secs_f64();
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    assert_eq!(
        ends.values().sum::<i64>() as u64,
        RECORDS,
        "broker holds every record: {ends:?}"
    );

    // Two tables from one topic: hourly gzip NDJSON cut every 4,000 records per file, and a
    // table by date and region (a field value in the path). Both are cut together.
    let dir = tempfile::tempdir().unwrap();
    let tables = format!(
        r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 4000
max_bytes = "64MiB"
max_age = "3s"

[[tables]]
name = "cloudtrail_by_region"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/region={{field:awsRegion}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_age = "3s"
"#
    );
    let config = tb.write_config(dir.path(), &group, &bucket, &tables);

    let t1 = Instant::now();
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(600));
    let sink_secs = t1.elapsed().as_secs_f64();
    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "graceful exit: {status:?}\n{}",
        daemon.log_text()
    );

    // DuckDB over S3 with hive partitioning: every record once, in its own event hour.
    let rows = tb.duckdb(&format!(
        "SELECT count(*) AS n, count(DISTINCT eventID) AS ids, \
         count(*) FILTER (WHERE strftime(CAST(eventTime AS TIMESTAMP), '%Y-%m-%d') <> date \
                            OR strftime(CAST(eventTime AS TIMESTAMP), '%H') <> hour) AS misplaced, \
         count(DISTINCT date || '/' || hour) AS hours, \
         count(*) FILTER (WHERE CAST(eventTime AS TIMESTAMP) < TIMESTAMP '2024-01-02 01:00:00') AS late \
         FROM read_json('s3://{bucket}/lake/cloudtrail/*/*/*.json.gz', hive_partitioning = true, hive_types_autocast = false)"
    ));
    let r = &rows[0];
    assert_eq!(r["n"], RECORDS, "{r}");
    assert_eq!(r["ids"], RECORDS, "{r}");
    assert_eq!(r["misplaced"], 0, "{r}");
    assert!(r["hours"].as_u64().unwrap() >= 4, "{r}");
    assert!(r["late"].as_u64().unwrap() > 0, "late records present: {r}");

    let by_region = tb.duckdb(&format!(
        "SELECT count(*) AS n, count(DISTINCT eventID) AS ids, count(*) FILTER (WHERE awsRegion <> region) AS misplaced \
         FROM read_json('s3://{bucket}/lake/cloudtrail_by_region/*/*/*.json.gz', hive_partitioning = true, hive_types_autocast = false)"
    ));
    let r = &by_region[0];
    assert_eq!(
        (r["n"].as_u64(), r["ids"].as_u64(), r["misplaced"].as_u64()),
        (Some(RECORDS), Some(RECORDS), Some(0)),
        "{r}"
    );

    let hourly = tb.list_objects(&bucket, "lake/cloudtrail/");
    let all = tb.list_objects(&bucket, "lake/");
    // Besides the data, one segment claim per segment (see DESIGN.md), outside every table.
    let (claims, all): (Vec<_>, Vec<_>) = all.into_iter().partition(|o| {
        o["key"]
            .as_str()
            .unwrap()
            .starts_with(&format!("lake/_lakesink/segments/{topic}/"))
    });
    assert!(claims.len() >= PARTITIONS as usize, "{claims:?}");
    for o in &claims {
        let name = o["key"].as_str().unwrap().rsplit('/').next().unwrap();
        assert!(name.len() == 25 && name.ends_with(".json"), "{name}");
    }
    for o in &all {
        let key = o["key"].as_str().unwrap();
        let name = key.rsplit('/').next().unwrap();
        assert!(
            name.starts_with(&format!("{topic}+")) && name.ends_with(".json.gz"),
            "{key}"
        );
    }
    report(&format!(
        "e2e core (tansu + SeaweedFS, debug build): {RECORDS} records, {:.1} MB, {} partitions; produced in {produce_secs:.1} s; \
         all offsets committed {sink_secs:.1} s after start; {} hourly objects + {} by-region objects",
        bytes as f64 / 1e6,
        PARTITIONS,
        hourly.len(),
        all.len() - hourly.len()
    ));

    // `check` reaches both servers, prints the plan with the secret redacted, and sees no lag.
    let out = std::process::Command::new(&tb.bin)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("lag 0 records") && text.contains("secret_access_key = ***"),
        "{text}"
    );
    // SeaweedFS refuses a second `If-None-Match: *` PUT: segment claims fence zombie writers.
    assert!(text.contains("conditional writes: enforced"), "{text}");
    assert!(!text.contains(&tb.s3_secret), "{text}");
    // …and fails clearly on a bucket that does not exist.
    let missing = Testbed::unique("nobucket");
    let bad = tb.write_config(dir.path(), &group, &missing, &tables);
    let out = std::process::Command::new(&tb.bin)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&missing),
        "check must name the missing bucket: {err}"
    );
    let config = tb.write_config(dir.path(), &group, &bucket, &tables);

    // Restart: nothing is re-read, nothing rewritten.
    let before = tb.list_objects(&bucket, "lake/");
    let mut again = tb.start_daemon(&config, dir.path(), &["--until-caught-up"]);
    let status = again.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", again.log_text());
    let log = again.log_text();
    assert!(
        log.contains("consumed=0"),
        "the restarted daemon read nothing:\n{log}"
    );
    assert_eq!(
        before,
        tb.list_objects(&bucket, "lake/"),
        "no object was added or rewritten"
    );
    assert_eq!(tb.committed(&group, &topic, PARTITIONS), ends);
}

#[test]
fn large_files_stream_up_as_multipart_uploads() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("bulk", 1);

    let n = 12_000;
    let bytes = tb.produce_events(&topic, 1, &GenConfig::default(), 0..n, n);

    // Uncompressed and one file per day: ~16 MB in one object, sent as 5 MiB parts while it is
    // written.
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            r#"[[tables]]
name = "bulk"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
compression_level = 0
"#
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &["--until-caught-up"]);
    let status = daemon.wait(Duration::from_secs(300));
    assert!(status.success(), "{}", daemon.log_text());

    let objects = tb.list_objects(&bucket, "lake/bulk/");
    let big: Vec<_> = objects
        .iter()
        .filter(|o| o["size"].as_u64().unwrap() > 5 * 1024 * 1024)
        .collect();
    assert!(!big.is_empty(), "a large object was written: {objects:?}");
    assert!(
        big.iter()
            .all(|o| o["etag"].as_str().unwrap_or_default().contains('-')),
        "large objects carry a multipart ETag (with a part count): {big:?}"
    );
    let rows = tb.duckdb(&format!(
        "SELECT count(*) AS n, count(DISTINCT eventID) AS ids FROM read_json('s3://{bucket}/lake/bulk/*/*.json.gz', hive_partitioning = true)"
    ));
    assert_eq!(
        (rows[0]["n"].as_u64(), rows[0]["ids"].as_u64()),
        (Some(n), Some(n)),
        "{}",
        rows[0]
    );
    report(&format!(
        "e2e multipart: {n} records ({:.1} MB) in {} objects, largest {} B",
        bytes as f64 / 1e6,
        objects.len(),
        big.iter()
            .map(|o| o["size"].as_u64().unwrap())
            .max()
            .unwrap()
    ));
}
