//! A zombie writer: one of two daemons in a group is frozen (SIGSTOP) past the session timeout
//! while its segments are open, so the group gives its partitions to the other member, which
//! re-reads them from the committed offset. Then it is thawed (SIGCONT) and finishes what it
//! had: its clock cuts, uploads and commits race the new owner's. Segment claims (create-only
//! writes) must keep every record in the lake exactly once.

use std::time::{Duration, Instant};

use lakesink_e2e::{report, Testbed};

#[test]
fn a_frozen_member_that_wakes_up_after_losing_its_partitions_duplicates_nothing() {
    const RECORDS: u64 = 30_000;
    const PARTITIONS: i32 = 4;
    const FREEZES: usize = 2;
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("zombie", PARTITIONS);

    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 1500
max_age = "1s"
"#
        ),
    );
    let producer =
        tb.produce_in_background(&topic, PARTITIONS, RECORDS, Duration::from_millis(700));

    let started = Instant::now();
    let mut steady = tb.start_daemon(&config, dir.path(), &[]);
    let mut conflicts = 0;
    for _ in 0..FREEZES {
        let mut zombie = tb.start_daemon(&config, dir.path(), &[]);
        // Let it take half the partitions and open segments.
        std::thread::sleep(Duration::from_secs(5));
        zombie.signal("STOP");
        // Past the session timeout (10 s): the group evicts it, the steady member re-reads.
        std::thread::sleep(Duration::from_secs(14));
        zombie.signal("CONT");
        std::thread::sleep(Duration::from_secs(4));
        assert!(
            steady.running(),
            "the steady member died:\n{}",
            steady.log_text()
        );
        // The zombie may or may not drain cleanly (its commits are refused): only the lake
        // matters.
        zombie.signal("TERM");
        let _ = zombie.wait(Duration::from_secs(120));
        conflicts += zombie
            .log_text()
            .matches("another writer claimed this segment")
            .count();
    }
    producer.join().unwrap();
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    assert_eq!(ends.values().sum::<i64>() as u64, RECORDS);
    steady.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(240));
    steady.stop(Duration::from_secs(60));
    conflicts += steady
        .log_text()
        .matches("another writer claimed this segment")
        .count();

    let source = format!("'s3://{bucket}/lake/cloudtrail/**/*.json.gz'");
    tb.assert_exactly_once(&source, RECORDS, "after the zombie woke up");
    report(&format!(
        "e2e zombie (tansu): {RECORDS} records, {PARTITIONS} partitions, a member frozen past its session {FREEZES} times; \
         refused segment claims: {conflicts}; lost 0, duplicated 0; {:.0} s",
        started.elapsed().as_secs_f64()
    ));
}
