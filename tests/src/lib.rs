//! Harness of the end-to-end tests: the real servers that `scripts/test.sh` started (tansu,
//! SeaweedFS), a DuckDB reader, and the `lakesink` binary run as a daemon.
//!
//! Every test makes its own topic, bucket and consumer group, so tests share nothing but the
//! servers.

pub mod faults;
pub mod proxy;
pub mod receiver;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lakesink::config::KafkaPlan;
use lakesink::demo::generator::{event, GenConfig};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;

/// tansu 0.6.0's group coordinator mishandles cooperative (incremental) rebalancing: under load
/// it handed a joining member partitions another member still owned, without revoking them
/// there, and accepted both members' commits (883 and 2,302 duplicates in two runs of
/// `e2e_rebalance`). The daemons in these tests use the eager `range` assignor against it. The
/// in-process tests on librdkafka's mock broker cover Lakesink's default, `cooperative-sticky`.
///
/// After a SIGKILL, tansu also waits for the dead member to rejoin for the whole rebalance
/// timeout (`max.poll.interval.ms`, 5 minutes by default) instead of dropping it when its
/// session expires: the group stalls. The tests bound that to 15 s.
pub const TANSU_ASSIGNMENT: &str =
    "\"partition.assignment.strategy\" = \"range\"\n\"max.poll.interval.ms\" = \"15000\"";

/// Azurite's well-known development account key (public, in Microsoft's documentation).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The servers of this test run.
#[derive(Debug, Clone)]
pub struct Testbed {
    pub brokers: String,
    pub s3_endpoint: String,
    pub s3_key: String,
    pub s3_secret: String,
    pub python: PathBuf,
    pub tansu: PathBuf,
    pub bin: PathBuf,
    /// The AWS Glue API (moto), `http://127.0.0.1:PORT`.
    pub glue_endpoint: String,
    /// The Hive Metastore, `thrift://127.0.0.1:PORT`.
    pub hive_uri: String,
    /// Azurite's Blob service, `http://127.0.0.1:PORT` (account `devstoreaccount1`).
    pub azurite_url: String,
    pub root: PathBuf,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through scripts/test.sh, which starts the servers")
    })
}

impl Testbed {
    pub fn from_env() -> Testbed {
        Testbed {
            brokers: env("LAKESINK_BROKERS"),
            s3_endpoint: env("LAKESINK_S3_ENDPOINT"),
            s3_key: env("LAKESINK_S3_KEY"),
            s3_secret: env("LAKESINK_S3_SECRET"),
            python: env("LAKESINK_PYTHON").into(),
            tansu: env("LAKESINK_TANSU").into(),
            bin: env("LAKESINK_BIN").into(),
            glue_endpoint: env("LAKESINK_GLUE_ENDPOINT"),
            hive_uri: env("LAKESINK_HIVE_URI"),
            azurite_url: env("LAKESINK_AZURITE_URL"),
            root: Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf(),
        }
    }

