//! Compaction on the real servers (tansu, SeaweedFS, moto's Glue, DuckDB, Spark): sealed hours
//! of many small files become one multi-member gzip object each, the Glue partition moves to it
//! in one call while a reader loop reads through Glue and never sees a record twice or misses
//! one; DuckDB, Python's gzip and Spark (Hadoop's gzip codec, Athena's path) read the compacted
//! objects whole; after the grace the old files go; SIGKILL at each step of a compaction, then
//! a clean run, leaves every record once and `verify` content.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lakesink_e2e::{glue_catalog, report, wait_until, InOrder, Testbed};
use serde_json::Value;

const RECORDS: u64 = 3_000;
const PARTITIONS: i32 = 2;

/// The table: gzip NDJSON, or Parquet (`ext` = "parquet") with a bloom filter on `eventID`.
fn config(topic: &str, glue: &str, database: &str, grace: &str, ext: &str) -> String {
    config_with(topic, glue, database, grace, ext, false)
}

fn config_with(
    topic: &str,
    glue: &str,
    database: &str,
    grace: &str,
    ext: &str,
    auto: bool,
) -> String {
    let format = if ext == "parquet" {
        let schema = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../schema-registry/schemas/cloudtrail.avsc")
            .canonicalize()
            .unwrap();
        format!(
            "format = \"parquet\"\nschema = {{ file = \"{}\" }}\n[tables.parquet]\nrow_group_rows = 100\nbloom_filters = [\"eventID\"]\n",
            schema.display()
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
{format}[tables.rotate]
max_records = 150
max_age = "2s"
[tables.compact]
min_files = 2
target_size = "64MiB"
grace = "{grace}"
auto = {auto}
"#,
        catalog = glue_catalog(glue, database)
    )
}

/// Lands the events and waits until the three hours below the watermark are sealed; returns
/// the daemon's config, the sealed paths and their records.
struct Landed {
    tb: Testbed,
    bucket: String,
    database: String,
    config: std::path::PathBuf,
    dir: tempfile::TempDir,
    topic: String,
    group: String,
    sealed: BTreeMap<String, u64>,
    /// `json.gz` or `parquet`.
    ext: &'static str,
}

fn land(prefix: &str, grace: &str) -> Landed {
    land_as(prefix, grace, "json.gz")
}

fn land_as(prefix: &str, grace: &str, ext: &'static str) -> Landed {
    let tb = Testbed::from_env();
    let InOrder {
        topic,
        bucket,
        group,
        database,
        ends,
    } = tb.fresh_in_order(prefix, PARTITIONS, RECORDS);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &config(&topic, &tb.glue_endpoint, &database, grace, ext),
    );
    let mut d = tb.start_daemon(&config, dir.path(), &[]);
    d.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(180));
    let mut sealed = BTreeMap::new();
    wait_until(Duration::from_secs(90), "three hours sealed", || {
        sealed = tb.manifests(&bucket, "cloudtrail");
        sealed.len() == 3
    });
    d.stop(Duration::from_secs(60));
    let sealed = sealed
        .into_iter()
        .map(|(p, m)| (p, m["records"].as_u64().unwrap()))
        .collect();
    Landed {
        tb,
        bucket,
        database,
        config,
        dir,
        topic,
        group,
        sealed,
        ext,
    }
}

