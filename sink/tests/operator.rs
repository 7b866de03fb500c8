//! What operators do to a running lake, in process: librdkafka's mock cluster as the broker
//! and a local directory as the lake. A topic created again (a new cluster with the same topic
//! names), a group rewound into the middle of segments, and commits that never succeed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lakesink::config::KafkaPlan;
use lakesink::demo::generator::{event, GenConfig};
use lakesink::demo::{produce, scan_lake, TOPIC};
use lakesink::mock::EmbeddedBroker;
use lakesink::{Control, Plan, Stats};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;

fn config(dir: &Path, brokers: &str, group: &str, extra: &str) -> Plan {
    let text = format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
[kafka.properties]
"session.timeout.ms" = "6000"
[storage]
url = "file://{dir}"
[http]
address = ""
[pipeline]
commit_interval = "200ms"
drain_timeout = "30s"
{extra}
[[tables]]
name = "cloudtrail"
topics = ["{TOPIC}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 150
max_bytes = "64MiB"
max_age = "1h"
"#,
        dir = dir.display()
    );
    Plan::from_toml(&text, "test").unwrap()
}

async fn run_until_caught_up(plan: Plan) -> lakesink::Summary {
    let control = Arc::new(Control::default());
    control.exit_when_caught_up.store(true, Ordering::SeqCst);
    tokio::time::timeout(
        Duration::from_secs(120),
        lakesink::run(plan, control, Arc::new(Stats::default())),
    )
    .await
    .expect("pipeline finished in time")
    .expect("pipeline succeeded")
}

fn broker() -> (EmbeddedBroker, String) {
    let broker = EmbeddedBroker::start(1).unwrap();
    broker.create_topic(TOPIC, PARTITIONS).unwrap();
    let brokers = broker.bootstrap_servers().to_string();
    (broker, brokers)
}

