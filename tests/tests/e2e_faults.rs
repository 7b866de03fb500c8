//! Storage faults: every request to S3 goes through a proxy that answers some with 503
//! SlowDown, resets some (before or after the server did the work) and delays some. The run
//! completes with every record exactly once, and the retries show in the log.

use std::sync::atomic::Ordering;
use std::time::Duration;

use lakesink::demo::generator::GenConfig;
use lakesink_e2e::faults::{FaultProxy, Rates};
use lakesink_e2e::{cloudtrail_table, free_port, report, sample, Testbed};

#[test]
fn s3_503s_resets_and_slow_answers_are_retried_and_nothing_is_lost_or_duplicated() {
    const RECORDS: u64 = 20_000;
    const PARTITIONS: i32 = 3;
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("faults", PARTITIONS);

    tb.produce_events(
        &topic,
        PARTITIONS,
        &GenConfig::default(),
        0..RECORDS,
        RECORDS,
    );
    let ends = tb.high_watermarks(&topic, PARTITIONS);

    let proxy = FaultProxy::start(
        &tb.s3_endpoint,
        Rates {
            slow_down: 150,
            reset_before: 60,
            reset_after: 60,
            delay: 50,
        },
    );
    let mut faulty = tb.clone();
    faulty.s3_endpoint = proxy.url.clone();
    // Two tables: many small hourly gzip files (many requests), and uncompressed daily files.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = faulty.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            r#"[http]
address = "127.0.0.1:{port}"
{}
[[tables]]
name = "daily"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
compression_level = 0
[tables.rotate]
max_age = "10s"
"#,
            cloudtrail_table(&topic, 400, "2s")
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(300));
    let counted = sample(&tb.scrape(port), "lakesink_store_retries_total", &[]).unwrap();
    daemon.stop(Duration::from_secs(120));

    let c = &proxy.counts;
    let faults = c.slow_down.load(Ordering::Relaxed)
        + c.reset_before.load(Ordering::Relaxed)
        + c.reset_after.load(Ordering::Relaxed);
    assert!(faults >= 5, "faults were injected: {c:?}");
    let log = daemon.log_text();
    let retries = log.matches("retrying").count() + log.matches("backing off").count();
    assert!(retries > 0, "retries are visible in the log:\n{log}");
    // The metric counts the store client's retries: one per "backing off" line it logs (more
    // may come after the scrape, while the daemon stops).
    let logged = log.matches("backing off").count() as f64;
    assert!(
        counted > 0.0 && counted <= logged,
        "lakesink_store_retries_total = {counted}, {logged} retries logged"
    );

    for table in ["cloudtrail", "daily"] {
        let source = format!("'s3://{bucket}/lake/{table}/**/*.json.gz'");
        tb.assert_exactly_once(&source, RECORDS, table);
    }
    report(&format!(
        "e2e S3 faults: {} requests, {} answered 503 SlowDown, {} reset before and {} after reaching the server, {} delayed 1.5 s; \
         {retries} retries logged, {counted} counted in lakesink_store_retries_total; all {RECORDS} records once in both tables",
        c.requests.load(Ordering::Relaxed),
        c.slow_down.load(Ordering::Relaxed),
        c.reset_before.load(Ordering::Relaxed),
        c.reset_after.load(Ordering::Relaxed),
        c.delay.load(Ordering::Relaxed),
    ));
}
