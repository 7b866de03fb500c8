//! Crash tests: the daemon is killed with SIGKILL again and again while records (some of them
//! late) keep arriving, sometimes at random moments and sometimes by failpoints: between a
//! segment's claim and its objects, and between its upload and its commit. In the end every
//! record is in the lake exactly once, and the lake's bookkeeping (its segment claims) covers
//! every offset and lists every object once.

use std::time::{Duration, Instant};

use lakesink_e2e::{report, wait_until, Testbed};

const RECORDS: u64 = 100_000;
const PARTITIONS: i32 = 4;
const KILLS: usize = 12;

#[test]
fn sigkill_at_random_moments_and_between_upload_and_commit_loses_and_duplicates_nothing() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("chaos", PARTITIONS);

    // Clock cuts (max_age) as well as count cuts, so replays meet segments a replay would not
    // cut at the same offsets; 5 % late records; two tables.
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 3000
max_age = "1s"

[[tables]]
name = "by_region"
topics = ["{topic}"]
partition_by = "region={{field:awsRegion}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 5000
max_age = "700ms"
"#
        ),
    );
    // The producer runs throughout, in slices of 2,000 records.
    let producer =
        tb.produce_in_background(&topic, PARTITIONS, RECORDS, Duration::from_millis(1500));

    let started = Instant::now();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut random_kills, mut failpoint_kills, mut busy_kills) = (0, 0, 0);
    let mut after_claim_kills = 0;
    let mut round = 0;
    // At least KILLS kills, and kills until the producer is done.
    while round < KILLS || (!producer.is_finished() && round < 3 * KILLS) {
        round += 1;
        if round % 2 == 1 {
            // The failpoints kill the daemon between a claim and its objects, or between
            // upload and commit.
            match tb.run_until_failpoint_or_kill(&config, dir.path(), Duration::from_secs(25)) {
                None => random_kills += 1,
                Some(log) => {
                    failpoint_kills += 1;
                    after_claim_kills += usize::from(log.contains("failpoint crash-after-claim"));
                }
            }
        } else {
            let mut d = tb.start_daemon(&config, dir.path(), &[]);
            std::thread::sleep(Duration::from_millis(2_000 + rand() % 6_000));
            assert!(d.running(), "the daemon died by itself:\n{}", d.log_text());
            let produced: i64 = tb.high_watermarks(&topic, PARTITIONS).values().sum();
            let committed: i64 = tb.committed(&group, &topic, PARTITIONS).values().sum();
            busy_kills += usize::from(committed < produced);
            d.signal("KILL");
            d.wait(Duration::from_secs(10));
            random_kills += 1;
        }
    }
    producer.join().unwrap();
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    assert_eq!(ends.values().sum::<i64>() as u64, RECORDS);
    let before_final = tb.committed(&group, &topic, PARTITIONS);

    // A last, undisturbed run catches up and drains. (Should tansu's group coordinator stall
    // anyway — see `TANSU_ASSIGNMENT` — a final member that commits nothing for 60 s is
    // replaced, and the replacements are reported.)
    let mut last = tb.start_daemon(&config, dir.path(), &[]);
    let mut progress = (Instant::now(), tb.committed(&group, &topic, PARTITIONS));
    let mut replaced = 0;
    wait_until(Duration::from_secs(360), "every offset committed", || {
        assert!(last.running(), "daemon exited early:\n{}", last.log_text());
        let now = tb.committed(&group, &topic, PARTITIONS);
        if now != progress.1 {
            progress = (Instant::now(), now.clone());
        } else if progress.0.elapsed() > Duration::from_secs(60) {
            last.signal("KILL");
            last.wait(Duration::from_secs(10));
            last = tb.start_daemon(&config, dir.path(), &[]);
            progress.0 = Instant::now();
            replaced += 1;
        }
        now == ends
    });
    last.stop(Duration::from_secs(60));

    for table in ["cloudtrail", "by_region"] {
        let source = format!("'s3://{bucket}/lake/{table}/**/*.json.gz'");
        tb.assert_exactly_once(&source, RECORDS, table);
    }
    let claims = tb.assert_bookkeeping(&bucket, &["cloudtrail", "by_region"], &topic, &ends);
    let (ok, audit) = tb.verify(&config, &["--deep"]);
    assert!(ok, "lakesink verify --deep after the kills: {audit:#}");
    let committed_before: i64 = before_final.values().sum();
    report(&format!(
        "e2e chaos (tansu + SeaweedFS): {RECORDS} records, {} SIGKILLs ({failpoint_kills} by failpoints, {after_claim_kills} of them between a claim and its objects, the others between upload and commit; {random_kills} at random moments); \
         {claims} segment claims cover every offset and list every object once; \
         {busy_kills} random kills with records consumed but not yet committed; \
         {committed_before} offsets committed before the final run ({replaced} final members replaced for want of progress); \
         lost 0, duplicated 0 in both tables; {:.0} s",
        failpoint_kills + random_kills,
        started.elapsed().as_secs_f64()
    ));
}

