//! Operating the daemon from outside, on the real servers: `/metrics` (parsed by the Prometheus
//! client's own OpenMetrics parser) agrees with what DuckDB reads from the lake, `/healthz` and
//! `/readyz` answer, JSON logs are JSON line by line with the steady line among them, `${VAR}`
//! reaches the daemon, and each way of failing has its exit code.

use std::time::{Duration, Instant};

use lakesink::demo::generator::GenConfig;
use lakesink_e2e::{free_port, http_get, report, sample, wait_until, Sample, Testbed};
use serde_json::Value;

const RECORDS: u64 = 6_000;
const PARTITIONS: i32 = 2;

fn tables(topic: &str) -> String {
    format!(
        r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
on_bad_record = "dlq"
[tables.rotate]
max_records = 1000
max_age = "2s"

[[tables]]
name = "by_region"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/region={{field:awsRegion}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
on_bad_record = "dlq"
[tables.rotate]
max_records = 1000
max_age = "2s"
"#
    )
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[test]
fn metrics_agree_with_the_lake_and_logs_are_json_lines() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("operate", PARTITIONS);
    let gen = GenConfig {
        span_secs: 3 * 3600,
        ..GenConfig::default()
    };
    tb.produce_events(&topic, PARTITIONS, &gen, 0..RECORDS / 2, RECORDS);
    let bad: Vec<Option<Vec<u8>>> = vec![
        Some(b"not json at all".to_vec()),
        Some(b"[1,2,3]".to_vec()),
        Some(b"{\"eventTime\":".to_vec()),
    ];
    tb.produce_raw(&topic, 0, &bad);

    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            "[http]\naddress = \"127.0.0.1:${{METRICS_PORT}}\"\n[log]\nformat = \"json\"\ninterval = \"1s\"\n\n{}",
            tables(&topic)
        ),
    );
    // The store's secret comes from a file, as a mounted Kubernetes secret would give it.
    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, format!("{}\n", tb.s3_secret)).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("secret_access_key = \"{}\"", tb.s3_secret),
        &format!("secret_access_key_file = \"{}\"", secret.display()),
    );
    assert!(text.contains("secret_access_key_file"));
    std::fs::write(&config, text).unwrap();
    let port_s = port.to_string();
    let mut daemon =
        tb.start_daemon_with_env(&config, dir.path(), &[], &[("METRICS_PORT", &port_s)]);
    wait_until(Duration::from_secs(60), "the listener", || {
        assert!(daemon.running(), "exited:\n{}", daemon.log_text());
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert_eq!(http_get(port, "/healthz").0, 200);
    wait_until(Duration::from_secs(60), "ready", || {
        http_get(port, "/readyz").0 == 200
    });

    // While records flow: the second half arrives, the scrape parses and counts grow.
    tb.produce_events(&topic, PARTITIONS, &gen, RECORDS / 2..RECORDS, RECORDS);
    let during = tb.scrape(port);
    assert!(sample(&during, "lakesink_partitions_assigned", &[]).is_some());
    // Files are open while records flow (up to max_age = 2s): the oldest one's age shows.
    wait_until(Duration::from_secs(30), "an open file's age", || {
        sample(
            &tb.scrape(port),
            "lakesink_oldest_open_file_age_seconds",
            &[],
        )
        .is_some_and(|age| age > 0.0 && age < 60.0)
    });
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    wait_until(Duration::from_secs(180), "everything committed", || {
        assert!(daemon.running(), "exited:\n{}", daemon.log_text());
        tb.committed(&group, &topic, PARTITIONS) == ends
    });
    // Lag is refreshed once per commit interval.
    let mut m = Vec::new();
    wait_until(Duration::from_secs(30), "lag 0 in the metrics", || {
        m = tb.scrape(port);
        (0..PARTITIONS).all(|p| {
            sample(
                &m,
                "lakesink_consumer_lag",
                &[("topic", &topic), ("partition", &p.to_string())],
            ) == Some(0.0)
        })
    });

    // Records, files and bytes per table: what the lake holds.
    let mut figures = Vec::new();
    for table in ["cloudtrail", "by_region"] {
        let glob = format!("s3://{bucket}/lake/{table}/*/*/*.json.gz");
        let rows = tb.duckdb(&format!(
            "SELECT count(*) AS n, epoch_us(max(CAST(eventTime AS TIMESTAMP))) AS newest \
             FROM read_json('{glob}', hive_partitioning=false)"
        ));
        let n = rows[0]["n"].as_u64().unwrap();
        let newest_us = rows[0]["newest"].as_i64().unwrap();
        assert_eq!(n, RECORDS, "{table} holds every good record");
        let records = sum(&m, "lakesink_records_total", &[("table", table)]);
        assert_eq!(records, n as f64, "{table}: lakesink_records_total");
        assert_eq!(
            sample(
                &m,
                "lakesink_records_total",
                &[("table", table), ("topic", &topic)]
            ),
            Some(n as f64)
        );
        let objects = tb.list_objects(&bucket, &format!("lake/{table}/"));
        let sizes: u64 = objects.iter().map(|o| o["size"].as_u64().unwrap()).sum();
        assert_eq!(
            sample(&m, "lakesink_files_written_total", &[("table", table)]),
            Some(objects.len() as f64),
            "{table}: one file counted per object"
        );
        assert_eq!(
            sample(&m, "lakesink_bytes_written_total", &[("table", table)]),
            Some(sizes as f64),
            "{table}: bytes of the objects"
        );
        let watermark = sample(
            &m,
            "lakesink_event_time_watermark_seconds",
            &[("table", table)],
        )
        .expect("a watermark");
        assert!(
            (watermark - newest_us as f64 / 1e6).abs() < 1e-3,
            "{table}: watermark {watermark} is the newest event time {newest_us} µs"
        );
        assert_eq!(
            sum(&m, "lakesink_dead_letters_total", &[("table", table)]),
            3.0,
            "{table}: the three bad records"
        );
        assert_eq!(
            sample(
                &m,
                "lakesink_dead_letters_total",
                &[("table", table), ("reason", "not_an_object")]
            ),
            Some(1.0)
        );
        figures.push(format!("{table} {n} records in {} objects", objects.len()));
    }
    for (p, end) in &ends {
        assert_eq!(
            sample(
                &m,
                "lakesink_committed_offset",
                &[("topic", &topic), ("partition", &p.to_string())]
            ),
            Some(*end as f64)
        );
    }
    let last_commit = sample(&m, "lakesink_last_commit_timestamp_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        now - last_commit < 120.0,
        "committed {last_commit}, now {now}"
    );
    // Everything committed: no file is open, and the age says so.
    wait_until(Duration::from_secs(30), "no open file", || {
        let m = tb.scrape(port);
        sample(&m, "lakesink_open_files", &[]) == Some(0.0)
            && sample(&m, "lakesink_oldest_open_file_age_seconds", &[]) == Some(0.0)
    });
    assert_eq!(sample(&m, "lakesink_store_retries_total", &[]), Some(0.0));
    assert_eq!(sample(&m, "lakesink_catalog_stalled", &[]), Some(0.0));
    assert_eq!(sample(&m, "lakesink_commit_failures_total", &[]), Some(0.0));
    assert!(sample(&m, "lakesink_upload_duration_seconds_count", &[]).unwrap() > 0.0);
    assert!(sample(&m, "lakesink_buffer_limit_bytes", &[]).unwrap() > 0.0);
    assert_eq!(http_get(port, "/readyz").0, 200);
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/nothing").0, 404);
    let exposition = http_get(port, "/metrics").1;

    let t = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", daemon.log_text());

    // JSON logs: every line an object with timestamp, level, target and a message.
    let log = daemon.log_text();
    let mut steady = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(v.get(key).is_some(), "no {key}: {line}");
        }
        let message = v["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{line}"));
        if message == "steady" {
            steady += 1;
            for key in ["records_per_s", "lag", "budget_pct", "paused", "files"] {
                assert!(
                    v["fields"].get(key).is_some(),
                    "steady line lacks {key}: {line}"
                );
            }
        }
    }
    assert!(steady >= 2, "the steady line every second:\n{log}");
    // `status`, with the daemon stopped: the same offsets, and the last segment of each
    // partition from its claim.
    let vars = [("METRICS_PORT", port_s.as_str())];
    let status: Value =
        serde_json::from_str(&tb.cli(&["status", "--json"], &config, &vars)).unwrap();
    assert_eq!(status["tables"].as_array().unwrap().len(), 2, "{status}");
    for t in status["tables"].as_array().unwrap() {
        let parts = t["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), PARTITIONS as usize, "{t}");
        for p in parts {
            let end = ends[&(p["partition"].as_i64().unwrap() as i32)];
            assert_eq!(p["committed"].as_i64(), Some(end), "{p}");
            assert_eq!(p["high_watermark"].as_i64(), Some(end), "{p}");
            assert_eq!(p["lag"].as_i64(), Some(0), "{p}");
            let seg = &p["last_segment"];
            assert_eq!(
                seg["end"].as_i64(),
                Some(end),
                "the last segment ends at the commit: {p}"
            );
            assert!(seg["records"].as_u64().unwrap() > 0, "{p}");
            let newest =
                chrono::DateTime::parse_from_rfc3339(seg["newest_event_time"].as_str().unwrap())
                    .unwrap();
            assert!(newest.timestamp() > 1_000_000_000, "{p}");
        }
    }
    let text = tb.cli(&["status"], &config, &vars);
    assert!(text.contains(", lag 0; last segment ["), "{text}");
    let lines: Vec<&str> = exposition
        .lines()
        .filter(|l| l.starts_with("lakesink_records_total"))
        .collect();
    report(&format!(
        "e2e operate: {}; scrape: {}; {steady} steady lines; drained in {:.1} s; status: {}",
        figures.join(", "),
        lines.join(" | "),
        t.elapsed().as_secs_f64(),
        text.lines().nth(2).unwrap_or_default()
    ));
}

