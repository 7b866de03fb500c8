//! What operators do to a running lake, on tansu + SeaweedFS: the group's offsets reset into the
//! middle of segments, the daemon pointed at a new cluster whose topic has the same name, a
//! store that does not fence writers, and topics of transactional producers (markers between
//! and after the records). Each must leave every record in the lake once and overwrite nothing.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lakesink::demo::generator::{event, GenConfig};
use lakesink_e2e::{report, Testbed};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 2;

fn table(topic: &str) -> String {
    format!(
        r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 250
max_age = "2s"
"#
    )
}

/// Every object of the bucket's lake (claims too): key → ETag (the MD5 of a single PUT).
fn lake(tb: &Testbed, bucket: &str) -> BTreeMap<String, String> {
    tb.list_objects(bucket, "lake/")
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_string(),
                o["etag"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Runs a daemon on `tb`'s broker until the group has committed the topic's ends.
fn land(tb: &Testbed, bucket: &str, group: &str, topic: &str) {
    let ends = tb.high_watermarks(topic, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(dir.path(), group, bucket, &table(topic));
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(tb, group, topic, &ends, Duration::from_secs(180));
    daemon.stop(Duration::from_secs(60));
}

/// A fresh topic with `records` generated events, landed by a daemon: (topic, bucket, group,
/// the lake's objects).
fn landed(
    tb: &Testbed,
    prefix: &str,
    records: u64,
) -> (String, String, String, BTreeMap<String, String>) {
    let (topic, bucket, group) = tb.fresh(prefix, PARTITIONS);
    tb.produce_events(
        &topic,
        PARTITIONS,
        &GenConfig::default(),
        0..records,
        records,
    );
    land(tb, &bucket, &group, &topic);
    let objects = lake(tb, &bucket);
    (topic, bucket, group, objects)
}

#[test]
fn a_group_reset_into_the_middle_of_segments_leaves_the_lake_as_it_was() {
    const RECORDS: u64 = 4_000;
    let tb = Testbed::from_env();
    let (topic, bucket, group, before) = landed(&tb, "rewind", RECORDS);
    tb.assert_exactly_once(
        &format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'"),
        RECORDS,
        "the first run",
    );

    // `kafka-consumer-groups --reset-offsets`: offsets inside segments (max_records = 250 per
    // file, a few hundred records per segment), by other amounts per partition.
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &tb.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, end) in &ends {
        let to = end / (2 + i64::from(*p)) + 37;
        tpl.add_partition_offset(&topic, *p, Offset::Offset(to))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
    drop(c);
    let rewound = tb.committed(&group, &topic, PARTITIONS);
    assert!(rewound.iter().all(|(p, o)| *o < ends[p]), "{rewound:?}");

    land(&tb, &bucket, &group, &topic);
    tb.assert_exactly_once(
        &format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'"),
        RECORDS,
        "after the rewind",
    );
    let after = lake(&tb, &bucket);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the same objects and claims"
    );
    assert_eq!(after, before, "with the same bytes");
    report(&format!(
        "e2e rewind (tansu): {RECORDS} records; the group reset to {rewound:?} of {ends:?}; replayed from the claimed segments' starts: {} objects, the same keys and bytes, each record once",
        after.len()
    ));
}

/// A second tansu broker with storage of its own: another cluster.
struct OtherCluster {
    child: Child,
    brokers: String,
    _dir: tempfile::TempDir,
}

impl OtherCluster {
    fn start(tb: &Testbed) -> OtherCluster {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&tb.tansu)
            .current_dir(dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://other.db"])
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("SCHEMA_REGISTRY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a second tansu");
        let brokers = format!("127.0.0.1:{port}");
        lakesink_e2e::wait_until(Duration::from_secs(60), "the second broker listens", || {
            std::net::TcpStream::connect(&brokers).is_ok()
        });
        OtherCluster {
            child,
            brokers,
            _dir: dir,
        }
    }
}

impl Drop for OtherCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_new_cluster_with_the_same_topic_name_lands_beside_the_old_one_and_overwrites_nothing() {
    const RECORDS: u64 = 3_000;
    let tb = Testbed::from_env();
    let (topic, bucket, group, before) = landed(&tb, "recreated", RECORDS);

    // The same topic name on a new cluster: offsets from 0 again, new events for the same
    // hours (the same event times, other event ids).
    let cluster = OtherCluster::start(&tb);
    let other = Testbed {
        brokers: cluster.brokers.clone(),
        ..tb.clone()
    };
    other.create_topic(&topic, PARTITIONS);
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &other.brokers)
        .set("acks", "all")
        .create()
        .unwrap();
    let mut buf = String::new();
    let gen = GenConfig {
        seed: 7,
        ..GenConfig::default()
    };
    for seq in 0..RECORDS {
        event(&gen, seq, RECORDS, &mut buf);
        let part = (seq % PARTITIONS as u64) as i32;
        p.send(
            BaseRecord::<(), str>::to(&topic)
                .partition(part)
                .payload(buf.as_str()),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(120)).unwrap();
    land(&other, &bucket, &group, &topic);

    // Both incarnations, each record once; nothing the first one landed was touched.
    let rows = tb.duckdb(&format!(
        "SELECT count(*) AS n, count(DISTINCT eventID) AS ids \
         FROM read_json('s3://{bucket}/lake/cloudtrail/*/*/*.json.gz')"
    ));
    assert_eq!(rows[0]["n"], 2 * RECORDS, "{rows:?}");
    assert_eq!(rows[0]["ids"], 2 * RECORDS, "{rows:?}");
    let after = lake(&tb, &bucket);
    for (key, etag) in &before {
        assert_eq!(after.get(key), Some(etag), "{key} is unchanged");
    }
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        new.iter().all(|k| k.contains(".g1")),
        "the new cluster's objects and claims are a generation of their own: {new:?}"
    );
    report(&format!(
        "e2e re-created topic (tansu, a second cluster): {RECORDS} + {RECORDS} records in the same hours, each once; the first {} objects unchanged, {} new ones in generation 1",
        before.len(),
        new.len()
    ));
}

#[test]
fn a_store_that_does_not_fence_writers_is_refused_unless_run_at_least_once() {
    const RECORDS: u64 = 1_000;
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("unfenced", PARTITIONS);
    tb.produce_events(
        &topic,
        PARTITIONS,
        &GenConfig::default(),
        0..RECORDS,
        RECORDS,
    );
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    // object_store's S3 client without conditional writes: what a store that ignores
    // `If-None-Match` amounts to.
    let config = tb.write_config(dir.path(), &group, &bucket, &table(&topic));
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "allow_http = \"true\"",
        "allow_http = \"true\"\nconditional_put = \"disabled\"",
    );
    std::fs::write(&config, &text).unwrap();

    let check = Command::new(&tb.bin)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(said.contains("conditional writes: NOT enforced"), "{said}");
    assert!(said.contains("refuses to start"), "{said}");

    let mut refused = tb.start_daemon(&config, dir.path(), &[]);
    let status = refused.wait(Duration::from_secs(60));
    let log = refused.log_text();
    assert_eq!(
        status.code(),
        Some(3),
        "an unfenced store is refused, exit 3:\n{log}"
    );
    assert!(
        log.contains("does not refuse a second create-only write"),
        "{log}"
    );
    assert!(
        tb.committed(&group, &topic, PARTITIONS).is_empty(),
        "nothing committed"
    );
    assert!(
        lake(&tb, &bucket).keys().all(|k| k.contains("/_lakesink/")),
        "nothing written"
    );

    // Run anyway, at least once: every record lands, under keys of this writer's own.
    let text = text.replace(
        "[storage.options]",
        "unfenced = \"at_least_once\"\n[storage.options]",
    );
    std::fs::write(&config, &text).unwrap();
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(180));
    daemon.stop(Duration::from_secs(60));
    tb.assert_exactly_once(
        &format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'"),
        RECORDS,
        "at least once, no fault",
    );
    let keys: Vec<String> = lake(&tb, &bucket)
        .into_keys()
        .filter(|k| k.ends_with(".json.gz"))
        .collect();
    assert!(keys.iter().all(|k| k.contains(".u")), "{keys:?}");
    report("e2e unfenced store (SeaweedFS, conditional_put disabled): `check` says NOT enforced, `run` refuses to start and writes nothing; with storage.unfenced = \"at_least_once\" every record lands under writer-token keys");
}