#[test]
fn sigkill_in_the_middle_of_a_multipart_upload_loses_and_duplicates_nothing() {
    const RECORDS: u64 = 9_000;
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("multipart", 1);
    // One hour of events into one partition, stored uncompressed: the hour's file passes the
    // 5 MiB part size (~12 MB), so it goes up as a multipart upload.
    let gen = lakesink::demo::generator::GenConfig {
        span_secs: 1800,
        late_per_mille: 0,
        ..Default::default()
    };
    tb.produce_events(&topic, 1, &gen, 0..RECORDS, RECORDS);
    let ends = tb.high_watermarks(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
compression_level = 0
[tables.rotate]
max_records = 1000000
max_bytes = "256MiB"
max_age = "15s"
"#
        ),
    );
    // The failpoint kills the daemon once a file's parts are uploaded and before the upload is
    // completed: its claim is in the store, its object is not.
    let mut d = tb.start_daemon_with_env(
        &config,
        dir.path(),
        &[],
        &[("LAKESINK_FAILPOINT", "crash-mid-multipart:1")],
    );
    let status = d.wait(Duration::from_secs(180));
    let log = d.log_text();
    assert!(
        !status.success() && log.contains("failpoint crash-mid-multipart"),
        "killed in the middle of a multipart upload:\n{log}"
    );
    assert!(
        tb.committed(&group, &topic, 1).is_empty(),
        "nothing committed"
    );
    let claims = tb.python(
        "s3_admin.py",
        &[
            "json",
            &bucket,
            &format!("lake/_lakesink/segments/{topic}/"),
        ],
    );
    assert!(
        claims.contains("\"start\": 0"),
        "the segment was claimed: {claims}"
    );

    let mut last = tb.start_daemon(&config, dir.path(), &[]);
    last.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(240));
    last.stop(Duration::from_secs(60));
    tb.assert_exactly_once(
        &format!("'s3://{bucket}/lake/cloudtrail/**/*.json.gz'"),
        RECORDS,
        "after the kill",
    );
    let sizes: Vec<u64> = tb
        .list_objects(&bucket, "lake/cloudtrail/")
        .iter()
        .map(|o| o["size"].as_u64().unwrap())
        .collect();
    assert!(
        sizes.iter().any(|s| *s > 5 << 20),
        "a file over the part size: {sizes:?}"
    );
    let n = tb.assert_bookkeeping(&bucket, &["cloudtrail"], &topic, &ends);
    report(&format!(
        "e2e multipart kill (tansu + SeaweedFS): {RECORDS} records, killed between a file's uploaded parts and its completion; the replay completed it from its claim ({n} claims cover every offset, every object listed once); largest object {} MB; lost 0, duplicated 0",
        sizes.iter().max().unwrap() / 1_000_000
    ));
}
