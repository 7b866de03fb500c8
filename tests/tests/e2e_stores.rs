//! The stores beyond S3, proven rather than only compiled: Azure Blob Storage (Azurite, the
//! emulator Microsoft ships) under the same crash test as S3, read back with Microsoft's own SDK.
//!
//! GCS is not here: no GCS emulator that accepts object_store's requests installs on these
//! machines (docs/DESIGN.md, "Storage and broker faults").

use std::time::{Duration, Instant};

use lakesink_e2e::{report, Testbed};
use serde_json::Value;

const RECORDS: u64 = 20_000;
const PARTITIONS: i32 = 3;

#[test]
fn azure_blob_lands_each_record_once_through_sigkills_and_check_sees_create_only_writes() {
    let tb = Testbed::from_env();
    let topic = Testbed::unique("azure");
    let group = Testbed::unique("lakesink");
    let container = Testbed::unique("lake");
    tb.create_topic(&topic, PARTITIONS);
    tb.create_container(&container);

    let dir = tempfile::tempdir().unwrap();
    let config = tb.write(
        dir.path(),
        &group,
        &tb.azure_storage(&container),
        "part_size = \"5MiB\"",
        &format!(
            r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 1500
max_age = "1s"
"#
        ),
    );

    // `check` reaches the container and finds that a second create-only write is refused:
    // segment claims fence a writer that lost its partition, so the daemon runs exactly once.
    let checked = tb.cli(&["check"], &config, &[]);
    assert!(
        checked.contains(&format!("storage: az://{container}/lake (reachable"))
            && checked.contains("conditional writes: enforced"),
        "lakesink check on Azurite:\n{checked}"
    );
    assert!(
        checked.contains("access_key = ***") && !checked.contains(lakesink_e2e::AZURITE_KEY),
        "check prints the account key:\n{checked}"
    );

    // Records keep arriving while the daemon is killed: by the failpoints between a segment's
    // claim and its objects and between upload and commit, and at a random moment.
    let producer =
        tb.produce_in_background(&topic, PARTITIONS, RECORDS, Duration::from_millis(700));
    let started = Instant::now();
    let (mut failpoint_kills, mut other_kills) = (0, 0);
    for round in 0..6 {
        let within = Duration::from_millis(3_000 + 1_500 * round);
        match tb.run_until_failpoint_or_kill(&config, dir.path(), within) {
            None => other_kills += 1,
            Some(_) => failpoint_kills += 1,
        }
    }
    producer.join().unwrap();
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    assert_eq!(ends.values().sum::<i64>() as u64, RECORDS);

    let mut last = tb.start_daemon(&config, dir.path(), &[]);
    last.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(300));
    last.stop(Duration::from_secs(60));

    // Read back by Microsoft's SDK, not by object_store.
    let landed: Value = serde_json::from_str(&tb.python(
        "azure_admin.py",
        &["records", &container, "lake/cloudtrail/"],
    ))
    .unwrap();
    assert_eq!(landed["ids"], RECORDS, "lost records in Azure: {landed}");
    assert_eq!(
        landed["records"], RECORDS,
        "duplicated records in Azure: {landed}"
    );
    let keys = landed["keys"].as_array().unwrap();
    assert!(
        keys.iter().all(|k| {
            let k = k.as_str().unwrap();
            k.starts_with("lake/cloudtrail/date=") && k.contains(&format!("/{topic}+"))
        }),
        "object keys: {keys:?}"
    );
    // The lake's own bookkeeping agrees: every committed offset claimed, every object listed
    // once and whole (checksums and records read back).
    let audit = tb.cli(&["verify", "--deep"], &config, &[]);
    report(&format!(
        "e2e Azure Blob (Azurite): {RECORDS} records in {} files, {} SIGKILLs ({failpoint_kills} by failpoints, {other_kills} at random moments) while producing; lost 0, duplicated 0 (read by azure-storage-blob); verify --deep: {}; {:.0} s",
        keys.len(),
        failpoint_kills + other_kills,
        audit.lines().last().unwrap_or_default(),
        started.elapsed().as_secs_f64()
    ));
}