/// Appends a transaction marker (a COMMIT control record) to partition 0, as a broker does at
/// the end of each transaction; returns its offset.
fn marker(tb: &Testbed, topic: &str) -> i64 {
    tb.python("control_batch.py", &[&tb.brokers, topic, "0", "commit"])
        .trim()
        .parse()
        .unwrap()
}

/// A topic written by transactional producers holds a marker after every transaction, and
/// consumers never see one: when a marker ends the partition, no record comes after the last
/// record. `--until-caught-up` must still exit, the group's committed offset reach the end (lag
/// 0 for any tool that reads it), and the lake hold every record once. Before this was fixed the
/// daemon never exited and the group's offset stayed one short.
#[test]
fn a_partition_that_ends_in_transaction_markers_is_read_to_its_end_and_committed_there() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("txmarkers", 1);
    let gen = GenConfig {
        late_per_mille: 0,
        ..GenConfig::default()
    };
    tb.produce_events(&topic, 1, &gen, 0..300, 600);
    assert_eq!(marker(&tb, &topic), 300);
    tb.produce_events(&topic, 1, &gen, 300..600, 600);
    assert_eq!(marker(&tb, &topic), 601);
    let ends = tb.high_watermarks(&topic, 1);
    assert_eq!(ends[&0], 602, "600 records and two markers");

    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(dir.path(), &group, &bucket, &table(&topic));
    let mut daemon = tb.start_daemon(&config, dir.path(), &["--until-caught-up"]);
    let status = daemon.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", daemon.log_text());
    assert_eq!(
        tb.committed(&group, &topic, 1),
        ends,
        "the group's offset passes the trailing marker"
    );
    let source = format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'");
    tb.assert_exactly_once(&source, 600, "markers between and after the records");

    // Only a marker since the last run: the restarted daemon takes no record, yet reads to
    // the end, exits, and commits past the marker.
    assert_eq!(marker(&tb, &topic), 602);
    let ends = tb.high_watermarks(&topic, 1);
    let before = lake(&tb, &bucket);
    let mut again = tb.start_daemon(&config, dir.path(), &["--until-caught-up"]);
    let status = again.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", again.log_text());
    assert_eq!(tb.committed(&group, &topic, 1), ends);
    assert_eq!(
        before,
        lake(&tb, &bucket),
        "no object was added or rewritten"
    );
    tb.assert_exactly_once(&source, 600, "after the restart");

    // Records after the markers: the next segment starts at its first record, so no claim
    // covers the markers at 601 and 602. `verify` asks Kafka and finds no record there: not a
    // gap. (A gap that holds records is still one: `e2e_verify`.)
    tb.produce_events(&topic, 1, &gen, 600..700, 700);
    let mut third = tb.start_daemon(&config, dir.path(), &["--until-caught-up"]);
    let status = third.wait(Duration::from_secs(120));
    assert!(status.success(), "{}", third.log_text());
    assert_eq!(
        tb.committed(&group, &topic, 1),
        tb.high_watermarks(&topic, 1)
    );
    tb.assert_exactly_once(&source, 700, "after records past the markers");
    let (ok, verified) = tb.verify(&config, &[]);
    assert!(ok, "verify finds nothing missing: {verified}");
    // (The marker at 300 lies inside a segment unless a cut fell exactly before it.)
    let passed = verified["checked"]["offsets_without_records"]
        .as_u64()
        .unwrap();
    assert!(
        (2..=3).contains(&passed),
        "the markers no claim covers (601, 602, maybe 300): {verified}"
    );
    report(&format!(
        "transaction markers: 600 records with a marker between and one after, a marker alone, then 100 records: --until-caught-up exits each time, the group commits the end ({:?} after the lone marker), and verify passes the 2 markers no claim covers",
        ends
    ));
}