    /// A name no other test of this run uses (topics, buckets, groups).
    pub fn unique(prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            % 100_000_000;
        format!(
            "{prefix}-{}-{t}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let out = Command::new(&self.tansu)
            .args([
                "topic",
                "create",
                name,
                "--broker",
                &format!("tcp://{}", self.brokers),
                "--partitions",
                &partitions.to_string(),
            ])
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let out = Command::new(&self.python)
            .arg(self.root.join("py").join(script))
            .args(args)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{script} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn create_bucket(&self, name: &str) {
        self.python("s3_admin.py", &["create-bucket", name]);
    }

    /// Objects under a prefix: key, size, etag, modified.
    pub fn list_objects(&self, bucket: &str, prefix: &str) -> Vec<Value> {
        serde_json::from_str(&self.python("s3_admin.py", &["list", bucket, prefix])).unwrap()
    }

    /// Checks the lake's own bookkeeping of `topic`: for each Kafka partition, the segment
    /// claims follow each other without gap or overlap from offset 0 to the committed offset;
    /// every object in the tables' directories is listed by exactly one claim; every object a
    /// claim lists exists. Returns the number of claims.
    pub fn assert_bookkeeping(
        &self,
        bucket: &str,
        tables: &[&str],
        topic: &str,
        committed: &BTreeMap<i32, i64>,
    ) -> usize {
        let claims: Vec<Value> = serde_json::from_str(&self.python(
            "s3_admin.py",
            &["json", bucket, &format!("lake/_lakesink/segments/{topic}/")],
        ))
        .unwrap();
        let mut by_partition: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
        let mut listed: BTreeMap<String, usize> = BTreeMap::new();
        // Claims only: `{start, 20 digits}.json` (not a replay's amendment beside one).
        let claims: Vec<&Value> = claims
            .iter()
            .filter(|c| {
                let name = c["key"].as_str().unwrap().rsplit('/').next().unwrap();
                name.len() == 25 && name[..20].bytes().all(|b| b.is_ascii_digit())
            })
            .collect();
        for c in &claims {
            let b = &c["body"];
            by_partition
                .entry(b["partition"].as_i64().unwrap())
                .or_default()
                .push((b["start"].as_i64().unwrap(), b["end"].as_i64().unwrap()));
            for o in b["objects"].as_array().unwrap() {
                *listed.entry(o.as_str().unwrap().to_string()).or_default() += 1;
            }
        }
        for (p, end) in committed {
            let mut spans = by_partition.remove(&i64::from(*p)).unwrap_or_default();
            spans.sort_unstable();
            let mut at = 0;
            for (start, stop) in &spans {
                assert_eq!(
                    *start, at,
                    "partition {p}: claims leave a gap or overlap at {at}: {spans:?}"
                );
                at = *stop;
            }
            assert_eq!(
                at, *end,
                "partition {p}: the claims end at {at}, the committed offset is {end}"
            );
        }
        assert!(
            by_partition.is_empty(),
            "claims of partitions without a committed offset: {by_partition:?}"
        );
        let mut stored = std::collections::BTreeSet::new();
        for t in tables {
            for o in self.list_objects(bucket, &format!("lake/{t}/")) {
                stored.insert(o["key"].as_str().unwrap().to_string());
            }
        }
        for key in &stored {
            assert_eq!(
                listed.get(key),
                Some(&1),
                "{key}: listed by {:?} claims",
                listed.get(key)
            );
        }
        let data: Vec<&String> = listed.keys().filter(|k| !k.contains("/_errors/")).collect();
        for key in data {
            assert!(
                stored.contains(key),
                "a claim lists {key}, which is not in the store"
            );
        }
        claims.len()
    }

    /// [`Testbed::fresh`] with a Glue database name, and `records` CloudTrail events produced
    /// without late ones (each Kafka partition in event-time order), as the sealing and
    /// compaction tests need to know which hours fall below the watermark.
    pub fn fresh_in_order(&self, prefix: &str, partitions: i32, records: u64) -> InOrder {
        let (topic, bucket, group) = self.fresh(prefix, partitions);
        let gen = GenConfig {
            late_per_mille: 0,
            ..GenConfig::default()
        };
        self.produce_events(&topic, partitions, &gen, 0..records, records);
        let ends = self.high_watermarks(&topic, partitions);
        InOrder {
            database: Testbed::unique("db"),
            topic,
            bucket,
            group,
            ends,
        }
    }

    /// Fresh names for one test — (topic, bucket, consumer group) — with the topic and the
    /// bucket created.
    pub fn fresh(&self, prefix: &str, partitions: i32) -> (String, String, String) {
        let topic = Testbed::unique(prefix);
        let bucket = Testbed::unique("lake");
        let group = Testbed::unique("lakesink");
        self.create_topic(&topic, partitions);
        self.create_bucket(&bucket);
        (topic, bucket, group)
    }

    /// Asserts that the JSON records DuckDB reads from `source` (a `read_json` argument: a glob
    /// or a list) are exactly `n` events, each `eventID` once.
    pub fn assert_exactly_once(&self, source: &str, n: u64, what: &str) {
        let rows = self.duckdb(&format!(
            "SELECT count(*) AS n, count(DISTINCT eventID) AS ids FROM read_json({source})"
        ));
        let r = &rows[0];
        assert_eq!(r["ids"], n, "{what}: lost records: {r}");
        assert_eq!(r["n"], n, "{what}: duplicated records: {r}");
    }

    /// Glue partitions of a table: values, location, serde, input_format.
    pub fn glue_partitions(&self, database: &str, table: &str) -> Vec<Value> {
        serde_json::from_str(&self.python("glue_admin.py", &["partitions", database, table]))
            .unwrap()
    }

    /// A Glue table: partition_keys, location, serde.
    pub fn glue_table(&self, database: &str, table: &str) -> Value {
        serde_json::from_str(&self.python("glue_admin.py", &["table", database, table])).unwrap()
    }

    /// Hive Metastore partitions of a table: values, location, serde, input_format.
    pub fn hive_partitions(&self, database: &str, table: &str) -> Vec<Value> {
        serde_json::from_str(&self.python("hive_admin.py", &["partitions", database, table]))
            .unwrap()
    }

    /// A Hive Metastore table: partition_keys, location, serde, table_type.
    pub fn hive_table(&self, database: &str, table: &str) -> Value {
        serde_json::from_str(&self.python("hive_admin.py", &["table", database, table])).unwrap()
    }

    /// Runs SQL in DuckDB with the test S3 server configured; rows as JSON objects.
    pub fn duckdb(&self, sql: &str) -> Vec<Value> {
        serde_json::from_str(&self.python("duckdb_query.py", &[sql])).unwrap()
    }

    /// Produces generated CloudTrail events round-robin over the partitions; returns bytes sent.
    pub fn produce_events(
        &self,
        topic: &str,
        partitions: i32,
        cfg: &GenConfig,
        seqs: std::ops::Range<u64>,
        total: u64,
    ) -> u64 {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "20")
            .set("compression.type", "lz4")
            .set("acks", "all")
            .create()
            .unwrap();
        let mut buf = String::new();
        let mut bytes = 0;
        for seq in seqs {
            event(cfg, seq, total, &mut buf);
            bytes += buf.len() as u64;
            let part = (seq % partitions as u64) as i32;
            loop {
                match p.send(
                    BaseRecord::<(), str>::to(topic)
                        .partition(part)
                        .payload(buf.as_str()),
                ) {
                    Ok(()) => break,
                    Err(_) => {
                        p.poll(Duration::from_millis(10));
                    }
                }
            }
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(120))
            .expect("all records delivered");
        bytes
    }

    /// Produces records with the given values (`None`: a tombstone) to one partition, in order.
    pub fn produce_raw(&self, topic: &str, partition: i32, values: &[Option<Vec<u8>>]) {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "1")
            .create()
            .unwrap();
        for v in values {
            let mut rec = BaseRecord::<(), [u8]>::to(topic).partition(partition);
            if let Some(v) = v {
                rec = rec.payload(v.as_slice());
            }
            p.send(rec).map_err(|(e, _)| e).unwrap();
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(60))
            .expect("all records delivered");
    }

