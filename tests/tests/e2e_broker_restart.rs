//! The broker goes away mid-run (SIGKILL) and comes back on the same address with the same
//! storage: the daemon rides it out and every record lands exactly once.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lakesink::demo::generator::GenConfig;
use lakesink_e2e::{cloudtrail_table, report, wait_until, Testbed};

/// A tansu broker of this test's own (sqlite storage in `dir`).
fn start_tansu(tb: &Testbed, dir: &Path, port: u16) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("tansu.log")).unwrap();
    Command::new(&tb.tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .env_remove("CLUSTER_ID")
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env_remove("STORAGE_ENGINE")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start tansu")
}

fn wait_port(port: u16) {
    wait_until(Duration::from_secs(30), "the broker listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

#[test]
fn a_broker_restart_mid_run_loses_and_duplicates_nothing() {
    const HALF: u64 = 10_000;
    const PARTITIONS: i32 = 2;
    let base = Testbed::from_env();
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut broker = start_tansu(&base, dir.path(), port);
    wait_port(port);
    let tb = Testbed {
        brokers: format!("127.0.0.1:{port}"),
        ..base
    };
    let (topic, bucket, group) = tb.fresh("restart", PARTITIONS);
    let gen = GenConfig::default();
    tb.produce_events(&topic, PARTITIONS, &gen, 0..HALF, 2 * HALF);

    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &cloudtrail_table(&topic, 1000, "1s"),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    wait_until(Duration::from_secs(120), "some offsets committed", || {
        tb.committed(&group, &topic, PARTITIONS)
            .values()
            .sum::<i64>()
            > 0
    });

    // The broker dies without a goodbye, stays away a while, and comes back.
    broker.kill().unwrap();
    broker.wait().unwrap();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        daemon.running(),
        "the daemon survives the outage:\n{}",
        daemon.log_text()
    );
    let mut broker = start_tansu(&tb, dir.path(), port);
    wait_port(port);
    let outage = down.elapsed().as_secs_f64();

    tb.produce_events(&topic, PARTITIONS, &gen, HALF..2 * HALF, 2 * HALF);
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    assert_eq!(
        ends.values().sum::<i64>() as u64,
        2 * HALF,
        "the broker kept every record"
    );
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(240));
    daemon.stop(Duration::from_secs(60));

    let source = format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'");
    tb.assert_exactly_once(&source, 2 * HALF, "after the broker restart");
    let _ = broker.kill();
    let _ = broker.wait();
    report(&format!(
        "e2e broker restart: tansu killed mid-run and back after {outage:.1} s; all {} records once",
        2 * HALF
    ));
}
