//! A zombie writer: one of two daemons in a group is frozen (SIGSTOP) past the session timeout
//! while its segments are open, so the group gives its partitions to the other member, which
//! re-reads them from the committed offset. Then it is thawed (SIGCONT) and finishes what it
//! had: its clock cuts, uploads and commits race the new owner's. Segment claims (create-only
//! writes) must keep every record in the lake exactly once.

use std::time::Duration;

use lakesink_e2e::{report, GroupRun};

/// A field of the daemon's last line (`drained: … consumed=N … claims_refused=N …`): the
/// run's own counters, not the wording of any message.
fn drained(log: &str, field: &str) -> u64 {
    lakesink_e2e::drained_field(log, field)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_frozen_member_that_wakes_up_after_losing_its_partitions_duplicates_nothing() {
    const RECORDS: u64 = 60_000;
    const PARTITIONS: i32 = 4;
    const FREEZES: usize = 2;
    // Slices of 2,000 records 3 s apart: the producer outlasts both freezes.
    let mut run = GroupRun::start("zombie", PARTITIONS, RECORDS, Duration::from_secs(3));
    let mut conflicts = 0;
    // Records the frozen member consumed (it reports them when it drains).
    let mut held = 0;
    for i in 0..FREEZES {
        // Its files are cut by age after a minute, not a second like the steady member's:
        // frozen while it holds records, it then wakes up with open segments to race with.
        let mut zombie = run.member_with_max_age(&format!("zombie-{i}"), "60s");
        let joining = std::time::Instant::now();
        while !zombie.log_text().contains("partition assigned") {
            assert!(
                joining.elapsed() < Duration::from_secs(90),
                "the second member got no partition within 90 s:\n{}",
                zombie.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // A slice or two of records.
        std::thread::sleep(Duration::from_secs(5));
        zombie.signal("STOP");
        // Past the session timeout (10 s): the group evicts it, the steady member re-reads.
        std::thread::sleep(Duration::from_secs(14));
        zombie.signal("CONT");
        std::thread::sleep(Duration::from_secs(4));
        assert!(
            run.steady.running(),
            "the steady member died:\n{}",
            run.steady.log_text()
        );
        // The zombie may or may not drain cleanly (its commits are refused): only the lake
        // matters.
        zombie.signal("TERM");
        let draining = std::time::Instant::now();
        let _ = zombie.wait(Duration::from_secs(120));
        if draining.elapsed() > Duration::from_secs(20) {
            eprintln!(
                "the zombie took {:.0} s to drain; its log:\n{}",
                draining.elapsed().as_secs_f64(),
                zombie.log_text()
            );
        }
        let log = zombie.log_text();
        conflicts += drained(&log, "claims_refused");
        held += drained(&log, "consumed");
    }
    let started = run.started;
    conflicts += drained(&run.finish("after the zombie woke up"), "claims_refused");
    report(&format!(
        "e2e zombie (tansu): {RECORDS} records, {PARTITIONS} partitions, a member frozen past its session {FREEZES} times; \
         records the zombie consumed: {held}; refused segment claims: {conflicts}; lost 0, duplicated 0; {:.0} s",
        started.elapsed().as_secs_f64()
    ));
}
