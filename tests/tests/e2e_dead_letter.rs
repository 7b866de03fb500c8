//! Bad input on tansu + SeaweedFS: every kind of bad record goes to the dead-letter prefix with
//! its reason and original bytes, the good ones to the table, and every offset is committed; with
//! `on_bad_record = "fail"` the daemon stops, names the record, and commits nothing past it.

use std::collections::BTreeMap;
use std::time::Duration;

use lakesink::demo::generator::{event, GenConfig};
use lakesink_e2e::{report, Testbed};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Good events with bad records at known offsets: (offset → reason).
fn records() -> (Vec<Option<Vec<u8>>>, BTreeMap<i64, &'static str>) {
    let bad: Vec<(&str, Option<Vec<u8>>)> = vec![
        (
            "invalid_json",
            Some(br#"{"eventTime":"2024-01-02T01:00:00Z","#.to_vec()),
        ),
        ("not_utf8", Some(b"\xff\xfe{\"a\":1}".to_vec())),
        ("empty", Some(Vec::new())),
        ("empty", None),
        ("empty", Some(b"null".to_vec())),
        ("not_an_object", Some(b"[1,2,3]".to_vec())),
        ("missing_timestamp", Some(br#"{"eventName":"x"}"#.to_vec())),
        (
            "bad_timestamp",
            Some(br#"{"eventTime":"yesterday"}"#.to_vec()),
        ),
        (
            "future_timestamp",
            Some(br#"{"eventTime":"2099-01-01T00:00:00Z"}"#.to_vec()),
        ),
        (
            "too_large",
            Some(
                format!(
                    r#"{{"eventTime":"2024-01-02T01:00:00Z","pad":"{}"}}"#,
                    "x".repeat(5000)
                )
                .into_bytes(),
            ),
        ),
    ];
    let cfg = GenConfig::default();
    let mut out = Vec::new();
    let mut expected = BTreeMap::new();
    let mut buf = String::new();
    let mut bad = bad.into_iter();
    for seq in 0..600u64 {
        if seq % 50 == 25 {
            if let Some((reason, value)) = bad.next() {
                expected.insert(out.len() as i64, reason);
                out.push(value);
                continue;
            }
        }
        event(&cfg, seq, 600, &mut buf);
        out.push(Some(buf.clone().into_bytes()));
    }
    (out, expected)
}

fn config(
    tb: &Testbed,
    dir: &std::path::Path,
    group: &str,
    bucket: &str,
    topic: &str,
    policy: &str,
) -> std::path::PathBuf {
    tb.write_config(
        dir,
        group,
        bucket,
        &format!(
            r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
on_bad_record = "{policy}"
on_missing_timestamp = "{policy}"
max_record_bytes = "4KiB"
[tables.rotate]
max_records = 100
max_age = "2s"
"#
        ),
    )
}

#[test]
fn every_kind_of_bad_record_lands_in_the_dead_letter_prefix_with_its_reason() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("bad", 1);

    let (values, expected) = records();
    tb.produce_raw(&topic, 0, &values);
    let ends = tb.high_watermarks(&topic, 1);
    assert_eq!(ends[&0], values.len() as i64);

    let dir = tempfile::tempdir().unwrap();
    // max_future_skew is 1000 days here, so the 2099 event is judged against its Kafka timestamp
    // only by a tighter table: use the default skew (1h) for this run.
    let config = config(&tb, dir.path(), &group, &bucket, &topic, "dlq");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_future_skew = \"1000d\"\n", "");
    std::fs::write(&config, text).unwrap();
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(120));
    daemon.stop(Duration::from_secs(60));

    let good = values.len() - expected.len();
    let source = format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'");
    tb.assert_exactly_once(&source, good as u64, "the good records");

    let letters = tb.duckdb(&format!(
        "SELECT \"offset\" AS o, reason, topic, \"partition\" AS p, error, value_base64 IS NULL AS tombstone, \
         hex(from_base64(coalesce(value_base64, ''))) AS value_hex, kafka_timestamp IS NOT NULL AS has_time \
         FROM read_json('s3://{bucket}/lake/_errors/cloudtrail/*/*.json.gz') ORDER BY o"
    ));
    let got: BTreeMap<i64, &str> = letters
        .iter()
        .map(|r| (r["o"].as_i64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got, expected,
        "one envelope per bad record, with its reason"
    );
    for r in &letters {
        let o = r["o"].as_i64().unwrap();
        assert_eq!(r["topic"], topic.as_str());
        assert_eq!(r["p"], 0);
        assert_eq!(r["has_time"], true);
        assert!(!r["error"].as_str().unwrap().is_empty());
        match &values[o as usize] {
            None => assert_eq!(r["tombstone"], true, "{r}"),
            Some(v) => assert_eq!(r["value_hex"], hex(v), "original bytes at {o}: {r}"),
        }
    }
    let log = daemon.log_text();
    assert!(log.contains("bad record dead-lettered"), "{log}");
    assert!(
        log.contains(&format!("dead_letters={}", expected.len())),
        "counted in the summary:\n{log}"
    );
    report(&format!(
        "e2e dead letters: {} records, {} bad ones of {} kinds in _errors/ with reason and bytes, {good} good ones in the table, all offsets committed",
        values.len(),
        expected.len(),
        expected.values().collect::<std::collections::BTreeSet<_>>().len()
    ));
}

#[test]
fn with_on_bad_record_fail_the_daemon_stops_and_names_the_record() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("badfail", 1);

    let (values, expected) = records();
    tb.produce_raw(&topic, 0, &values);
    let first_bad = *expected.keys().next().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = config(&tb, dir.path(), &group, &bucket, &topic, "fail");
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    let status = daemon.wait(Duration::from_secs(120));
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(5), "a bad record exits 5:\n{log}");
    assert!(
        log.contains(&format!("bad record at {topic}[0] offset {first_bad}")),
        "the error names table, partition and offset:\n{log}"
    );
    let committed = tb
        .committed(&group, &topic, 1)
        .get(&0)
        .copied()
        .unwrap_or(0);
    assert!(
        committed <= first_bad,
        "nothing committed past the bad record: {committed}"
    );
}

#[test]
fn dead_letters_go_to_a_kafka_topic_with_key_value_headers_and_the_reason() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("badkafka", 1);
    let dlq = Testbed::unique("dead-letters");
    tb.create_topic(&dlq, 1);

    // Good records, and bad ones that carry a key and a header of their own.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &tb.brokers)
        .set("acks", "all")
        .create()
        .unwrap();
    let mut buf = String::new();
    let mut bad = Vec::new();
    for seq in 0..300u64 {
        let key = format!("k{seq}");
        let value: Vec<u8> = if seq % 60 == 7 {
            bad.push((seq as i64, key.clone()));
            format!("{{not json {seq}").into_bytes()
        } else {
            event(&GenConfig::default(), seq, 300, &mut buf);
            buf.clone().into_bytes()
        };
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(key.as_bytes()),
        });
        producer
            .send(
                BaseRecord::to(&topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    let ends = tb.high_watermarks(&topic, 1);

    let dir = tempfile::tempdir().unwrap();
    let config = config(&tb, dir.path(), &group, &bucket, &topic, "dlq");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[[tables]]",
        &format!("[dead_letter]\nkind = \"kafka\"\ntopic = \"{dlq}\"\n\n[[tables]]"),
    );
    std::fs::write(&config, text).unwrap();
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(120));
    daemon.stop(Duration::from_secs(60));

    let good = 300 - bad.len() as u64;
    let source = format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'");
    tb.assert_exactly_once(&source, good, "the good records");

    // Read the dead-letter topic from its start.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &tb.brokers)
        .set("group.id", Testbed::unique("dlq-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&dlq, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut letters = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while letters.len() < bad.len() && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let mut h = std::collections::BTreeMap::new();
            for x in m.headers().unwrap().iter() {
                h.insert(
                    x.key.to_string(),
                    String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                );
            }
            letters.push((
                String::from_utf8_lossy(m.key().unwrap()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap()).into_owned(),
                h,
            ));
        }
    }
    assert_eq!(letters.len(), bad.len(), "one dead letter per bad record");
    for ((offset, key), (got_key, value, h)) in bad.iter().zip(&letters) {
        assert_eq!(got_key, key);
        assert!(value.starts_with("{not json"), "{value}");
        assert_eq!(h["trace"], *key, "the original headers travel along");
        assert_eq!(h["lakesink.reason"], "invalid_json");
        assert_eq!(h["lakesink.topic"], topic);
        assert_eq!(h["lakesink.partition"], "0");
        assert_eq!(h["lakesink.offset"], offset.to_string());
        assert_eq!(h["lakesink.table"], "cloudtrail");
        assert!(!h["lakesink.error"].is_empty() && !h["lakesink.timestamp"].is_empty());
    }
    report(&format!(
        "e2e dead letters to Kafka: {} bad records produced to {dlq} with key, value, their own and lakesink.* headers; {good} good ones in the table",
        bad.len()
    ));
}