/// Glue's location of each partition, by path.
fn locations(tb: &Testbed, database: &str) -> BTreeMap<String, String> {
    tb.glue_partitions(database, "cloudtrail")
        .into_iter()
        .map(|p| {
            let v = p["values"].as_array().unwrap();
            (
                format!(
                    "date={}/hour={}",
                    v[0].as_str().unwrap(),
                    v[1].as_str().unwrap()
                ),
                p["location"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// What a reader that goes through Glue reads of `paths`: (records, distinct event ids).
fn read_through_glue(tb: &Testbed, database: &str, paths: &[&String]) -> (u64, u64) {
    read_through_glue_as(tb, database, paths, "json.gz")
}

fn read_through_glue_as(tb: &Testbed, database: &str, paths: &[&String], ext: &str) -> (u64, u64) {
    let loc = locations(tb, database);
    let globs: Vec<String> = paths
        .iter()
        .map(|p| format!("'{}*.{ext}'", loc[*p]))
        .collect();
    let read = if ext == "parquet" {
        "read_parquet"
    } else {
        "read_json"
    };
    let rows = tb.duckdb(&format!(
        "SELECT count(*) AS n, count(DISTINCT eventID) AS ids FROM {read}([{}])",
        globs.join(", ")
    ));
    (
        rows[0]["n"].as_u64().unwrap(),
        rows[0]["ids"].as_u64().unwrap(),
    )
}

fn compact(tb: &Testbed, config: &Path) -> Vec<Value> {
    serde_json::from_str(&tb.cli(&["compact", "--json"], config, &[])).unwrap()
}

fn files_in(tb: &Testbed, bucket: &str, path: &str) -> (usize, u64) {
    files_in_as(tb, bucket, path, "json.gz")
}

fn files_in_as(tb: &Testbed, bucket: &str, path: &str, ext: &str) -> (usize, u64) {
    let objs: Vec<Value> = tb
        .list_objects(bucket, &format!("lake/cloudtrail/{path}/"))
        .into_iter()
        .filter(|o| o["key"].as_str().unwrap().ends_with(&format!(".{ext}")))
        .collect();
    (
        objs.len(),
        objs.iter().map(|o| o["size"].as_u64().unwrap()).sum(),
    )
}

#[test]
fn compaction_switches_readers_at_once_and_every_reader_reads_the_files() {
    let l = land("compact", "4s");
    let (tb, bucket) = (&l.tb, &l.bucket);
    let paths: Vec<&String> = l.sealed.keys().collect();
    let expected: u64 = l.sealed.values().sum();
    let before: Vec<(usize, u64)> = paths.iter().map(|p| files_in(tb, bucket, p)).collect();
    assert!(before.iter().all(|(n, _)| *n >= 4), "{before:?}");
    assert_eq!(
        read_through_glue(tb, &l.database, &paths),
        (expected, expected)
    );

    // A reader loop through Glue while the compaction runs: always every record once.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = {
        let stop = stop.clone();
        let tb = Testbed::from_env();
        let database = l.database.clone();
        let paths: Vec<String> = paths.iter().map(|p| (*p).clone()).collect();
        std::thread::spawn(move || {
            let refs: Vec<&String> = paths.iter().collect();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n < 3 {
                assert_eq!(
                    read_through_glue(&tb, &database, &refs),
                    (expected, expected),
                    "read {n}: a reader saw a duplicate or a gap"
                );
                n += 1;
            }
            n
        })
    };
    let started = Instant::now();
    let done = compact(tb, &l.config);
    let compact_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let reads = reads.join().expect("the reader loop");
    let compacted: Vec<&Value> = done.iter().filter(|d| d["action"] == "compacted").collect();
    assert_eq!(compacted.len(), 3, "{done:?}");

    let loc = locations(tb, &l.database);
    let m = tb.manifests(bucket, "cloudtrail");
    for p in &paths {
        assert!(
            loc[*p].contains(&format!("/{p}/_c000001-")),
            "{p}: {}",
            loc[*p]
        );
        let files = m[*p]["files"].as_array().unwrap();
        assert_eq!(files.len(), 1, "{p}: one compacted file");
        let key = files[0]["key"].as_str().unwrap();
        // Python's gzip reads every member.
        let lines: u64 = tb
            .python("s3_admin.py", &["gzlines", bucket, key])
            .trim()
            .parse()
            .unwrap();
        assert_eq!(lines, l.sealed[*p], "{p}");
    }
    // Spark reads them with Hadoop's gzip codec (Athena's JSON SerDe path).
    let local = tempfile::tempdir().unwrap();
    for (i, p) in paths.iter().enumerate() {
        let key = m[*p]["files"][0]["key"].as_str().unwrap().to_string();
        let file = local.path().join(format!("part-{i}.json.gz"));
        tb.python(
            "s3_admin.py",
            &["get", bucket, &key, file.to_str().unwrap()],
        );
    }
    let sql = local.path().join("sql.json");
    std::fs::write(
        &sql,
        serde_json::to_string(&vec![format!(
            "SELECT count(*) AS n, count(DISTINCT eventID) AS ids FROM json.`{}/*.json.gz`",
            local.path().display()
        )])
        .unwrap(),
    )
    .unwrap();
    let spark: Value =
        serde_json::from_str(&tb.python("spark_sql.py", &[sql.to_str().unwrap()])).unwrap();
    assert_eq!(spark[0][0]["n"], expected, "{spark}");
    assert_eq!(spark[0][0]["ids"], expected, "{spark}");

    // The old files stay through the grace, then go.
    assert_eq!(
        files_in(tb, bucket, paths[0]).0,
        before[0].0 + 1,
        "old and new during grace"
    );
    std::thread::sleep(Duration::from_secs(5));
    let done = compact(tb, &l.config);
    assert_eq!(
        done.iter().filter(|d| d["action"] == "deleted").count(),
        3,
        "{done:?}"
    );
    let after: Vec<(usize, u64)> = paths.iter().map(|p| files_in(tb, bucket, p)).collect();
    assert!(after.iter().all(|(n, _)| *n == 1), "{after:?}");
    assert_eq!(
        read_through_glue(tb, &l.database, &paths),
        (expected, expected)
    );
    let (ok, audit) = tb.verify(&l.config, &["--deep"]);
    assert!(ok, "{audit:#}");
    assert!(compact(tb, &l.config).is_empty(), "nothing more to do");

    // A late record for a compacted hour: the daemon writes it into the compaction's
    // directory, where Glue points, so readers see it as soon as it is committed, without
    // another compaction.
    let late_path = paths[1].clone();
    let late_time = {
        let (date, hour) = late_path.split_once("/hour=").unwrap();
        format!("{}T{hour}:30:00Z", date.trim_start_matches("date="))
    };
    let port = lakesink_e2e::free_port();
    let config = l.dir.path().join("with-metrics.toml");
    std::fs::write(
        &config,
        std::fs::read_to_string(&l.config).unwrap().replace(
            "[http]\naddress = \"127.0.0.1:0\"",
            &format!("[http]\naddress = \"127.0.0.1:{port}\""),
        ),
    )
    .unwrap();
    let mut d = tb.start_daemon(&config, l.dir.path(), &[]);
    wait_until(Duration::from_secs(90), "the daemon's watermark", || {
        assert!(d.running(), "{}", d.log_text());
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && lakesink_e2e::sample(
                &tb.scrape(port),
                "lakesink_completeness_watermark_seconds",
                &[("table", "cloudtrail")],
            )
            .is_some()
    });
    let late = format!(
        r#"{{"eventID":"late-after-compaction","eventTime":"{late_time}","eventName":"Late"}}"#
    );
    tb.produce_raw(&l.topic, 0, &[Some(late.into_bytes())]);
    let ends = tb.high_watermarks(&l.topic, PARTITIONS);
    d.wait_committed(tb, &l.group, &l.topic, &ends, Duration::from_secs(120));
    assert_eq!(
        read_through_glue(tb, &l.database, &paths),
        (expected + 1, expected + 1),
        "the late record is read through Glue once it is committed"
    );
    let listed = tb.list_objects(bucket, &format!("lake/cloudtrail/{late_path}/"));
    let late_keys: Vec<&str> = listed
        .iter()
        .filter_map(|o| o["key"].as_str())
        .filter(|k| k.contains("/_c000001-") && !k.contains("/part-") && k.ends_with(".json.gz"))
        .collect();
    assert_eq!(
        late_keys.len(),
        1,
        "one late file in the compaction's directory: {listed:?}"
    );
    wait_until(Duration::from_secs(90), "the late record re-sealed", || {
        tb.manifests(bucket, "cloudtrail")[&late_path]["records"].as_u64()
            == Some(l.sealed[&late_path] + 1)
    });
    d.stop(Duration::from_secs(60));
    let (ok, audit) = tb.verify(&l.config, &["--deep"]);
    assert!(ok, "{audit:#}");
    let done = compact(tb, &l.config);
    assert!(
        done.iter().all(|d| d["action"] != "compacted"),
        "one late file in place waits for min_files: {done:?}"
    );
    report(&format!(
        "e2e compact (tansu + SeaweedFS + Glue): 3 sealed hours, files per partition {:?} → {:?}, bytes {:?} → {:?}; {reads} reads through Glue during the compaction ({compact_secs:.1} s), each {expected} records once; DuckDB, Python gzip and Spark (Hadoop codec) read the multi-member files; old files deleted after the 4 s grace; verify --deep passes; a late record after the compaction lands in the compaction's directory and is read through Glue once committed",
        before.iter().map(|b| b.0).collect::<Vec<_>>(),
        after.iter().map(|b| b.0).collect::<Vec<_>>(),
        before.iter().map(|b| b.1).collect::<Vec<_>>(),
        after.iter().map(|b| b.1).collect::<Vec<_>>(),
    ));
}

#[test]
fn sigkill_at_each_step_of_a_compaction_leaves_every_record_once() {
    let l = land("compactkill", "0s");
    let (tb, bucket) = (&l.tb, &l.bucket);
    let paths: Vec<&String> = l.sealed.keys().collect();
    let expected: u64 = l.sealed.values().sum();
    // Each run dies at its first pass of one failpoint: after the record, after the catalog
    // moved the partition, in the middle of deleting the replaced files.
    for point in [
        "compact-after-record",
        "compact-after-relocate",
        "compact-mid-delete",
    ] {
        let out = std::process::Command::new(&tb.bin)
            .args(["compact", "--config"])
            .arg(&l.config)
            .env("LAKESINK_FAILPOINT", format!("{point}:1"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{point}: it should have died: {stderr}"
        );
        assert!(
            stderr.contains(&format!("failpoint {point}")),
            "{point}: {stderr}"
        );
        // Whatever the moment, a reader through Glue reads every record once.
        assert_eq!(
            read_through_glue(tb, &l.database, &paths),
            (expected, expected),
            "after {point}"
        );
    }
    compact(tb, &l.config);
    let m = tb.manifests(bucket, "cloudtrail");
    for p in &paths {
        assert_eq!(m[*p]["files"].as_array().unwrap().len(), 1, "{p}");
        assert_eq!(files_in(tb, bucket, p).0, 1, "{p}: old files deleted");
    }
    assert_eq!(
        read_through_glue(tb, &l.database, &paths),
        (expected, expected)
    );

    // The group rewound to the start: the replay rewrites no file a compaction replaced.
    let ends = tb.high_watermarks(&l.topic, PARTITIONS);
    let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &tb.brokers)
        .set("group.id", &l.group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&l.topic, p, rdkafka::Offset::Offset(0))
            .unwrap();
    }
    rdkafka::consumer::Consumer::commit(&c, &tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
    drop(c);
    let mut d = tb.start_daemon(&l.config, l.dir.path(), &[]);
    d.wait_committed(tb, &l.group, &l.topic, &ends, Duration::from_secs(180));
    d.stop(Duration::from_secs(60));
    for p in &paths {
        assert_eq!(
            files_in(tb, bucket, p).0,
            1,
            "{p}: a replaced file came back"
        );
    }
    assert!(d
        .log_text()
        .contains("not rewriting a replayed file that a compaction replaced"));
    assert_eq!(
        read_through_glue(tb, &l.database, &paths),
        (expected, expected)
    );
    let (ok, audit) = tb.verify(&l.config, &["--deep"]);
    assert!(ok, "{audit:#}");
    report(&format!(
        "e2e compact kills (tansu + SeaweedFS + Glue): SIGKILL after the record, after the catalog switch, mid-deletion; every read through Glue {expected} records once; then 1 file per sealed hour, no orphan; a rewind to offset 0 brings no replaced file back; verify --deep passes"
    ));
}

#[test]
fn parquet_partitions_compact_keeping_schema_statistics_and_bloom_filters() {
    let l = land_as("compactpq", "0s", "parquet");
    let (tb, bucket) = (&l.tb, &l.bucket);
    let paths: Vec<&String> = l.sealed.keys().collect();
    let expected: u64 = l.sealed.values().sum();
    let read = |prefix: &str| -> Value {
        serde_json::from_str(&tb.python("parquet_read.py", &[bucket, prefix])).unwrap()
    };
    let before_files: Vec<usize> = paths
        .iter()
        .map(|p| files_in_as(tb, bucket, p, l.ext).0)
        .collect();
    let before = read("lake/cloudtrail/");
    assert_eq!(
        read_through_glue_as(tb, &l.database, &paths, l.ext),
        (expected, expected)
    );
    let done = compact(tb, &l.config);
    assert_eq!(
        done.iter().filter(|d| d["action"] == "compacted").count(),
        3,
        "{done:?}"
    );
    for p in &paths {
        assert_eq!(files_in_as(tb, bucket, p, l.ext).0, 1, "{p}");
    }
    // pyarrow reads the compacted files: the same schema, every row group's bloom filter on
    // eventID, statistics on every column chunk.
    let after = read("lake/cloudtrail/");
    assert_eq!(after["schemas"], before["schemas"], "the schema is kept");
    assert_eq!(after["bloom"]["eventID"], true, "{after}");
    assert_eq!(after["stats"], before["stats"], "statistics kept: {after}");
    assert_eq!(after["rows"], before["rows"], "{after}");
    assert_eq!(
        read_through_glue_as(tb, &l.database, &paths, l.ext),
        (expected, expected)
    );
    let (ok, audit) = tb.verify(&l.config, &["--deep"]);
    assert!(ok, "{audit:#}");
    report(&format!(
        "e2e compact parquet (tansu + SeaweedFS + Glue): 3 sealed hours, files per partition {before_files:?} → [1, 1, 1]; row groups copied as bytes; pyarrow: one schema, bloom filters on eventID and statistics kept; {expected} records once through Glue; verify --deep passes"
    ));
}

#[test]
fn the_daemon_compacts_by_itself_with_auto() {
    let tb = Testbed::from_env();
    let InOrder {
        topic,
        bucket,
        group,
        database,
        ends,
    } = tb.fresh_in_order("compactauto", PARTITIONS, RECORDS);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &config_with(&topic, &tb.glue_endpoint, &database, "0s", "json.gz", true),
    );
    let mut d = tb.start_daemon(&config, dir.path(), &[]);
    d.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(180));
    // Sealed within a round or two, compacted at the next compaction pass (every minute).
    let mut m = BTreeMap::new();
    wait_until(
        Duration::from_secs(200),
        "three hours compacted by the daemon",
        || {
            assert!(d.running(), "exited:\n{}", d.log_text());
            m = tb.manifests(&bucket, "cloudtrail");
            m.len() == 3
                && m.values().all(|v| {
                    v["location"]
                        .as_str()
                        .is_some_and(|l| l.contains("/_c000001-"))
                })
        },
    );
    d.stop(Duration::from_secs(60));
    let paths: Vec<&String> = m.keys().collect();
    let expected: u64 = m.values().map(|v| v["records"].as_u64().unwrap()).sum();
    for p in &paths {
        assert_eq!(files_in(&tb, &bucket, p).0, 1, "{p}");
    }
    assert_eq!(
        read_through_glue(&tb, &database, &paths),
        (expected, expected)
    );
    let (ok, audit) = tb.verify(&config, &["--deep"]);
    assert!(ok, "{audit:#}");
    report(&format!(
        "e2e compact auto (tansu + SeaweedFS + Glue): the daemon sealed and compacted 3 hours by itself (auto = true), 1 file each, {expected} records once through Glue; verify --deep passes"
    ));
}