#[test]
fn each_way_of_failing_has_its_exit_code() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("exits", 1);
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &std::path::Path, vars: &[(&str, &str)]| {
        let mut d = tb.start_daemon_with_env(config, dir.path(), &[], vars);
        let status = d.wait(Duration::from_secs(120));
        (status.code(), d.log_text())
    };

    // 2: configuration (an undefined variable, named with its key and line).
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            "{}\ncatalog_table = \"${{UNDEFINED_TABLE_NAME}}\"",
            tables(&topic).split("[tables.rotate]").next().unwrap()
        ),
    );
    let (code, log) = run(&config, &[]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("UNDEFINED_TABLE_NAME") && log.contains("tables[0].catalog_table"),
        "{log}"
    );

    // 3: the store refuses for good: a wrong secret key, read from a mounted secret file.
    let secret = dir.path().join("s3-secret");
    std::fs::write(&secret, "not-the-secret\n").unwrap();
    let text =
        std::fs::read_to_string(tb.write_config(dir.path(), &group, &bucket, &tables(&topic)))
            .unwrap()
            .replace(
                &format!("secret_access_key = \"{}\"", tb.s3_secret),
                &format!("secret_access_key_file = \"{}\"", secret.display()),
            );
    std::fs::write(&config, text).unwrap();
    let (code, log) = run(&config, &[]);
    assert_eq!(code, Some(3), "{log}");
    assert!(
        !log.contains("not-the-secret"),
        "the secret is never logged:\n{log}"
    );

    // 4: a store that stays unreachable past storage.retry_timeout.
    let dead = format!("127.0.0.1:{}", free_port());
    let text =
        std::fs::read_to_string(tb.write_config(dir.path(), &group, &bucket, &tables(&topic)))
            .unwrap()
            .replace(&tb.s3_endpoint, &format!("http://{dead}"))
            .replace(
                "[storage.options]",
                "retry_timeout = \"2s\"\n[storage.options]",
            );
    std::fs::write(&config, text).unwrap();
    let (code, log) = run(&config, &[]);
    assert_eq!(code, Some(4), "{log}");

    // 5: a bad record with on_bad_record = "fail".
    tb.produce_raw(&topic, 0, &[Some(b"not json".to_vec())]);
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &tables(&topic).replace("on_bad_record = \"dlq\"", "on_bad_record = \"fail\""),
    );
    let (code, log) = run(&config, &[]);
    assert_eq!(code, Some(5), "{log}");
    assert!(
        log.contains(&format!("bad record at {topic}[0] offset 0")),
        "{log}"
    );
    report("e2e exit codes: config 2, store refused 3, store unreachable past retry_timeout 4, bad record 5");
}

