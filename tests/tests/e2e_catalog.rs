//! Catalog registration end to end: tansu + SeaweedFS with AWS Glue on moto (directly and
//! through a proxy that takes it away mid-run) and a webhook receiver.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lakesink::demo::generator::GenConfig;
use lakesink_e2e::proxy::{Mode, Proxy};
use lakesink_e2e::receiver::Receiver;
use lakesink_e2e::{free_port, glue_catalog, http_get, report, sample, wait_until, Testbed};
use serde_json::Value;

fn table(topic: &str, name: &str) -> String {
    format!(
        r#"[[tables]]
name = "{name}"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = 2000
max_age = "2s"
"#
    )
}

fn hive_catalog(uri: &str, database: &str) -> String {
    format!("[catalog]\nkind = \"hive\"\nuri = \"{uri}\"\ndatabase = \"{database}\"\ncreate_table = true\n")
}

/// One uploaded object: its partition path below the table, Kafka partition, first offset.
#[derive(Debug)]
struct Object {
    path: String,
    partition: i32,
    offset: i64,
}

fn objects(tb: &Testbed, bucket: &str, table: &str) -> Vec<Object> {
    let prefix = format!("lake/{table}/");
    tb.list_objects(bucket, &prefix)
        .iter()
        .map(|o| {
            let key = o["key"].as_str().unwrap();
            let rest = &key[prefix.len()..];
            let (path, name) = rest.rsplit_once('/').unwrap();
            let mut it = name.trim_end_matches(".json.gz").rsplitn(3, '+');
            let offset = it.next().unwrap().parse().unwrap();
            let partition = it.next().unwrap().parse().unwrap();
            Object {
                path: path.to_string(),
                partition,
                offset,
            }
        })
        .collect()
}

/// Glue partitions of a table as paths (`date=…/hour=…`) → the partition's Glue record.
fn glue_paths(tb: &Testbed, database: &str, table: &str) -> BTreeMap<String, Value> {
    by_path(tb.glue_partitions(database, table))
}

