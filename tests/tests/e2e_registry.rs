//! Schemas from a Confluent-compatible registry (served inside the test suite, with basic auth)
//! and records framed by the official confluent-kafka Python serializers, Avro and JSON Schema,
//! on tansu + SeaweedFS: every record lands in Parquet with the writer schema of its id, values
//! and instants as produced; an Avro schema change mid-stream gives files of two schemas and
//! loses nothing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lakesink_e2e::{report, Testbed};
use serde_json::Value;

struct Registry {
    child: Child,
    url: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(tb: &Testbed) -> Registry {
    let mut child = Command::new(&tb.python)
        .arg(tb.root.join("py/registry.py"))
        .args(["lake", "s3cret"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    Registry {
        child,
        url: format!("http://127.0.0.1:{}", line.trim()),
    }
}

#[allow(clippy::too_many_arguments)]
fn produce(
    tb: &Testbed,
    topic: &str,
    registry: &str,
    kind: &str,
    schema: &str,
    first: u64,
    count: u64,
) -> Vec<Value> {
    let schema = tb.root.join("py/schemas").join(schema);
    let (first, count) = (first.to_string(), count.to_string());
    serde_json::from_str(&tb.python(
        "confluent_produce.py",
        &[
            &tb.brokers,
            topic,
            registry,
            "lake:s3cret",
            kind,
            schema.to_str().unwrap(),
            &first,
            &count,
        ],
    ))
    .unwrap()
}

#[test]
fn confluent_avro_and_json_schema_records_land_typed_and_a_schema_change_rotates_the_file() {
    let tb = Testbed::from_env();
    let reg = start_registry(&tb);
    let (avro_topic, bucket, group) = tb.fresh("avro", 1);
    let json_topic = Testbed::unique("jsonschema");
    tb.create_topic(&json_topic, 1);

    // Avro: 400 records of v1, then 300 of v2 (one more field): the schema changes mid-stream.
    let mut avro = produce(&tb, &avro_topic, &reg.url, "avro", "events-v1.avsc", 0, 400);
    avro.extend(produce(
        &tb,
        &avro_topic,
        &reg.url,
        "avro",
        "events-v2.avsc",
        400,
        300,
    ));
    let json = produce(
        &tb,
        &json_topic,
        &reg.url,
        "json",
        "events.schema.json",
        0,
        500,
    );
    // Two framed records that cannot be read: an id the registry does not know, and Avro data
    // of schema 1 (the first registered: v1) cut short. They go to the dead-letter prefix.
    let first_bad = tb.high_watermarks(&avro_topic, 1)[&0];
    tb.produce_raw(
        &avro_topic,
        0,
        &[
            Some(vec![0, 0, 0, 0x27, 0x0f, 2, b'x']),
            Some(vec![0, 0, 0, 0, 1, 0x04, b'r']),
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let table = |name: &str, topic: &str| {
        format!(
            r#"[[tables]]
name = "{name}"
topics = ["{topic}"]
format = "parquet"
schema = {{ registry = "{url}", subject = "{topic}-value", username = "lake", password = "s3cret" }}
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
on_bad_record = "dlq"
[tables.rotate]
max_records = 100000
max_age = "2s"
"#,
            url = reg.url
        )
    };
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!("{}\n{}", table("av", &avro_topic), table("js", &json_topic)),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(
        &tb,
        &group,
        &avro_topic,
        &tb.high_watermarks(&avro_topic, 1),
        Duration::from_secs(120),
    );
    daemon.wait_committed(
        &tb,
        &group,
        &json_topic,
        &tb.high_watermarks(&json_topic, 1),
        Duration::from_secs(120),
    );
    daemon.stop(Duration::from_secs(60));
    let log = daemon.log_text();
    assert!(
        log.contains("schema_change"),
        "the schema change cut a segment:\n{log}"
    );

    // Avro: two schemas, every record once, values as produced.
    let pa: Value =
        serde_json::from_str(&tb.python("parquet_read.py", &[&bucket, "lake/av/"])).unwrap();
    assert_eq!(pa["rows"], 700, "{pa}");
    let schemas = pa["schemas"].as_array().unwrap();
    assert_eq!(schemas.len(), 2, "files of v1 and of v2: {pa}");
    assert_eq!(
        schemas
            .iter()
            .filter(|s| s.as_str().unwrap().contains("note:"))
            .count(),
        1,
        "{pa}"
    );
    assert!(
        pa["leaves"]["eventTime"]["logical"]
            .as_str()
            .unwrap()
            .contains("isAdjustedToUTC=true"),
        "{pa}"
    );
    assert!(
        pa["leaves"]["amount"]["logical"]
            .as_str()
            .unwrap()
            .starts_with("Decimal(precision=12, scale=2"),
        "{pa}"
    );
    assert_eq!(pa["leaves"]["day"]["logical"], "Date", "{pa}");
    let rows = tb.duckdb(&format!(
        "SELECT id, epoch_ms(eventTime) AS ms, CAST(amount AS VARCHAR) AS amount, CAST(day AS VARCHAR) AS day, \
         uid, count, ok, tags, attrs['a'] AS a, kind, \"user\".name AS user_name, note, date, hour \
         FROM read_parquet('s3://{bucket}/lake/av/*/*/*.parquet', hive_partitioning = true, union_by_name = true)"
    ));
    let by_id: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by_id.len(), 700, "no duplicates");
    for src in &avro {
        let r = by_id[src["id"].as_str().unwrap()];
        let id = &src["id"];
        assert_eq!(r["ms"], src["eventTime_ms"], "{id}");
        assert_eq!(r["amount"], src["amount"], "{id}");
        assert_eq!(r["day"], src["day"], "{id}");
        assert_eq!(r["uid"], src["uid"], "{id}");
        assert_eq!(r["count"], src["count"], "{id}");
        assert_eq!(r["ok"], src["ok"], "{id}");
        assert_eq!(r["tags"], src["tags"], "{id}");
        assert_eq!(r["a"], src["attrs"]["a"], "{id}");
        assert_eq!(r["kind"], src["kind"], "{id}");
        assert_eq!(r["user_name"], src["user"]["name"], "{id}");
        assert_eq!(
            r["note"],
            src.get("note").cloned().unwrap_or(Value::Null),
            "{id}"
        );
        let t =
            chrono::DateTime::from_timestamp_millis(src["eventTime_ms"].as_i64().unwrap()).unwrap();
        assert_eq!(
            r["date"].as_str().unwrap(),
            t.format("%Y-%m-%d").to_string()
        );
    }

    // The unreadable framed records are dead letters with their reason.
    let letters = tb.duckdb(&format!(
        "SELECT \"offset\" AS o, reason, error FROM read_json('s3://{bucket}/lake/_errors/av/*/*.json.gz') ORDER BY o"
    ));
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[0]["o"], first_bad);
    assert_eq!(letters[1]["o"], first_bad + 1);
    for l in &letters {
        assert_eq!(l["reason"], "wire_format", "{l}");
    }
    let unknown = letters[0]["error"].as_str().unwrap();
    assert!(
        unknown.contains("schema id 9999") && unknown.contains("not found"),
        "{unknown}"
    );
    let short = letters[1]["error"].as_str().unwrap();
    assert!(
        short.contains("schema id 1") && short.contains("needs"),
        "{short}"
    );

    // JSON Schema: the framed JSON with the schema of its id.
    let pj: Value =
        serde_json::from_str(&tb.python("parquet_read.py", &[&bucket, "lake/js/"])).unwrap();
    assert_eq!(pj["rows"], 500, "{pj}");
    assert_eq!(pj["leaves"]["eventTime"]["physical"], "INT64", "{pj}");
    let rows = tb.duckdb(&format!(
        "SELECT id, epoch_ms(eventTime) AS ms, count, tags, \"user\".name AS user_name, params \
         FROM read_parquet('s3://{bucket}/lake/js/*/*/*.parquet')"
    ));
    let by_id: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(by_id.len(), 500);
    for src in &json {
        let r = by_id[src["id"].as_str().unwrap()];
        assert_eq!(r["ms"], src["eventTime_ms"]);
        assert_eq!(r["count"], src["count"]);
        assert_eq!(r["tags"], src["tags"]);
        assert_eq!(r["user_name"], src["user"]["name"]);
        let params: Value = serde_json::from_str(r["params"].as_str().unwrap()).unwrap();
        assert_eq!(params, src["params"]);
    }
    report(&format!(
        "e2e registry: 700 Avro records (schema v1 then v2) and 500 JSON Schema records framed by confluent-kafka's serializers, through an in-suite registry with basic auth; {} Avro files of 2 schemas, every value as produced; an unknown schema id and truncated Avro dead-lettered as wire_format",
        pa["files"]
    ));
}

/// Compaction of a registry table whose schema changed inside a sealed hour: the files of the
/// older schema (v1) are encoded again into the newer one (v2, one optional field more), the
/// newer one's row groups copied; one file of one schema, every record once through Glue.
#[test]
fn a_schema_change_inside_a_sealed_hour_compacts_into_one_file_of_the_newer_schema() {
    let tb = Testbed::from_env();
    let reg = start_registry(&tb);
    let (topic, bucket, group) = tb.fresh("avrocompact", 1);
    let database = Testbed::unique("db");
    // Events every 7 s from 01:00: v1 until 01:46, v2 until 02:21.
    let mut avro = produce(&tb, &topic, &reg.url, "avro", "events-v1.avsc", 0, 400);
    avro.extend(produce(
        &tb,
        &topic,
        &reg.url,
        "avro",
        "events-v2.avsc",
        400,
        300,
    ));
    let hour_end = chrono::DateTime::parse_from_rfc3339("2024-01-02T02:00:00Z")
        .unwrap()
        .timestamp_millis();
    let in_hour: Vec<&Value> = avro
        .iter()
        .filter(|s| s["eventTime_ms"].as_i64().unwrap() < hour_end)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let table = format!(
        r#"{catalog}
[[tables]]
name = "av"
topics = ["{topic}"]
format = "parquet"
schema = {{ registry = "{url}", subject = "{topic}-value", username = "lake", password = "s3cret" }}
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
seal = true
allowed_lateness = "0s"
[tables.rotate]
max_records = 100000
max_age = "2s"
[tables.compact]
min_files = 2
grace = "0s"
"#,
        catalog = lakesink_e2e::glue_catalog(&tb.glue_endpoint, &database),
        url = reg.url
    );
    let config = tb.write_config(dir.path(), &group, &bucket, &table);
    let mut d = tb.start_daemon(&config, dir.path(), &[]);
    d.wait_committed(
        &tb,
        &group,
        &topic,
        &tb.high_watermarks(&topic, 1),
        Duration::from_secs(120),
    );
    let path = "date=2024-01-02/hour=01";
    lakesink_e2e::wait_until(Duration::from_secs(90), "hour 01 sealed", || {
        tb.manifests(&bucket, "av").contains_key(path)
    });
    d.stop(Duration::from_secs(60));
    let read = |prefix: &str| -> Value {
        serde_json::from_str(&tb.python("parquet_read.py", &[&bucket, prefix])).unwrap()
    };
    let before = read(&format!("lake/av/{path}/"));
    assert_eq!(before["rows"], in_hour.len(), "{before}");
    assert_eq!(
        before["schemas"].as_array().unwrap().len(),
        2,
        "v1 and v2: {before}"
    );

    let done: Vec<Value> =
        serde_json::from_str(&tb.cli(&["compact", "--json"], &config, &[])).unwrap();
    let compacted: Vec<&Value> = done.iter().filter(|d| d["action"] == "compacted").collect();
    assert_eq!(compacted.len(), 1, "{done:?}");
    assert_eq!(compacted[0]["path"], path);
    assert_eq!(
        compacted[0]["files_after"], 1,
        "one file, not one per schema: {done:?}"
    );
    let m = &tb.manifests(&bucket, "av")[path];
    let location = m["location"].as_str().unwrap().to_string();
    let after = read(&format!("lake/{location}/"));
    assert_eq!(after["files"], 1, "{after}");
    assert_eq!(after["rows"], in_hour.len(), "{after}");
    let schemas = after["schemas"].as_array().unwrap();
    assert_eq!(schemas.len(), 1, "{after}");
    assert!(
        schemas[0].as_str().unwrap().contains("note:"),
        "v2's schema: {after}"
    );
    assert!(
        after["leaves"]["amount"]["logical"]
            .as_str()
            .unwrap()
            .starts_with("Decimal(precision=12, scale=2"),
        "{after}"
    );

    // Through Glue's location: every record once, v1's without the field v2 added.
    let glue = tb.glue_partitions(&database, "av");
    let loc = glue
        .iter()
        .find(|p| p["location"].as_str().unwrap().contains(&location))
        .unwrap_or_else(|| panic!("Glue points at {location}: {glue:?}"))["location"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = tb.duckdb(&format!(
        "SELECT id, epoch_ms(eventTime) AS ms, CAST(amount AS VARCHAR) AS amount, tags, \"user\".name AS user_name, note \
         FROM read_parquet('{loc}*.parquet')"
    ));
    let by_id: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();
    assert_eq!(rows.len(), in_hour.len());
    assert_eq!(by_id.len(), in_hour.len(), "no duplicates");
    for src in &in_hour {
        let r = by_id[src["id"].as_str().unwrap()];
        let id = &src["id"];
        assert_eq!(r["ms"], src["eventTime_ms"], "{id}");
        assert_eq!(r["amount"], src["amount"], "{id}");
        assert_eq!(r["tags"], src["tags"], "{id}");
        assert_eq!(r["user_name"], src["user"]["name"], "{id}");
        assert_eq!(
            r["note"],
            src.get("note").cloned().unwrap_or(Value::Null),
            "{id}"
        );
    }
    let (ok, audit) = tb.verify(&config, &["--deep"]);
    assert!(ok, "{audit:#}");
    report(&format!(
        "e2e registry compaction: hour 01 of an Avro table held files of schemas v1 and v2 ({} files, {} rows); compacted into 1 file of v2 (v1's rows encoded again, note null), every record once through Glue (DuckDB), verify --deep passes",
        before["files"], in_hour.len()
    ));
}