#[test]
fn generate_keeps_a_topic_fed_with_events_of_now_and_the_daemon_lands_them() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("generate", PARTITIONS);
    let started = Instant::now();
    let out = std::process::Command::new(&tb.bin)
        .args(["generate", "--brokers", &tb.brokers, "--topic", &topic])
        .args(["--rate", "500", "--records", "1000", "--bad-every", "100"])
        .output()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    assert_eq!(ends.values().sum::<i64>(), 1000, "{ends:?}");
    assert!(secs >= 1.5, "1,000 events at 500/s took {secs:.1} s");

    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(dir.path(), &group, &bucket, &tables(&topic));
    let mut daemon = tb.start_daemon(&config, dir.path(), &["--until-caught-up"]);
    assert!(
        daemon.wait(Duration::from_secs(120)).success(),
        "{}",
        daemon.log_text()
    );
    let rows = tb.duckdb(&format!(
        "SELECT count(*) AS n, count(DISTINCT eventID) AS ids, \
         max(epoch(now()) - epoch(CAST(eventTime AS TIMESTAMP))) AS oldest_s \
         FROM read_json('s3://{bucket}/lake/cloudtrail/*/*/*.json.gz')"
    ));
    assert_eq!(rows[0]["n"].as_u64(), Some(990), "{rows:?}");
    assert_eq!(rows[0]["ids"].as_u64(), Some(990), "{rows:?}");
    let oldest = rows[0]["oldest_s"].as_f64().unwrap();
    assert!(
        oldest < 2.0 * 3600.0,
        "events of now (5 % up to 90 min late): {oldest} s old"
    );
    let dead = tb.list_objects(&bucket, "lake/_errors/cloudtrail/");
    assert!(!dead.is_empty(), "the 10 bad events are dead letters");
}