/// Catalog partitions (`values`: [date, hour]) by their path `date=…/hour=…`.
fn by_path(partitions: Vec<Value>) -> BTreeMap<String, Value> {
    partitions
        .into_iter()
        .map(|p| {
            let v: Vec<&str> = p["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            (format!("date={}/hour={}", v[0], v[1]), p)
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn glue_lists_exactly_the_partitions_that_hold_objects() {
    const RECORDS: u64 = 12_000;
    const PARTITIONS: i32 = 3;
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("glue", PARTITIONS);
    let database = Testbed::unique("logs").replace('-', "_");
    tb.produce_events(
        &topic,
        PARTITIONS,
        &GenConfig::default(),
        0..RECORDS,
        RECORDS,
    );
    let ends = tb.high_watermarks(&topic, PARTITIONS);

    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            "{}\n{}",
            glue_catalog(&tb.glue_endpoint, &database),
            table(&topic, "cloudtrail")
        ),
    );
    let started = Instant::now();
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(300));
    let secs = started.elapsed().as_secs_f64();
    daemon.stop(Duration::from_secs(60));

    // The table Lakesink created: partition keys as partition_by declares, the JSON SerDe.
    let t = tb.glue_table(&database, "cloudtrail");
    assert_eq!(
        t["partition_keys"],
        serde_json::json!([{"name": "date", "type": "string"}, {"name": "hour", "type": "string"}])
    );
    assert_eq!(t["serde"], "org.openx.data.jsonserde.JsonSerDe");
    assert_eq!(t["location"], format!("s3://{bucket}/lake/cloudtrail/"));

    // Exactly the partitions that hold objects, each at its own location.
    let held: BTreeSet<String> = objects(&tb, &bucket, "cloudtrail")
        .into_iter()
        .map(|o| o.path)
        .collect();
    let glue = glue_paths(&tb, &database, "cloudtrail");
    assert_eq!(glue.keys().cloned().collect::<BTreeSet<_>>(), held);
    assert!(held.len() >= 5, "several hours: {held:?}");
    for (path, p) in &glue {
        assert_eq!(
            p["location"],
            format!("s3://{bucket}/lake/cloudtrail/{path}/"),
            "{p}"
        );
        assert_eq!(p["serde"], "org.openx.data.jsonserde.JsonSerDe", "{p}");
        assert_eq!(
            p["input_format"], "org.apache.hadoop.mapred.TextInputFormat",
            "{p}"
        );
    }

    // A reader that knows only what Glue lists finds every record once.
    let globs: Vec<String> = glue
        .values()
        .map(|p| format!("'{}*.json.gz'", p["location"].as_str().unwrap()))
        .collect();
    tb.assert_exactly_once(
        &format!("[{}]", globs.join(", ")),
        RECORDS,
        "Glue's locations",
    );

    // `lakesink status` asks Glue too: the same partitions, the newest last.
    let status: Value = serde_json::from_str(&tb.cli(&["status", "--json"], &config, &[])).unwrap();
    let t = &status["tables"][0];
    assert_eq!(
        t["catalog_partitions"].as_u64(),
        Some(held.len() as u64),
        "{t}"
    );
    assert_eq!(
        t["catalog_newest"].as_str(),
        held.iter().next_back().map(String::as_str),
        "{t}"
    );
    // `check` reaches Glue and says what it found.
    let said = tb.cli(&["check"], &config, &[]);
    assert!(
        said.contains(&format!(
            "table {database}.cloudtrail: found, {} partitions",
            held.len()
        )),
        "{said}"
    );

    let log = daemon.log_text();
    let registered = log.matches("partitions registered").count();
    report(&format!(
        "e2e glue (moto): {RECORDS} records, {} partitions registered in {registered} calls taking {} ms in all, all committed {secs:.1} s after start",
        glue.len(),
        drained(&log, "catalog_ms")
    ));
}

#[test]
fn a_glue_outage_holds_commits_back_and_everything_lands_once_it_returns() {
    const RECORDS: u64 = 16_000;
    const PARTITIONS: i32 = 2;
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("outage", PARTITIONS);
    let database = Testbed::unique("logs").replace('-', "_");
    let upstream = tb.glue_endpoint.trim_start_matches("http://").to_string();
    let proxy = Proxy::start(&upstream);

    // Eight event hours; the first half is produced before the outage, the second during it,
    // so the outage meets partitions the catalog has never seen.
    let gen = GenConfig {
        span_secs: 8 * 3600,
        ..GenConfig::default()
    };
    let half = RECORDS / 2;
    tb.produce_events(&topic, PARTITIONS, &gen, 0..half, RECORDS);
    let first = tb.high_watermarks(&topic, PARTITIONS);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            "[http]\naddress = \"127.0.0.1:{port}\"\n{}\n{}",
            glue_catalog(&proxy.url(), &database),
            table(&topic, "cloudtrail")
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    wait_until(Duration::from_secs(300), "the first half committed", || {
        assert!(
            daemon.running(),
            "daemon exited early:\n{}",
            daemon.log_text()
        );
        tb.committed(&group, &topic, PARTITIONS) == first
    });
    let before: BTreeSet<String> = glue_paths(&tb, &database, "cloudtrail")
        .into_keys()
        .collect();

    // Outage: refused connections first, then connections that hang.
    proxy.set(Mode::Refuse);
    let outage = Instant::now();
    tb.produce_events(&topic, PARTITIONS, &gen, half..RECORDS, RECORDS);
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    wait_until(
        Duration::from_secs(120),
        "objects in partitions Glue lacks",
        || {
            objects(&tb, &bucket, "cloudtrail")
                .iter()
                .any(|o| !before.contains(&o.path))
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    proxy.set(Mode::Stall);
    std::thread::sleep(Duration::from_secs(5));

    // No offset has moved past an object whose partition is not registered.
    let glue_now: BTreeSet<String> = glue_paths(&tb, &database, "cloudtrail")
        .into_keys()
        .collect();
    assert_eq!(glue_now, before, "nothing registered while unreachable");
    let committed = tb.committed(&group, &topic, PARTITIONS);
    let objs = objects(&tb, &bucket, "cloudtrail");
    let unregistered: Vec<&Object> = objs.iter().filter(|o| !before.contains(&o.path)).collect();
    assert!(!unregistered.is_empty());
    for o in &unregistered {
        let c = committed.get(&o.partition).copied().unwrap_or(0);
        assert!(
            c <= o.offset,
            "partition {} committed to {c}, past the unregistered object {o:?}",
            o.partition
        );
    }
    assert_ne!(
        committed, ends,
        "not everything may be committed during the outage"
    );
    // The outage is visible from outside: not ready (with the reason), still alive, and the
    // metrics say what is paused and why.
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("catalog"), "{body}");
    assert_eq!(
        http_get(port, "/healthz").0,
        200,
        "a stalled catalog is no reason to restart"
    );
    let m = tb.scrape(port);
    assert_eq!(sample(&m, "lakesink_catalog_stalled", &[]), Some(1.0));
    assert_eq!(
        sample(&m, "lakesink_fetch_paused", &[("reason", "catalog")]),
        Some(1.0)
    );
    assert!(sample(&m, "lakesink_catalog_retries_total", &[]).unwrap() > 0.0);
    let peak_kib = rss_kib(daemon.pid());
    assert!(
        peak_kib < 256 * 1024 + 200 * 1024,
        "peak RSS {peak_kib} KiB beyond the 256 MiB budget plus overhead"
    );

    // Back: everything is registered and committed without a restart.
    proxy.set(Mode::Pass);
    let back = Instant::now();
    wait_until(
        Duration::from_secs(300),
        "every offset committed after the outage",
        || {
            assert!(daemon.running(), "daemon exited:\n{}", daemon.log_text());
            tb.committed(&group, &topic, PARTITIONS) == ends
        },
    );
    let recovery = back.elapsed().as_secs_f64();
    wait_until(Duration::from_secs(30), "ready again", || {
        http_get(port, "/readyz").0 == 200
    });
    let m = tb.scrape(port);
    assert_eq!(sample(&m, "lakesink_catalog_stalled", &[]), Some(0.0));
    assert_eq!(
        sample(&m, "lakesink_fetch_paused", &[("reason", "catalog")]),
        Some(0.0)
    );
    daemon.stop(Duration::from_secs(60));

    let held: BTreeSet<String> = objects(&tb, &bucket, "cloudtrail")
        .into_iter()
        .map(|o| o.path)
        .collect();
    let glue = glue_paths(&tb, &database, "cloudtrail");
    assert_eq!(glue.keys().cloned().collect::<BTreeSet<_>>(), held);
    let lake = format!("'s3://{bucket}/lake/cloudtrail/*/*/*.json.gz'");
    tb.assert_exactly_once(&lake, RECORDS, "after the outage");
    report(&format!(
        "e2e glue outage: {} s outage with {} objects in {} unregistered partitions held back; peak RSS {} MiB; \
         all {RECORDS} records registered and committed {recovery:.1} s after Glue returned",
        (back - outage).as_secs(),
        unregistered.len(),
        held.len() - before.len(),
        peak_kib / 1024
    ));
}

#[test]
fn the_webhook_gets_each_new_partition_signed_and_retried_after_5xx() {
    const RECORDS: u64 = 4_000;
    const PARTITIONS: i32 = 2;
    const SECRET: &str = "webhook-secret";
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("hook", PARTITIONS);

    tb.produce_events(
        &topic,
        PARTITIONS,
        &GenConfig::default(),
        0..RECORDS,
        RECORDS,
    );
    let ends = tb.high_watermarks(&topic, PARTITIONS);
    let receiver = Receiver::start(vec![503, 502]);

    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            "[catalog]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\n{}",
            receiver.url,
            table(&topic, "cloudtrail")
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(300));
    daemon.stop(Duration::from_secs(60));

    let requests = receiver.requests();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut accepted: BTreeMap<String, Value> = BTreeMap::new();
    for r in &requests {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/hooks/partitions")
        );
        assert_eq!(r.headers["content-type"], "application/json");
        let sig = r.headers["x-lakesink-signature"].trim_start_matches("sha256=");
        let sig: Vec<u8> = (0..sig.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&sig[i..i + 2], 16).unwrap())
            .collect();
        ring::hmac::verify(&key, &r.body, &sig).expect("valid HMAC-SHA256 signature");
        let doc: Value = serde_json::from_slice(&r.body).unwrap();
        let path = doc["path"].as_str().unwrap().to_string();
        let want_key = hex(ring::digest::digest(
            &ring::digest::SHA256,
            format!("cloudtrail/{path}").as_bytes(),
        )
        .as_ref());
        assert_eq!(r.headers["idempotency-key"], want_key);
        if r.status == 200 {
            accepted.insert(path, doc);
        }
    }
    // The two refused posts came again, with the same idempotency key.
    assert_eq!(requests[0].status, 503);
    assert_eq!(requests[1].status, 502);
    for refused in &requests[..2] {
        let key = &refused.headers["idempotency-key"];
        assert!(
            requests[2..]
                .iter()
                .any(|r| r.status == 200 && &r.headers["idempotency-key"] == key),
            "a 5xx is retried"
        );
    }

    // One accepted document per partition that holds objects, describing real objects.
    let objs = tb.list_objects(&bucket, "lake/cloudtrail/");
    let held: BTreeSet<String> = objects(&tb, &bucket, "cloudtrail")
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), held);
    for (path, doc) in &accepted {
        assert_eq!(doc["table"], "cloudtrail");
        assert_eq!(doc["columns"], serde_json::json!(["date", "hour"]));
        let values: Vec<&str> = path
            .split('/')
            .map(|s| s.split_once('=').unwrap().1)
            .collect();
        assert_eq!(doc["values"], serde_json::json!(values));
        assert_eq!(
            doc["location"],
            format!("s3://{bucket}/lake/cloudtrail/{path}/")
        );
        let files = doc["files"].as_array().unwrap();
        assert!(!files.is_empty());
        for f in files {
            let key = f["key"].as_str().unwrap();
            let o = objs
                .iter()
                .find(|o| o["key"] == key)
                .unwrap_or_else(|| panic!("{key} exists"));
            assert_eq!(f["bytes"], o["size"], "{f}");
            let n = tb.duckdb(&format!(
                "SELECT count(*) AS n, min(CAST(eventTime AS TIMESTAMP)) AS lo, max(CAST(eventTime AS TIMESTAMP)) AS hi FROM read_json('s3://{bucket}/{key}')"
            ));
            assert_eq!(f["records"], n[0]["n"], "{f}");
            let lo = f["min_event_time"].as_str().unwrap();
            let hi = f["max_event_time"].as_str().unwrap();
            assert!(
                lo <= hi && lo.starts_with(&format!("{}T{}", values[0], values[1])),
                "{f}"
            );
            assert!(
                hi.starts_with(&format!("{}T{}", values[0], values[1])),
                "{f}"
            );
        }
    }
    report(&format!(
        "e2e webhook: {} partitions, {} posts ({} answered 5xx and retried)",
        accepted.len(),
        requests.len(),
        requests.iter().filter(|r| r.status >= 500).count()
    ));
}

