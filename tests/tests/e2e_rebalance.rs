//! Two daemons in one consumer group on tansu: one runs throughout, the other is stopped
//! (SIGTERM: drain, commit, leave) and started again and again while records arrive. Every
//! record ends up in the lake exactly once.

use std::time::{Duration, Instant};

use lakesink::demo::generator::GenConfig;
use lakesink_e2e::{report, wait_until, Testbed};

#[test]
fn a_member_leaving_and_joining_repeatedly_loses_and_duplicates_nothing() {
    const RECORDS: u64 = 40_000;
    const PARTITIONS: i32 = 6;
    const CYCLES: usize = 6;
    let tb = Testbed::from_env();
    let topic = Testbed::unique("rebalance");
    let bucket = Testbed::unique("lake");
    let group = Testbed::unique("lakesink");
    tb.create_topic(&topic, PARTITIONS);
    tb.create_bucket(&bucket);
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

    let gen = GenConfig {
        span_secs: 6 * 3600,
        ..GenConfig::default()
    };
    let producer = {
        let tb = tb.clone();
        let topic = topic.clone();
        std::thread::spawn(move || {
            let step = 2_000;
            for from in (0..RECORDS).step_by(step as usize) {
                tb.produce_events(&topic, PARTITIONS, &gen, from..from + step, RECORDS);
                std::thread::sleep(Duration::from_millis(1_000));
            }
        })
    };

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
    wait_until(Duration::from_secs(240), "every offset committed", || {
        assert!(
            steady.running(),
            "daemon exited early:\n{}",
            steady.log_text()
        );
        tb.committed(&group, &topic, PARTITIONS) == ends
    });
    steady.signal("TERM");
    assert!(
        steady.wait(Duration::from_secs(60)).success(),
        "{}",
        steady.log_text()
    );

    let rows = tb.duckdb(&format!(
        "SELECT count(*) AS n, count(DISTINCT eventID) AS ids \
         FROM read_json('s3://{bucket}/lake/cloudtrail/**/*.json.gz')"
    ));
    let r = &rows[0];
    assert_eq!(r["ids"], RECORDS, "lost: {r}");
    assert_eq!(r["n"], RECORDS, "duplicated: {r}");
    let revoked = steady.log_text().matches("revoked").count();
    report(&format!(
        "e2e rebalance (tansu): {RECORDS} records, {PARTITIONS} partitions, a second member joined and left {clean_exits} times \
         (the steady member saw {revoked} revocation log lines); lost 0, duplicated 0; {:.0} s",
        started.elapsed().as_secs_f64()
    ));
}
