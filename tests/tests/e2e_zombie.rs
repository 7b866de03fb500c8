//! A zombie writer: one of two daemons in a group is frozen (SIGSTOP) past the session timeout
//! while its segments are open, so the group gives its partitions to the other member, which
//! re-reads them from the committed offset. Then it is thawed (SIGCONT) and finishes what it
//! had: its clock cuts, uploads and commits race the new owner's. Segment claims (create-only
//! writes) must keep every record in the lake exactly once.

use std::time::Duration;

use lakesink_e2e::{report, GroupRun};

/// What a daemon logs when another writer's claim refuses its segment.
const REFUSED: &str = "another writer claimed this segment";

#[test]
fn a_frozen_member_that_wakes_up_after_losing_its_partitions_duplicates_nothing() {
    const RECORDS: u64 = 30_000;
    const PARTITIONS: i32 = 4;
    const FREEZES: usize = 2;
    let mut run = GroupRun::start("zombie", PARTITIONS, RECORDS, Duration::from_millis(700));
    let mut conflicts = 0;
    for _ in 0..FREEZES {
        let mut zombie = run.member();
        // Let it take half the partitions and open segments.
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
        let _ = zombie.wait(Duration::from_secs(120));
        conflicts += zombie.log_text().matches(REFUSED).count();
    }
    let started = run.started;
    conflicts += run
        .finish("after the zombie woke up")
        .matches(REFUSED)
        .count();
    report(&format!(
        "e2e zombie (tansu): {RECORDS} records, {PARTITIONS} partitions, a member frozen past its session {FREEZES} times; \
         refused segment claims: {conflicts}; lost 0, duplicated 0; {:.0} s",
        started.elapsed().as_secs_f64()
    ));
}