#[test]
fn a_value_too_long_for_an_object_key_is_dead_lettered_and_the_partition_flows_on() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("longvalue", 1);
    // Good events, and two whose `awsRegion` (a partition field) is 1,100 bytes: a key over
    // S3's 1,024 bytes. The upload would fail on every restart; it must not be attempted.
    let mut values = Vec::new();
    let mut long = Vec::new();
    let mut buf = String::new();
    for seq in 0..300u64 {
        if seq == 40 || seq == 250 {
            long.push(values.len() as i64);
            values.push(Some(
                format!(
                    r#"{{"eventTime":"2024-01-02T01:00:00Z","awsRegion":"{}"}}"#,
                    "r".repeat(1_100)
                )
                .into_bytes(),
            ));
        } else {
            event(&GenConfig::default(), seq, 300, &mut buf);
            values.push(Some(buf.clone().into_bytes()));
        }
    }
    tb.produce_raw(&topic, 0, &values);
    let ends = tb.high_watermarks(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/region={{field:awsRegion}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
on_bad_record = "dlq"
[tables.rotate]
max_records = 100
max_age = "2s"
"#
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(120));
    daemon.stop(Duration::from_secs(60));
    tb.assert_exactly_once(
        &format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'"),
        300 - long.len() as u64,
        "the good records",
    );
    let letters = tb.duckdb(&format!(
        "SELECT \"offset\" AS o, reason, error FROM read_json('s3://{bucket}/lake/_errors/cloudtrail/*/*.json.gz') ORDER BY o"
    ));
    let got: Vec<(i64, &str)> = letters
        .iter()
        .map(|r| (r["o"].as_i64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    let want: Vec<(i64, &str)> = long
        .iter()
        .map(|o| (*o, "partition_path_too_long"))
        .collect();
    assert_eq!(got, want, "{letters:?}");
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("1,024 bytes"),
        "{letters:?}"
    );
    report(&format!(
        "e2e long partition value: {} records with a 1,100-byte awsRegion dead-lettered as partition_path_too_long, {} good ones landed, all offsets committed",
        long.len(),
        300 - long.len()
    ));
}