/// Every object below `dir` with its bytes.
fn objects(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Produces the demo's events `0..n` with `sequence` numbers moved up by `shift`: the same
/// event times (the same hours) as events `0..n`, told apart by their sequence.
fn produce_shifted(brokers: &str, n: u64, shift: u64) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let mut buf = String::new();
    for seq in 0..n {
        event(&GenConfig::default(), seq, n, &mut buf);
        let field = format!("\"sequence\":{seq}");
        let at = buf
            .find(&format!("{field},"))
            .or_else(|| buf.find(&format!("{field}}}")));
        let at = at.unwrap_or_else(|| panic!("no {field} in {buf}"));
        buf.replace_range(
            at..at + field.len(),
            &format!("\"sequence\":{}", seq + shift),
        );
        let part = (seq % PARTITIONS as u64) as i32;
        producer
            .send(
                BaseRecord::<(), str>::to(TOPIC)
                    .partition(part)
                    .payload(buf.as_str()),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_lands_beside_the_first_and_overwrites_nothing() {
    let n = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("cloudtrail");
    {
        let (_broker, brokers) = broker();
        produce(&brokers, 0..n, n, PARTITIONS, None).unwrap();
        run_until_caught_up(config(dir.path(), &brokers, "g", "")).await;
    }
    let first = objects(dir.path());
    let scan = scan_lake(&table, n).unwrap();
    assert_eq!((scan.distinct, scan.duplicates), (n, 0), "{scan:?}");

    // Another cluster with the same topic name (or the topic deleted and created again): its
    // offsets start at 0 again, and its events fall in the same hours.
    let (_broker, brokers) = broker();
    produce_shifted(&brokers, n, n);
    run_until_caught_up(config(dir.path(), &brokers, "g", "")).await;
    let scan = scan_lake(&table, 2 * n).unwrap();
    assert_eq!(
        (scan.distinct, scan.missing, scan.duplicates, scan.misplaced),
        (2 * n, 0, 0, 0),
        "both incarnations, every record once: {scan:?}"
    );
    let now = objects(dir.path());
    for (key, bytes) in &first {
        assert_eq!(now.get(key), Some(bytes), "{key} is unchanged");
    }
    let new: Vec<&String> = now.keys().filter(|k| !first.contains_key(*k)).collect();
    assert!(
        new.iter().all(|k| k.contains(".g1.") || k.contains(".g1/")),
        "the new incarnation's objects and claims are its generation's: {new:?}"
    );

    // Restarted, the new incarnation follows its own generation and writes nothing new.
    run_until_caught_up(config(dir.path(), &brokers, "g2", "")).await;
    assert_eq!(
        objects(dir.path()),
        now,
        "a replay rewrites the same objects"
    );
}

/// Commits `offsets` for `group` as an operator's `--reset-offsets` does: as a member of the
/// (otherwise empty) group, since the mock cluster takes commits only from members.
fn reset_group(brokers: &str, group: &str, offsets: &BTreeMap<i32, i64>) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&[TOPIC]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.assignment().unwrap().count() < offsets.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the resetting member joins"
        );
        c.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
            .unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_rewound_into_the_middle_of_segments_leaves_the_lake_as_it_was() {
    let n = 6_000;
    let (_broker, brokers) = broker();
    produce(&brokers, 0..n, n, PARTITIONS, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    run_until_caught_up(config(dir.path(), &brokers, "g", "")).await;
    let before = objects(dir.path());

    // Rewound to offsets that fall inside segments (max_records = 150 per file: a segment
    // holds a few hundred records), by different amounts per partition.
    let ends =
        lakesink::consume::high_watermarks(&KafkaPlan::plain(&brokers, "-"), TOPIC, PARTITIONS)
            .unwrap();
    let rewound: BTreeMap<i32, i64> = ends
        .iter()
        .map(|(p, end)| (*p, end / (2 + i64::from(*p)) + 37))
        .collect();
    reset_group(&brokers, "g", &rewound);
    assert_eq!(
        lakesink::consume::committed_offsets(&KafkaPlan::plain(&brokers, "g"), TOPIC, PARTITIONS)
            .unwrap(),
        rewound
    );
    run_until_caught_up(config(dir.path(), &brokers, "g", "")).await;
    let scan = scan_lake(&dir.path().join("cloudtrail"), n).unwrap();
    assert_eq!(
        (scan.distinct, scan.missing, scan.duplicates),
        (n, 0, 0),
        "{scan:?}"
    );
    let after = objects(dir.path());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the same objects and claims"
    );
    assert!(after == before, "byte for byte");
    assert_eq!(
        lakesink::consume::committed_offsets(&KafkaPlan::plain(&brokers, "g"), TOPIC, PARTITIONS)
            .unwrap(),
        ends
    );
}

/// Runs the pipeline with every offset commit failing with `error` and returns its error.
async fn run_with_commits_failing(
    error: rdkafka_sys::types::RDKafkaRespErr,
    extra: &str,
) -> (String, Arc<Stats>) {
    let (broker, brokers) = broker();
    produce(&brokers, 0..6_000, 6_000, PARTITIONS, None).unwrap();
    broker
        .fail_requests(
            rdkafka_sys::types::RDKafkaApiKey::OffsetCommit,
            &[error; 10_000],
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Stats::default());
    let control = Arc::new(Control::default());
    let got = tokio::time::timeout(
        Duration::from_secs(60),
        lakesink::run(
            config(dir.path(), &brokers, "g", extra),
            control,
            stats.clone(),
        ),
    )
    .await
    .expect("the daemon stops by itself instead of retrying forever");
    let e = got.expect_err("commits never succeed: the run fails");
    (format!("{e:#}"), stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_for_good_stops_the_daemon_at_once() {
    use rdkafka_sys::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED as Refused;
    let (e, stats) = run_with_commits_failing(Refused, "").await;
    assert!(e.contains("retrying will not help"), "{e}");
    assert!(stats.metrics.commit_failures.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_failing_past_commit_timeout_stop_the_daemon() {
    use rdkafka_sys::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT as TimedOut;
    let (e, stats) = run_with_commits_failing(TimedOut, "commit_timeout = \"3s\"").await;
    assert!(e.contains("pipeline.commit_timeout"), "{e}");
    assert!(
        stats.metrics.commit_failures.get() >= 2,
        "retried before giving up"
    );
}
