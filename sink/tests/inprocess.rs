//! In-process tests of the whole pipeline: librdkafka's mock cluster as the broker (reached over
//! TCP like any broker) and a local directory as the lake.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lakesink::config::KafkaPlan;
use lakesink::demo::{produce, scan_lake, TOPIC};
use lakesink::mock::EmbeddedBroker;
use lakesink::{Control, Plan, Stats};

const PARTITIONS: i32 = 3;

fn config(dir: &Path, brokers: &str, group: &str, max_records: u64) -> Plan {
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
[[tables]]
name = "cloudtrail"
topics = ["{TOPIC}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = {max_records}
max_bytes = "64MiB"
max_age = "1h"
"#,
        dir = dir.display()
    );
    Plan::from_toml(&text, "test").unwrap()
}

fn committed(brokers: &str, group: &str) -> BTreeMap<i32, i64> {
    lakesink::consume::committed_offsets(&KafkaPlan::plain(brokers, group), TOPIC, PARTITIONS)
        .unwrap()
}

fn high_watermarks(brokers: &str) -> BTreeMap<i32, i64> {
    lakesink::consume::high_watermarks(&KafkaPlan::plain(brokers, "-"), TOPIC, PARTITIONS).unwrap()
}

/// Lists every object under a directory with its bytes.
fn objects(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

async fn run_until_caught_up(plan: Plan, stats: Arc<Stats>) -> lakesink::Summary {
    let control = Arc::new(Control::default());
    control.exit_when_caught_up.store(true, Ordering::SeqCst);
    tokio::time::timeout(
        Duration::from_secs(120),
        lakesink::run(plan, control, stats),
    )
    .await
    .expect("pipeline finished in time")
    .expect("pipeline succeeded")
}

/// Stops a pipeline when a test ends, also when it fails, so that its threads do not keep the
/// test runtime alive.
struct StopOnDrop(Arc<Control>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn setup(records: u64) -> (EmbeddedBroker, String) {
    let broker = EmbeddedBroker::start(1).unwrap();
    broker.create_topic(TOPIC, PARTITIONS).unwrap();
    let brokers = broker.bootstrap_servers().to_string();
    // The broker keeps ~5 MiB per partition: small data sets can be produced up front.
    produce(&brokers, 0..records, records, PARTITIONS, None).unwrap();
    (broker, brokers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_records_land_in_their_own_hour_and_everything_is_committed() {
    let records = 6_000;
    let (_broker, brokers) = setup(records);
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(Stats::default());
    let summary = run_until_caught_up(config(dir.path(), &brokers, "g1", 200), stats).await;

    let scan = scan_lake(&dir.path().join("cloudtrail"), records).unwrap();
    assert_eq!(scan.distinct, records, "{scan:?}");
    assert_eq!(
        (scan.missing, scan.duplicates, scan.misplaced),
        (0, 0, 0),
        "{scan:?}"
    );
    assert!(
        scan.partitions.len() >= 5,
        "events span 5+ hours: {:?}",
        scan.partitions
    );
    assert!(
        scan.partitions.iter().any(|p| p.contains("hour=00")),
        "late events got their own hour"
    );
    assert_eq!(summary.stats.records_written, records);
    // max_records = 200 with ~330 records per partition and hour: several cuts per partition.
    assert!(summary.stats.segments_committed >= 6, "{:?}", summary.stats);
    assert_eq!(
        committed(&brokers, "g1"),
        high_watermarks(&brokers),
        "graceful end commits everything"
    );
    assert_eq!(summary.stats.lag, 0, "caught up: no lag left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_rewrites_the_same_objects_byte_for_byte() {
    let records = 5_000;
    let (_broker, brokers) = setup(records);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    run_until_caught_up(
        config(a.path(), &brokers, "first", 150),
        Arc::new(Stats::default()),
    )
    .await;
    // Another group reads everything again from the start: the cuts fall at the same offsets,
    // so the keys and the bytes are the same.
    run_until_caught_up(
        config(b.path(), &brokers, "second", 150),
        Arc::new(Stats::default()),
    )
    .await;
    let (mut oa, mut ob) = (objects(a.path()), objects(b.path()));
    // The segment claims are the same too: same starts, ends and objects.
    let claims = |o: &mut BTreeMap<String, Vec<u8>>| {
        let keys: Vec<String> = o
            .keys()
            .filter(|k| k.starts_with("_lakesink/"))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let v = o.remove(&k).unwrap();
                (k, v)
            })
            .collect::<BTreeMap<_, _>>()
    };
    let (ca, cb) = (claims(&mut oa), claims(&mut ob));
    assert!(!ca.is_empty() && ca == cb, "same segment claims");
    let dirs: std::collections::BTreeSet<&str> =
        oa.keys().map(|k| k.rsplit_once('/').unwrap().0).collect();
    assert!(
        oa.len() > 2 * dirs.len(),
        "cuts gave several files per partition path: {} files in {} paths",
        oa.len(),
        dirs.len()
    );
    assert_eq!(oa.keys().collect::<Vec<_>>(), ob.keys().collect::<Vec<_>>());
    assert!(oa == ob, "same bytes under the same keys");
    for key in oa.keys() {
        let name = key.rsplit('/').next().unwrap();
        let parts: Vec<&str> = name.trim_end_matches(".json.gz").split('+').collect();
        assert_eq!(parts.len(), 3, "{name}");
        assert_eq!(parts[0], TOPIC);
        assert_eq!(parts[2].len(), 20, "20-digit start offset in {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_midway_then_resume_gives_every_record_exactly_once() {
    let records = 8_000;
    let (_broker, brokers) = setup(records);
    let dir = tempfile::tempdir().unwrap();

    // First run: stop (as SIGTERM does) once some records are in.
    let stats = Arc::new(Stats::default());
    let control = Arc::new(Control::default());
    let run = tokio::spawn(lakesink::run(
        config(dir.path(), &brokers, "g", 900),
        control.clone(),
        stats.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.records_in.load(Ordering::Relaxed) < 2_000 {
        assert!(Instant::now() < deadline, "records arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    control.stop();
    let first = run.await.unwrap().expect("drain succeeds");
    assert!(
        first.stats.records_in < records,
        "stopped midway: {:?}",
        first.stats
    );
    assert_eq!(
        first.stats.records_written, first.stats.records_in,
        "drain uploads everything consumed"
    );
    let after_first: i64 = committed(&brokers, "g").values().sum();
    assert_eq!(
        after_first as u64, first.stats.records_in,
        "and commits exactly that"
    );

    // Second run resumes at the committed offsets.
    let second = run_until_caught_up(
        config(dir.path(), &brokers, "g", 900),
        Arc::new(Stats::default()),
    )
    .await;
    assert_eq!(
        first.stats.records_in + second.stats.records_in,
        records,
        "nothing re-read"
    );
    let scan = scan_lake(&dir.path().join("cloudtrail"), records).unwrap();
    assert_eq!(
        (scan.distinct, scan.missing, scan.duplicates, scan.misplaced),
        (records, 0, 0, 0),
        "{scan:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_joining_and_leaving_loses_and_duplicates_nothing() {
    let total = 8_000;
    let broker = EmbeddedBroker::start(1).unwrap();
    broker.create_topic(TOPIC, PARTITIONS).unwrap();
    let brokers = broker.bootstrap_servers().to_string();
    // Small data (~4 MB per partition at most): no pacing needed.
    produce(&brokers, 0..total / 2, total, PARTITIONS, None).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let start = |stats: &Arc<Stats>, control: &Arc<Control>| {
        tokio::spawn(lakesink::run(
            config(dir.path(), &brokers, "rb", 300),
            control.clone(),
            stats.clone(),
        ))
    };
    let (stats_a, control_a) = (Arc::new(Stats::default()), Arc::new(Control::default()));
    let _stop_a = StopOnDrop(control_a.clone());
    let a = start(&stats_a, &control_a);
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats_a.records_in.load(Ordering::Relaxed) < 1_000 {
        assert!(Instant::now() < deadline, "member A consumes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // B joins: A must upload and commit what it revokes before B reads it.
    let (stats_b, control_b) = (Arc::new(Stats::default()), Arc::new(Control::default()));
    let _stop_b = StopOnDrop(control_b.clone());
    let b = start(&stats_b, &control_b);
    // A cooperative rebalance takes a few session intervals on the mock cluster.
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats_b.metrics.partitions_assigned.get() == 0 {
        assert!(Instant::now() < deadline, "member B got partitions");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stats_a.metrics.partitions_assigned.get() < i64::from(PARTITIONS),
        "A gave some up"
    );
    let brokers2 = brokers.clone();
    tokio::task::spawn_blocking(move || {
        produce(&brokers2, total / 2..total, total, PARTITIONS, None).unwrap()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats_b.records_in.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "member B consumes its partitions"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A leaves (its partitions move to B), then B finishes the topic.
    control_a.stop();
    let sa = a.await.unwrap().expect("A drains");
    // "Caught up" is judged on B's own assignment: let the group hand it A's partitions first.
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats_b.metrics.partitions_assigned.get() < i64::from(PARTITIONS) {
        assert!(Instant::now() < deadline, "B took over A's partitions");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    control_b.exit_when_caught_up.store(true, Ordering::SeqCst);
    let sb = tokio::time::timeout(Duration::from_secs(120), b)
        .await
        .expect("B finishes")
        .unwrap()
        .expect("B drains");

    let scan = scan_lake(&dir.path().join("cloudtrail"), total).unwrap();
    assert_eq!(
        (scan.distinct, scan.missing, scan.duplicates, scan.misplaced),
        (total, 0, 0, 0),
        "A read {}, B read {}: {scan:?}",
        sa.stats.records_in,
        sb.stats.records_in
    );
    assert_eq!(committed(&brokers, "rb"), high_watermarks(&brokers));
}
