//! Two daemons in one consumer group on tansu: one runs throughout, the other is stopped
//! (SIGTERM: drain, commit, leave) and started again and again while records arrive. Every
//! record ends up in the lake exactly once.

use std::time::{Duration, Instant};

use lakesink_e2e::{report, Testbed};

#[test]
fn a_member_leaving_and_joining_repeatedly_loses_and_duplicates_nothing() {
    const RECORDS: u64 = 40_000;
    const PARTITIONS: i32 = 6;
    const CYCLES: usize = 6;
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("rebalance", PARTITIONS);

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
    // The producer runs throughout, in slices of 2,000 records.
    let producer =
        tb.produce_in_background(&topic, PARTITIONS, RECORDS, Duration::from_millis(1000));

    let started = Instant::now();
    let mut steady = tb.start_daemon(&config, dir.path(), &[]);
    let mut cycles = 0;
    let mut clean_exits = 0;
    while cycles < CYCLES || !producer.is_finished() {
        cycles += 1;
        let mut other = tb.start_daemon(&config, dir.path(), &[]);
        std::thread::sleep(Duration::from_millis(4_000 + 500 * (cycles as u64 % 5)));
        assert!(
            steady.running(),
            "the steady member died:\n{}",
            steady.log_text()
        );
        other.signal("TERM");
        let status = other.wait(Duration::from_secs(120));
        assert!(
            status.success(),
            "the leaving member drains cleanly:\n{}",
            other.log_text()
        );
        clean_exits += 1;
        std::thread::sleep(Duration::from_millis(1_000));
        assert!(cycles < 40, "the producer never finished");
    }
    producer.join().unwrap();
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    assert_eq!(ends.values().sum::<i64>() as u64, RECORDS);
    steady.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(240));
    steady.stop(Duration::from_secs(60));

    let source = format!("'s3://{bucket}/lake/cloudtrail/**/*.json.gz'");
    tb.assert_exactly_once(&source, RECORDS, "after the rebalances");
    let revoked = steady.log_text().matches("revoked").count();
    report(&format!(
        "e2e rebalance (tansu): {RECORDS} records, {PARTITIONS} partitions, a second member joined and left {clean_exits} times \
         (the steady member saw {revoked} revocation log lines); lost 0, duplicated 0; {:.0} s",
        started.elapsed().as_secs_f64()
    ));
}