#[test]
fn a_webhook_that_refuses_stops_the_daemon_and_nothing_is_committed() {
    let tb = Testbed::from_env();
    let (topic, bucket, group) = tb.fresh("hook400", 1);

    tb.produce_events(&topic, 1, &GenConfig::default(), 0..500, 500);
    let receiver = Receiver::start(vec![400; 100]);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            "[catalog]\nkind = \"webhook\"\nurl = \"{}\"\n\n{}",
            receiver.url,
            table(&topic, "cloudtrail")
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    let status = daemon.wait(Duration::from_secs(120));
    let log = daemon.log_text();
    assert_eq!(status.code(), Some(3), "a refusal exits 3:\n{log}");
    assert!(
        log.contains("webhook catalog refused") && log.contains("HTTP 400"),
        "{log}"
    );
    assert!(
        tb.committed(&group, &topic, 1).values().all(|&o| o <= 0),
        "nothing committed"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A location as Hive reports it (`file:/x/` or `file:///x/`) → the local path `/x`.
fn local_path(location: &str) -> String {
    location
        .trim_start_matches("file://")
        .trim_start_matches("file:")
        .trim_end_matches('/')
        .to_string()
}

/// Partition paths (below the table directory) that hold at least one file.
fn local_partitions(table_dir: &std::path::Path) -> BTreeSet<String> {
    fn walk(dir: &std::path::Path, base: &std::path::Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.to_string_lossy().ends_with(".json.gz") {
                let rel = p.parent().unwrap().strip_prefix(base).unwrap();
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(table_dir, table_dir, &mut out);
    out
}

#[test]
fn the_hive_metastore_lists_every_partition_and_a_restart_asks_it_again() {
    const RECORDS: u64 = 6_000;
    const PARTITIONS: i32 = 2;
    let tb = Testbed::from_env();
    let topic = Testbed::unique("hive");
    let group = Testbed::unique("lakesink");
    let database = Testbed::unique("logs").replace('-', "_");
    tb.create_topic(&topic, PARTITIONS);
    tb.produce_events(
        &topic,
        PARTITIONS,
        &GenConfig::default(),
        0..RECORDS,
        RECORDS,
    );
    let ends = tb.high_watermarks(&topic, PARTITIONS);

    // The metastore resolves file:// locations only (no s3a classes), so the lake is local.
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = tb.write_local_config(
        dir.path(),
        &group,
        &lake,
        "",
        &format!(
            "{}\n{}",
            hive_catalog(&tb.hive_uri, &database),
            table(&topic, "cloudtrail")
        ),
    );
    let started = Instant::now();
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(300));
    let secs = started.elapsed().as_secs_f64();
    daemon.stop(Duration::from_secs(60));

    let table_dir = lake.join("cloudtrail");
    let t = tb.hive_table(&database, "cloudtrail");
    assert_eq!(
        t["partition_keys"],
        serde_json::json!([{"name": "date", "type": "string"}, {"name": "hour", "type": "string"}])
    );
    assert_eq!(t["table_type"], "EXTERNAL_TABLE");
    assert_eq!(t["serde"], "org.apache.hive.hcatalog.data.JsonSerDe");
    assert_eq!(
        local_path(t["location"].as_str().unwrap()),
        table_dir.display().to_string()
    );

    let held = local_partitions(&table_dir);
    let hive = by_path(tb.hive_partitions(&database, "cloudtrail"));
    assert_eq!(hive.keys().cloned().collect::<BTreeSet<_>>(), held);
    assert!(held.len() >= 5, "{held:?}");
    for (path, p) in &hive {
        assert_eq!(
            local_path(p["location"].as_str().unwrap()),
            table_dir.join(path).display().to_string(),
            "{p}"
        );
        assert_eq!(p["serde"], "org.apache.hive.hcatalog.data.JsonSerDe", "{p}");
    }
    let globs: Vec<String> = hive
        .values()
        .map(|p| {
            format!(
                "'{}/*.json.gz'",
                local_path(p["location"].as_str().unwrap())
            )
        })
        .collect();
    let locations = format!("[{}]", globs.join(", "));
    tb.assert_exactly_once(&locations, RECORDS, "the metastore's locations");

    // A restart knows nothing: it asks the metastore for the table's partitions before it
    // registers the one new hour that a few more records bring.
    tb.produce_events(
        &topic,
        PARTITIONS,
        &GenConfig::default(),
        RECORDS..RECORDS + 40,
        RECORDS,
    );
    let mut again = tb.start_daemon(&config, dir.path(), &["--until-caught-up"]);
    assert!(
        again.wait(Duration::from_secs(120)).success(),
        "{}",
        again.log_text()
    );
    let log = again.log_text();
    assert!(
        log.contains(&format!(
            "catalog partitions loaded table=\"cloudtrail\" partitions={}",
            held.len()
        )),
        "the restarted daemon loaded the partitions from the metastore:\n{log}"
    );
    let after = local_partitions(&table_dir);
    assert!(after.len() > held.len(), "a new hour: {after:?}");
    let hive_after = by_path(tb.hive_partitions(&database, "cloudtrail"));
    assert_eq!(hive_after.into_keys().collect::<BTreeSet<_>>(), after);
    report(&format!(
        "e2e hive metastore 2.3.9: {RECORDS} records, {} partitions registered in {} calls taking {} ms in all, all committed {secs:.1} s after start; restart loaded {} partitions from the metastore",
        hive.len(),
        daemon.log_text().matches("partitions registered").count(),
        drained(&daemon.log_text(), "catalog_ms"),
        held.len()
    ));
}

/// A field of the daemon's closing `drained` log line.
fn drained(log: &str, field: &str) -> String {
    lakesink_e2e::drained_field(log, field)
        .unwrap_or("?")
        .to_string()
}

/// Records whose `awsRegion` needs escaping in a path, with how many of each.
fn regional_records() -> (Vec<Option<Vec<u8>>>, BTreeMap<&'static str, u64>) {
    let regions = ["us/east", "a b", "50%", "eu-west-1"];
    let mut values = Vec::new();
    let mut counts = BTreeMap::new();
    for i in 0..200u64 {
        let region = regions[(i % 4) as usize];
        *counts.entry(region).or_default() += 1;
        values.push(Some(
            format!(
                r#"{{"eventTime":"2024-01-02T01:{:02}:00Z","awsRegion":"{region}","n":{i}}}"#,
                i % 60
            )
            .into_bytes(),
        ));
    }
    (values, counts)
}

fn regional_table(topic: &str) -> String {
    format!(
        r#"[[tables]]
name = "regional"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/region={{field:awsRegion}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_age = "2s"
"#
    )
}

fn escaped(value: &str) -> String {
    let mut out = String::new();
    lakesink::route::escape::escape_partition_value(value, &mut out);
    out
}

/// The location of the one `regional` partition a catalog (through `script`) finds for a
/// filter on the region, whose values must be the date and the real region.
fn found_by_value(
    tb: &Testbed,
    script: &str,
    database: &str,
    region: &str,
    filter: &str,
) -> String {
    let found: Vec<Value> =
        serde_json::from_str(&tb.python(script, &["partitions", database, "regional", filter]))
            .unwrap();
    assert_eq!(found.len(), 1, "{script} {filter}: {found:?}");
    assert_eq!(
        found[0]["values"],
        serde_json::json!(["2024-01-02", region])
    );
    found[0]["location"].as_str().unwrap().to_string()
}

#[test]
fn catalogs_hold_the_real_partition_values_and_a_query_by_value_finds_them() {
    let tb = Testbed::from_env();
    let (values, counts) = regional_records();

    // Glue (moto), the lake on S3.
    let (topic, bucket, group) = tb.fresh("values", 1);
    let database = Testbed::unique("logs").replace('-', "_");
    tb.produce_raw(&topic, 0, &values);
    let ends = tb.high_watermarks(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = tb.write_config(
        dir.path(),
        &group,
        &bucket,
        &format!(
            "{}\n{}",
            glue_catalog(&tb.glue_endpoint, &database),
            regional_table(&topic)
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(120));
    daemon.stop(Duration::from_secs(60));
    let all = tb.glue_partitions(&database, "regional");
    assert_eq!(all.len(), counts.len(), "{all:?}");
    for (region, n) in &counts {
        // What Athena's partition pruning asks Glue: the partition whose value is the real one.
        let expr = format!("region = '{region}'");
        let location = found_by_value(&tb, "glue_admin.py", &database, region, &expr);
        assert_eq!(
            location,
            format!(
                "s3://{bucket}/lake/regional/date=2024-01-02/region={}/",
                escaped(region)
            )
        );
        let rows = tb.duckdb(&format!(
            "SELECT count(*) AS n, count(DISTINCT n) AS ids, min(awsRegion) AS r FROM read_json('{location}*.json.gz')"
        ));
        assert_eq!(
            (rows[0]["n"].as_u64(), rows[0]["ids"].as_u64()),
            (Some(*n), Some(*n)),
            "{region}: {rows:?}"
        );
        assert_eq!(rows[0]["r"], *region);
    }

    // The Hive Metastore, the lake on local disk (it resolves file:// locations only).
    let topic = Testbed::unique("values-hive");
    let group = Testbed::unique("lakesink");
    let database = Testbed::unique("logs").replace('-', "_");
    tb.create_topic(&topic, 1);
    tb.produce_raw(&topic, 0, &values);
    let ends = tb.high_watermarks(&topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let config = tb.write_local_config(
        dir.path(),
        &group,
        &lake,
        "",
        &format!(
            "{}\n{}",
            hive_catalog(&tb.hive_uri, &database),
            regional_table(&topic)
        ),
    );
    let mut daemon = tb.start_daemon(&config, dir.path(), &[]);
    daemon.wait_committed(&tb, &group, &topic, &ends, Duration::from_secs(120));
    daemon.stop(Duration::from_secs(60));
    for region in counts.keys() {
        let filter = format!("region = \"{region}\"");
        let location = found_by_value(&tb, "hive_admin.py", &database, region, &filter);
        assert_eq!(
            local_path(&location),
            lake.join(format!(
                "regional/date=2024-01-02/region={}",
                escaped(region)
            ))
            .display()
            .to_string()
        );
    }
    report(&format!(
        "e2e catalog values: {} regions needing escapes registered in Glue and the Hive Metastore with their real values, each found by a query on that value at its escaped location",
        counts.len()
    ));
}

/// A client and the table named `name` from a `[catalog]` section (the table may be created).
fn catalog_of(
    section: &str,
    name: &str,
) -> (
    Arc<dyn lakesink::catalog::Catalog>,
    lakesink::catalog::CatalogTable,
) {
    // The Hive Metastore here has no S3 file system: its tables live in a local directory.
    let lake = if section.contains("kind = \"hive\"") {
        "file:///tmp/lakesink-conformance/lake"
    } else {
        "s3://conformance/lake"
    };
    let text = format!(
        "[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\n[storage]\nurl = \"{lake}\"\n{section}\n{}",
        table("t", name)
    );
    let plan = lakesink::Plan::from_toml(&text, "conformance.toml").unwrap();
    let mut t = lakesink::catalog::tables(&plan, lake).remove(0);
    t.create = true;
    (lakesink::catalog::open(&plan).unwrap(), t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glue_hive_and_the_webhook_pass_the_catalog_conformance_suite() {
    use lakesink::catalog::conformance::{check, Subject};
    let tb = Testbed::from_env();
    let database = Testbed::unique("conform").replace('-', "_");
    let table = Testbed::unique("t").replace('-', "_");
    let missing = Testbed::unique("missing").replace('-', "_");
    let nowhere = format!("127.0.0.1:{}", free_port());
    let hooks = Receiver::start(Vec::new());
    let refusing = Receiver::start(vec![400; 10]);
    let sections = [
        (
            glue_catalog(&tb.glue_endpoint, &database),
            glue_catalog(&format!("http://{nowhere}"), &database),
            true,
        ),
        (
            hive_catalog(&tb.hive_uri, &database),
            hive_catalog(&format!("thrift://{nowhere}"), &database),
            true,
        ),
        (
            format!(
                "[catalog]\nkind = \"webhook\"\nurl = \"{}\"\ntimeout = \"2s\"",
                hooks.url
            ),
            format!(
                "[catalog]\nkind = \"webhook\"\nurl = \"http://{nowhere}/hooks\"\ntimeout = \"2s\""
            ),
            false,
        ),
    ];
    for (section, unreachable, lists) in sections {
        let (catalog, t) = catalog_of(&section, &table);
        let refusing = if lists {
            let (c, mut missing_table) = catalog_of(&section, &missing);
            missing_table.create = false;
            (c, missing_table)
        } else {
            let s = section.replace(&hooks.url, &refusing.url);
            catalog_of(&s, &missing)
        };
        let again = section.clone();
        let name = table.clone();
        check(Subject {
            catalog,
            reopen: Box::new(move || catalog_of(&again, &name).0),
            table: t,
            lists,
            refusing,
            unreachable: catalog_of(&unreachable, &table).0,
        })
        .await;
    }
    // The webhook got each new partition, twice (the second time "already exists" for it),
    // and the three seals, as `sealed` events keyed by path and generation.
    let posts: Vec<serde_json::Value> = hooks
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(posts.len(), 7, "{:?}", hooks.requests());
    let sealed: Vec<&serde_json::Value> = posts.iter().filter(|p| p["event"] == "sealed").collect();
    assert_eq!(sealed.len(), 3, "{posts:?}");
    assert_eq!(sealed[2]["generation"], 2);
    assert_eq!(sealed[0]["path"], "date=2024-01-02/hour=01");
    let keys: std::collections::BTreeSet<String> = hooks
        .requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("\"sealed\""))
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys.len(), 2, "one key per generation");
    // Glue and the Hive Metastore hold the seal's parameters on the partition.
    for (catalog, parts) in [
        ("glue", tb.glue_partitions(&database, &table)),
        ("hive", tb.hive_partitions(&database, &table)),
    ] {
        let p = parts
            .iter()
            .find(|p| p["values"][1] == "01")
            .unwrap_or_else(|| panic!("{catalog}: {parts:?}"));
        assert_eq!(p["parameters"]["lakesink.sealed"], "true", "{catalog}: {p}");
        assert_eq!(
            p["parameters"]["lakesink.seal_generation"], "2",
            "{catalog}: {p}"
        );
        assert_eq!(p["parameters"]["lakesink.records"], "1", "{catalog}: {p}");
        let other = parts.iter().find(|p| p["values"][1] == "02").unwrap();
        assert!(
            other["parameters"].get("lakesink.sealed").is_none(),
            "{catalog}: {other}"
        );
    }
    report("e2e catalog conformance: Glue (moto), Hive Metastore and webhook pass the six behaviours the in-memory catalog passes (the sixth: seal parameters, and sealed events)");
}