    /// Produces `total` generated events (6 hours of event time, 5 % late) in slices of 2,000
    /// with a pause after each, on a thread of its own: traffic that keeps arriving while a
    /// test kills or rebalances daemons.
    pub fn produce_in_background(
        &self,
        topic: &str,
        partitions: i32,
        total: u64,
        pause: Duration,
    ) -> std::thread::JoinHandle<()> {
        let tb = self.clone();
        let topic = topic.to_string();
        let gen = GenConfig {
            span_secs: 6 * 3600,
            ..GenConfig::default()
        };
        std::thread::spawn(move || {
            let step = 2_000;
            for from in (0..total).step_by(step as usize) {
                tb.produce_events(
                    &topic,
                    partitions,
                    &gen,
                    from..(from + step).min(total),
                    total,
                );
                std::thread::sleep(pause);
            }
        })
    }

    /// Committed offsets of a group for a topic's partitions (empty if it has none yet).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        lakesink::consume::committed_offsets(
            &KafkaPlan::plain(&self.brokers, group),
            topic,
            partitions,
        )
        .unwrap_or_default()
    }

    pub fn high_watermarks(&self, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        lakesink::consume::high_watermarks(&KafkaPlan::plain(&self.brokers, "-"), topic, partitions)
            .unwrap()
    }

    /// Writes a daemon config for one table on this run's servers.
    pub fn write_config(&self, dir: &Path, group: &str, bucket: &str, tables: &str) -> PathBuf {
        let storage = format!(
            r#"[storage]
url = "s3://{bucket}/lake"
[storage.options]
endpoint = "{endpoint}"
allow_http = "true"
region = "us-east-1"
access_key_id = "{key}"
secret_access_key = "{secret}"
"#,
            endpoint = self.s3_endpoint,
            key = self.s3_key,
            secret = self.s3_secret,
        );
        self.write(
            dir,
            group,
            &storage,
            "part_size = \"5MiB\"\nmax_buffered_bytes = \"256MiB\"",
            tables,
        )
    }

    /// Writes a daemon config whose lake is the local directory `lake`; `pipeline` holds extra
    /// `[pipeline]` keys, `rest` the other sections (`[catalog]`, `[[tables]]`…).
    pub fn write_local_config(
        &self,
        dir: &Path,
        group: &str,
        lake: &Path,
        pipeline: &str,
        rest: &str,
    ) -> PathBuf {
        let storage = format!("[storage]\nurl = \"file://{}\"\n", lake.display());
        self.write(dir, group, &storage, pipeline, rest)
    }

    /// The `[storage]` section of an Azure Blob lake in Azurite's container `container`, set
    /// up as a user would point Lakesink at Azurite: the account, its key and the endpoint in
    /// the config (no emulator switch, no environment).
    pub fn azure_storage(&self, container: &str) -> String {
        format!(
            r#"[storage]
url = "az://{container}/lake"
[storage.options]
account_name = "devstoreaccount1"
access_key = "{key}"
endpoint = "{url}/devstoreaccount1"
allow_http = "true"
"#,
            key = AZURITE_KEY,
            url = self.azurite_url,
        )
    }

    /// Creates a container in Azurite.
    pub fn create_container(&self, name: &str) {
        self.python("azure_admin.py", &["create-container", name]);
    }

    /// Writes a daemon config on this run's broker with the `[storage]` section `storage`;
    /// `pipeline` holds extra `[pipeline]` keys, `rest` the other sections.
    pub fn write(
        &self,
        dir: &Path,
        group: &str,
        storage: &str,
        pipeline: &str,
        rest: &str,
    ) -> PathBuf {
        let text = format!(
            r#"[kafka]
brokers = "{brokers}"
group_id = "{group}"
[kafka.properties]
"session.timeout.ms" = "6000"
{assignment}

{storage}
[pipeline]
commit_interval = "500ms"
{pipeline}
{http}
{rest}
"#,
            brokers = self.brokers,
            assignment = TANSU_ASSIGNMENT,
            // Daemons of parallel tests each take a port of their own; a test that scrapes
            // sets `[http]` itself.
            http = if rest.contains("[http]") {
                ""
            } else {
                "[http]\naddress = \"127.0.0.1:0\"\n"
            },
        );
        let path = dir.join("lakesink.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `lakesink run`. Its log goes to the test run's directory (kept with
    /// `KEEP_TEST_LOGS=1`), or to `dir`.
    pub fn start_daemon(&self, config: &Path, dir: &Path, extra: &[&str]) -> Daemon {
        self.start_daemon_with_env(config, dir, extra, &[])
    }

    /// [`Testbed::start_daemon`] with extra environment variables.
    pub fn start_daemon_with_env(
        &self,
        config: &Path,
        dir: &Path,
        extra: &[&str],
        vars: &[(&str, &str)],
    ) -> Daemon {
        let logs =
            std::env::var_os("LAKESINK_TEST_RUN").map_or_else(|| dir.to_path_buf(), PathBuf::from);
        let log = logs.join(format!("{}.log", Testbed::unique("daemon")));
        let file = std::fs::File::create(&log).unwrap();
        // LAKESINK_TEST_WRAP runs the daemon under a tool (`heaptrack`, `perf record -g --`):
        // for looking into a test, not for CI.
        let wrap = std::env::var("LAKESINK_TEST_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(wrap).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("LAKESINK_LOG", "info,lakesink=debug")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start lakesink");
        Daemon {
            child: Some(child),
            log,
        }
    }
}

/// The failpoints the crash tests arm: a kill between a segment's claim and its objects, or
/// between its upload and its commit.
pub const CRASH_FAILPOINTS: &str = "crash-after-claim:0.1,crash-before-commit:0.2";

impl Testbed {
    /// Runs the daemon with [`CRASH_FAILPOINTS`] armed for at most `within`: it dies at a
    /// failpoint (its log is returned: which one is in it), or is killed with SIGKILL then
    /// (`None`). A daemon that dies otherwise fails the test.
    pub fn run_until_failpoint_or_kill(
        &self,
        config: &Path,
        dir: &Path,
        within: Duration,
    ) -> Option<String> {
        let mut d = self.start_daemon_with_env(
            config,
            dir,
            &[],
            &[("LAKESINK_FAILPOINT", CRASH_FAILPOINTS)],
        );
        let deadline = Instant::now() + within;
        while d.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let ended = if d.running() {
            d.signal("KILL");
            None
        } else {
            let log = d.log_text();
            assert!(
                log.contains("failpoint crash-"),
                "the daemon died, but not by a failpoint:\n{log}"
            );
            Some(log)
        };
        d.wait(Duration::from_secs(10));
        ended
    }
}

/// What [`Testbed::fresh_in_order`] made: the names, and each Kafka partition's end offset.
pub struct InOrder {
    pub topic: String,
    pub bucket: String,
    pub group: String,
    pub database: String,
    pub ends: BTreeMap<i32, i64>,
}

/// A running `lakesink run`; killed if dropped while running.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig}");
    }

    /// Waits for the process to exit; panics with its log past the deadline.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "lakesink did not exit within {within:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the process to exit and returns its exit status and the peak of its own
    /// resident memory, in bytes.
    ///
    /// The peak is the kernel's `VmHWM` of the daemon's process, read from
    /// `/proc/<pid>/status` while it runs and, exact to its end, from the `peak_rss` the
    /// daemon logs as it exits (the larger of the two). Not `wait4`'s `ru_maxrss`: that also
    /// holds the resident set of the process that forked the child before it exec'd, this test
    /// harness (~130 MiB in `e2e_memory`, which had hidden the daemon's own peak under a
    /// 48 MiB budget).
    pub fn wait_with_peak_rss(&mut self, within: Duration) -> (ExitStatus, u64) {
        use std::os::unix::process::ExitStatusExt;
        let pid = self.pid() as libc::pid_t;
        let deadline = Instant::now() + within;
        let status_file = format!("/proc/{pid}/status");
        let mut polled = 0u64;
        loop {
            if let Some(r) = std::fs::read_to_string(&status_file)
                .ok()
                .and_then(|s| lakesink::memory::Resident::parse(&s))
            {
                polled = polled.max(r.peak);
            }
            let mut status = 0;
            // SAFETY: plain syscall with a valid out-pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                // Reaped: the Child must not wait again.
                std::mem::forget(self.child.take());
                let logged = drained_field(&self.log_text(), "peak_rss")
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                return (ExitStatus::from_raw(status), polled.max(logged));
            }
            assert!(
                Instant::now() < deadline,
                "lakesink did not exit within {within:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Daemon {
    /// Waits until the group has committed `ends` (partition → offset) for `topic`; panics with
    /// the log if the daemon exits first or the deadline passes.
    pub fn wait_committed(
        &mut self,
        tb: &Testbed,
        group: &str,
        topic: &str,
        ends: &BTreeMap<i32, i64>,
        within: Duration,
    ) {
        let partitions = ends.len() as i32;
        let deadline = Instant::now() + within;
        loop {
            assert!(self.running(), "daemon exited early:\n{}", self.log_text());
            let committed = tb.committed(group, topic, partitions);
            if committed == *ends {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for every offset committed: committed \
                 {committed:?}, ends {ends:?}; the daemon's log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then a clean exit (drained) within `within`.
    pub fn stop(&mut self, within: Duration) {
        self.signal("TERM");
        let status = self.wait(within);
        assert!(
            status.success(),
            "graceful exit: {status:?}\n{}",
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A field of the daemon's closing log line (`drained: … consumed=N … peak_rss=N`), as
/// written: the run's own counters, not the wording of any message. `None` when the daemon did
/// not drain or the line has no such field.
pub fn drained_field<'a>(log: &'a str, field: &str) -> Option<&'a str> {
    let prefix = format!("{field}=");
    log.lines()
        .rev()
        .find(|l| l.contains("drained:"))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
}

/// A `[catalog]` section for the test Glue endpoint (moto) at `endpoint`, creating its tables
/// in `database`.
pub fn glue_catalog(endpoint: &str, database: &str) -> String {
    format!(
        r#"[catalog]
kind = "glue"
database = "{database}"
region = "us-east-1"
endpoint = "{endpoint}"
create_table = true
access_key_id = "testing"
secret_access_key = "testing"
timeout = "2s"
"#
    )
}

/// A `cloudtrail` table of `topic` in the default hourly layout, its event time from
/// `eventTime`, cut by count and by the clock: the config most lake tests run.
pub fn cloudtrail_table(topic: &str, max_records: u64, max_age: &str) -> String {
    format!(
        r#"[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
[tables.rotate]
max_records = {max_records}
max_age = "{max_age}"
"#
    )
}

/// A consumer-group test on tansu + SeaweedFS: a [`cloudtrail_table`] (1,500 records, 1 s),
/// a producer writing in the background, and a steady member running. The test starts and
/// disturbs other members with [`GroupRun::member`], then calls [`GroupRun::finish`].
pub struct GroupRun {
    pub tb: Testbed,
    pub bucket: String,
    pub producer: std::thread::JoinHandle<()>,
    pub steady: Daemon,
    pub started: Instant,
    topic: String,
    group: String,
    partitions: i32,
    records: u64,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl GroupRun {
    /// `records` in slices of 2,000 with `pause` between them, into a new topic of
    /// `partitions`.
    pub fn start(prefix: &str, partitions: i32, records: u64, pause: Duration) -> GroupRun {
        let tb = Testbed::from_env();
        let (topic, bucket, group) = tb.fresh(prefix, partitions);
        let dir = tempfile::tempdir().unwrap();
        let config = tb.write_config(
            dir.path(),
            &group,
            &bucket,
            &cloudtrail_table(&topic, 1500, "1s"),
        );
        let producer = tb.produce_in_background(&topic, partitions, records, pause);
        let started = Instant::now();
        let steady = tb.start_daemon(&config, dir.path(), &[]);
        GroupRun {
            tb,
            bucket,
            producer,
            steady,
            started,
            topic,
            group,
            partitions,
            records,
            config,
            dir,
        }
    }

    /// Another member of the group, on the same config.
    pub fn member(&self) -> Daemon {
        self.tb.start_daemon(&self.config, self.dir.path(), &[])
    }

    /// Another member of the group whose files are cut by age only after `max_age` (so it
    /// holds open segments for that long), in its own directory `name`.
    pub fn member_with_max_age(&self, name: &str, max_age: &str) -> Daemon {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let config = self.tb.write_config(
            &dir,
            &self.group,
            &self.bucket,
            &cloudtrail_table(&self.topic, 1500, max_age),
        );
        self.tb.start_daemon(&config, &dir, &[])
    }

    /// Waits for the producer and for the steady member to commit every offset, stops it, and
    /// checks that the lake holds every record exactly once. Returns the steady member's log.
    pub fn finish(mut self, what: &str) -> String {
        self.producer.join().unwrap();
        let ends = self.tb.high_watermarks(&self.topic, self.partitions);
        assert_eq!(ends.values().sum::<i64>() as u64, self.records);
        self.steady.wait_committed(
            &self.tb,
            &self.group,
            &self.topic,
            &ends,
            Duration::from_secs(240),
        );
        self.steady.stop(Duration::from_secs(60));
        let source = format!("'s3://{}/lake/cloudtrail/**/*.json.gz'", self.bucket);
        self.tb.assert_exactly_once(&source, self.records, what);
        self.steady.log_text()
    }
}

/// A TCP port free at the moment of asking, for a daemon's `[http] address`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET http://127.0.0.1:{port}{path}`: the status code and the body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::Read as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {out}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// One sample of a `/metrics` scrape.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Testbed {
    /// Runs `lakesink {args…} --config {config}` (with extra environment variables) to its end;
    /// panics, with its stderr, unless it succeeds. Returns its stdout.
    pub fn cli(&self, args: &[&str], config: &Path, vars: &[(&str, &str)]) -> String {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(config)
            .envs(vars.iter().copied())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "lakesink {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs `lakesink verify --json {args…} --config {config}`: whether it passed (exit 0;
    /// panics on any other exit than 0 or 1) and its report.
    pub fn verify(&self, config: &Path, args: &[&str]) -> (bool, Value) {
        let out = Command::new(&self.bin)
            .args(["verify", "--json"])
            .args(args)
            .arg("--config")
            .arg(config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 1)),
            "lakesink verify exited {code:?}: {stderr}"
        );
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}): {stderr}"));
        assert_eq!(report["ok"], code == Some(0), "{report}");
        (code == Some(0), report)
    }

    /// The newest manifest copy (`_lakesink_manifest.json`, in the partition's directory or a
    /// compaction's) of each sealed partition of `table`, by partition path.
    pub fn manifests(&self, bucket: &str, table: &str) -> BTreeMap<String, Value> {
        let prefix = format!("lake/{table}/");
        let docs: Vec<Value> =
            serde_json::from_str(&self.python("s3_admin.py", &["json", bucket, &prefix])).unwrap();
        let mut out: BTreeMap<String, Value> = BTreeMap::new();
        for d in docs {
            if !d["key"]
                .as_str()
                .unwrap()
                .ends_with("/_lakesink_manifest.json")
            {
                continue;
            }
            let m = d["body"].clone();
            let path = m["path"].as_str().unwrap().to_string();
            if out
                .get(&path)
                .is_none_or(|o| o["generation"].as_u64() < m["generation"].as_u64())
            {
                out.insert(path, m);
            }
        }
        out
    }

    /// Scrapes a daemon's `/metrics` and parses it with the Prometheus client's own
    /// OpenMetrics parser (in Python): a scrape that does not parse fails the test.
    pub fn scrape(&self, port: u16) -> Vec<Sample> {
        let json = self.python(
            "metrics_parse.py",
            &[&format!("http://127.0.0.1:{port}/metrics")],
        );
        let v: Vec<Value> = serde_json::from_str(&json).unwrap();
        v.into_iter()
            .map(|s| Sample {
                name: s["name"].as_str().unwrap().to_string(),
                labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                value: s["value"].as_f64().unwrap(),
            })
            .collect()
    }
}

/// The value of the sample `name` whose labels include `labels` (`None`: no such sample).
pub fn sample(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Polls `f` until it returns true; panics with `what` past the deadline.
pub fn wait_until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Appends a line of figures to `target/e2e-figures.txt` (and stderr) for the notes.
pub fn report(line: &str) {
    eprintln!("{line}");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-figures.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}
