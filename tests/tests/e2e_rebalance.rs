//! Two daemons in one consumer group on tansu: one runs throughout, the other is stopped
//! (SIGTERM: drain, commit, leave) and started again and again while records arrive. Every
//! record ends up in the lake exactly once.

use std::time::Duration;

use lakesink_e2e::{report, GroupRun};

#[test]
fn a_member_leaving_and_joining_repeatedly_loses_and_duplicates_nothing() {
    const RECORDS: u64 = 40_000;
    const PARTITIONS: i32 = 6;
    const CYCLES: usize = 6;
    // The producer runs throughout, in slices of 2,000 records.
    let mut run = GroupRun::start(
        "rebalance",
        PARTITIONS,
        RECORDS,
        Duration::from_millis(1000),
    );
    let mut cycles = 0;
    let mut clean_exits = 0;
    while cycles < CYCLES || !run.producer.is_finished() {
        cycles += 1;
        let mut other = run.member();
        std::thread::sleep(Duration::from_millis(4_000 + 500 * (cycles as u64 % 5)));
        assert!(
            run.steady.running(),
            "the steady member died:\n{}",
            run.steady.log_text()
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
    let started = run.started;
    let steady_log = run.finish("after the rebalances");
    let revoked = steady_log.matches("revoked").count();
    report(&format!(
        "e2e rebalance (tansu): {RECORDS} records, {PARTITIONS} partitions, a second member joined and left {clean_exits} times \
         (the steady member saw {revoked} revocation log lines); lost 0, duplicated 0; {:.0} s",
        started.elapsed().as_secs_f64()
    ));
}
