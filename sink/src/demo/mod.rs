//! `lakesink demo`: the real pipeline on an embedded default. It starts the in-process broker,
//! produces CloudTrail-shaped events spread over several hours (some late and out of order),
//! runs the pipeline into a local directory until everything is committed, then reads the lake
//! back and checks that every event is there exactly once, in the partition of its own time.
//! The same events land twice: in a gzip NDJSON table and in a Parquet table (schema
//! `cloudtrail.avsc`), and the summary compares their sizes.

pub use crate::generator;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config::Plan;
use crate::consume::Control;
use crate::error::Error;
use crate::mock::EmbeddedBroker;
use crate::stats::Stats;
use crate::units::human_bytes;
use generator::{event, GenConfig};

pub const TOPIC: &str = "cloudtrail";

/// Why the demo could not run or could not read its lake back. (A lake with records missing
/// or doubled is no error: the report says so and the command exits 1.)
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the embedded broker: {what}: {source}")]
    Broker {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("the demo producer: {what}: {source}")]
    Producer {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("{} line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: {reason}", path.display())]
    Parquet { path: PathBuf, reason: String },
    #[error("the demo's {what} did not finish: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The pipeline itself failed (or its config did not parse).
    #[error(transparent)]
    Pipeline(#[from] Box<Error>),
}

impl From<Error> for DemoError {
    fn from(e: Error) -> Self {
        DemoError::Pipeline(Box::new(e))
    }
}

impl From<crate::config::ConfigError> for DemoError {
    fn from(e: crate::config::ConfigError) -> Self {
        DemoError::Pipeline(Box::new(e.into()))
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DemoError + 'a {
    move |source| DemoError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: PathBuf,
    pub records: u64,
    pub partitions: i32,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            dir: PathBuf::from("lakesink-demo"),
            records: 300_000,
            partitions: 6,
        }
    }
}

/// What the demo produced, wrote and found when it read the lake back.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub produced: u64,
    pub produced_bytes: u64,
    pub kafka_partitions: i32,
    pub summary: crate::Summary,
    pub lake: LakeScan,
    pub table_dir: PathBuf,
    /// The Parquet table of the same events.
    pub parquet: LakeScan,
    pub parquet_dir: PathBuf,
}

pub const PARQUET_TABLE: &str = "cloudtrail_parquet";

/// The config the demo runs with (also written next to the lake for reference).
pub fn demo_config(dir: &Path, brokers: &str) -> String {
    format!(
        r#"# Written by `lakesink demo`: the config it ran with.
[kafka]
brokers = "{brokers}"
group_id = "lakesink-demo"

[storage]
url = "file://{dir}"

[pipeline]
max_buffered_bytes = "512MiB"
commit_interval = "500ms"

[http]
# /metrics, /healthz and /readyz on a port the system picks (logged at start).
address = "127.0.0.1:0"

[[tables]]
name = "cloudtrail"
topics = ["{TOPIC}"]
format = "json.gz"
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
timezone = "UTC"
on_missing_timestamp = "fail"
max_future_skew = "1000d"

[tables.rotate]
max_records = 100000
max_bytes = "64MiB"
max_age = "30s"

[[tables]]
name = "{PARQUET_TABLE}"
topics = ["{TOPIC}"]
format = "parquet"
schema = {{ file = "cloudtrail.avsc" }}
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
on_missing_timestamp = "fail"
max_future_skew = "1000d"

[tables.parquet]
compression = "zstd"
bloom_filters = ["eventID"]

[tables.rotate]
max_records = 100000
max_bytes = "64MiB"
max_age = "30s"
"#,
        dir = dir.display()
    )
}

pub async fn run(opts: DemoOptions) -> Result<DemoReport, DemoError> {
    std::fs::create_dir_all(&opts.dir).map_err(io("creating", &opts.dir))?;
    let dir = std::fs::canonicalize(&opts.dir).map_err(io("resolving", &opts.dir))?;
    let table_dir = dir.join("cloudtrail");
    let parquet_dir = dir.join(PARQUET_TABLE);
    // The demo's topic is new on every run: the claims of an earlier run's segments go too.
    let claims_dir = dir.join(crate::claim::CLAIMS_DIR).join(TOPIC);
    // Only the demo's own tables are replaced, never anything else in the directory.
    for d in [&table_dir, &parquet_dir, &claims_dir] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(io("removing", d))?;
        }
    }

    let broker = EmbeddedBroker::start(1).map_err(|source| DemoError::Broker {
        what: "starting",
        source,
    })?;
    broker
        .create_topic(TOPIC, opts.partitions)
        .map_err(|source| DemoError::Broker {
            what: "creating the topic",
            source,
        })?;
    let config = demo_config(&dir, broker.bootstrap_servers());
    let _ = std::fs::write(dir.join("lakesink.toml"), &config);
    let plan = Plan::from_toml(&config, "lakesink demo")?;

    let stats = Arc::new(Stats::default());
    let control = Arc::new(Control::default());
    let pipeline = tokio::spawn(crate::run(plan, control.clone(), stats.clone()));

    let producer = {
        let (stats, control) = (stats.clone(), control.clone());
        let brokers = broker.bootstrap_servers().to_string();
        let (records, partitions) = (opts.records, opts.partitions);
        tokio::task::spawn_blocking(move || {
            let r = produce(&brokers, 0..records, records, partitions, Some(&stats));
            // Whatever happened, let the pipeline finish what it has.
            control.exit_when_caught_up.store(true, Ordering::SeqCst);
            r
        })
    };
    let produced = producer.await.map_err(|source| DemoError::Task {
        what: "producer",
        source,
    })?;
    let summary = pipeline.await.map_err(|source| DemoError::Task {
        what: "pipeline",
        source,
    })??;
    let (produced, produced_bytes) = produced?;
    drop(broker);

    let (lake, parquet) = tokio::task::spawn_blocking({
        let (table_dir, parquet_dir) = (table_dir.clone(), parquet_dir.clone());
        move || -> Result<_, DemoError> {
            Ok((
                scan_lake(&table_dir, produced)?,
                scan_lake(&parquet_dir, produced)?,
            ))
        }
    })
    .await
    .map_err(|source| DemoError::Task {
        what: "scan of the lake",
        source,
    })??;
    Ok(DemoReport {
        produced,
        produced_bytes,
        kafka_partitions: opts.partitions,
        summary,
        lake,
        table_dir,
        parquet,
        parquet_dir,
    })
}

/// Produces demo events `seqs` (of a stream of `total`). With `pace`, the sink's counters, it
/// never runs more than ~2 MiB per partition ahead of the sink (the embedded broker silently
/// drops a partition's data beyond ~5 MiB). Returns the number of events and their bytes.
pub fn produce(
    brokers: &str,
    seqs: std::ops::Range<u64>,
    total: u64,
    partitions: i32,
    pace: Option<&Stats>,
) -> Result<(u64, u64), DemoError> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.kbytes", "65536")
        .create()
        .map_err(|source| DemoError::Producer {
            what: "creating it",
            source,
        })?;
    let cfg = GenConfig::default();
    let ahead_limit = partitions as u64 * 2 * 1024 * 1024;
    let mut buf = String::with_capacity(2048);
    let mut bytes = 0u64;
    let count = seqs.end - seqs.start;
    let consumed_before = pace.map_or(0, |s| s.bytes_in.load(Ordering::Relaxed));
    for seq in seqs {
        event(&cfg, seq, total, &mut buf);
        bytes += buf.len() as u64;
        let part = (seq % partitions as u64) as i32;
        loop {
            match producer.send(
                BaseRecord::<(), str>::to(TOPIC)
                    .partition(part)
                    .payload(buf.as_str()),
            ) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(DemoError::Producer {
                        what: "sending",
                        source,
                    })
                }
            }
        }
        if let Some(sink) = pace {
            let consumed = || {
                sink.bytes_in
                    .load(Ordering::Relaxed)
                    .saturating_sub(consumed_before)
            };
            while bytes.saturating_sub(consumed()) > ahead_limit {
                producer.poll(Duration::from_millis(2));
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|source| DemoError::Producer {
            what: "flushing",
            source,
        })?;
    Ok((count, bytes))
}

/// What reading the lake back found.
#[derive(Debug, Clone, Default)]
pub struct LakeScan {
    pub files: u64,
    pub bytes: u64,
    pub partitions: BTreeSet<String>,
    pub lines: u64,
    pub distinct: u64,
    pub duplicates: u64,
    pub missing: u64,
    pub misplaced: u64,
}

/// Reads every object of the demo table and checks each event's place.
pub fn scan_lake(table_dir: &Path, expected: u64) -> Result<LakeScan, DemoError> {
    let mut scan = LakeScan::default();
    let mut seen = vec![false; expected as usize];
    let mut stack = vec![table_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(io("listing", &d))?;
        for entry in entries {
            let p = entry.map_err(io("listing", &d))?.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let parquet = p.to_string_lossy().ends_with(".parquet");
            if !parquet && !p.to_string_lossy().ends_with(".json.gz") {
                continue;
            }
            let rel = p
                .strip_prefix(table_dir)
                .unwrap_or(&p)
                .parent()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default();
            scan.partitions.insert(rel.clone());
            scan.files += 1;
            let f = std::fs::File::open(&p).map_err(io("opening", &p))?;
            scan.bytes += f.metadata().map(|m| m.len()).unwrap_or(0);
            if parquet {
                scan_parquet(&p, f, &rel, &mut scan, &mut seen)?;
                continue;
            }
            for (n, line) in BufReader::new(flate2::read::MultiGzDecoder::new(f))
                .lines()
                .enumerate()
            {
                let bad = |reason: String| DemoError::Line {
                    path: p.clone(),
                    line: n + 1,
                    reason,
                };
                let line = line.map_err(|e| bad(e.to_string()))?;
                let v: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
                scan.lines += 1;
                let t = v["eventTime"].as_str().unwrap_or_default();
                let want = format!(
                    "date={}/hour={}",
                    t.get(..10).unwrap_or(""),
                    t.get(11..13).unwrap_or("")
                );
                if want != rel {
                    scan.misplaced += 1;
                }
                match v["sequence"].as_u64() {
                    Some(s) if (s as usize) < seen.len() => {
                        if std::mem::replace(&mut seen[s as usize], true) {
                            scan.duplicates += 1;
                        } else {
                            scan.distinct += 1;
                        }
                    }
                    _ => scan.misplaced += 1,
                }
            }
        }
    }
    scan.missing = seen.iter().filter(|s| !**s).count() as u64;
    Ok(scan)
}

/// Counts the events of one Parquet file: `sequence` for identity, `eventTime` (a UTC
/// timestamp in ms) for the partition.
fn scan_parquet(
    p: &Path,
    f: std::fs::File,
    rel: &str,
    scan: &mut LakeScan,
    seen: &mut [bool],
) -> Result<(), DemoError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use arrow_array::Array;
    let bad = |e: &dyn std::fmt::Display| DemoError::Parquet {
        path: p.to_path_buf(),
        reason: e.to_string(),
    };
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|e| bad(&e))?
        .build()
        .map_err(|e| bad(&e))?;
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        let (Some(seq), Some(time)) = (
            batch.column_by_name("sequence"),
            batch.column_by_name("eventTime"),
        ) else {
            return Err(bad(&"no sequence or eventTime column"));
        };
        let seq = seq.as_primitive::<Int64Type>();
        let time = time.as_primitive::<TimestampMillisecondType>();
        for i in 0..batch.num_rows() {
            scan.lines += 1;
            let t = chrono::DateTime::from_timestamp_millis(time.value(i)).unwrap_or_default();
            if t.format("date=%Y-%m-%d/hour=%H").to_string() != rel {
                scan.misplaced += 1;
            }
            match (seq.is_valid(i), seq.value(i)) {
                (true, s) if s >= 0 && (s as usize) < seen.len() => {
                    if std::mem::replace(&mut seen[s as usize], true) {
                        scan.duplicates += 1;
                    } else {
                        scan.distinct += 1;
                    }
                }
                _ => scan.misplaced += 1,
            }
        }
    }
    Ok(())
}

impl DemoReport {
    pub fn is_exact(&self) -> bool {
        [&self.lake, &self.parquet].iter().all(|l| {
            l.missing == 0 && l.duplicates == 0 && l.misplaced == 0 && l.distinct == self.produced
        })
    }

    /// The summary printed by `lakesink demo`.
    pub fn render(&self) -> String {
        let s = &self.summary;
        let secs = s.elapsed.as_secs_f64().max(1e-9);
        let ratio = self.produced_bytes as f64 / self.lake.bytes.max(1) as f64;
        let dir = self.table_dir.display();
        let pdir = self.parquet_dir.display();
        let pratio = self.produced_bytes as f64 / self.parquet.bytes.max(1) as f64;
        let verdict = if self.is_exact() {
            "every event exactly once in each table, each in the partition of its own event time"
                .to_string()
        } else {
            format!(
                "MISMATCH: json.gz {} missing, {} duplicated, {} misplaced; parquet {} missing, {} duplicated, {} misplaced",
                self.lake.missing, self.lake.duplicates, self.lake.misplaced,
                self.parquet.missing, self.parquet.duplicates, self.parquet.misplaced
            )
        };
        format!(
            "Lakesink demo: {produced} CloudTrail events → {dir}\n\
             \x20 produced    {produced} records, {pbytes} over 4 h of event time (5 % late), {parts} Kafka partitions\n\
             \x20 consumed    {consumed} records in {secs:.1} s: {rps:.0} records/s, {mbs:.1} MB/s\n\
             \x20 json.gz     {jlines} records in {files} files across {hive} hive partitions, {obytes} ({ratio:.1}× smaller than the input)\n\
             \x20 parquet     {plines} records in {pfiles} files, {pbytes_out} zstd ({pratio:.1}× smaller; {vs:.1}× smaller than json.gz)\n\
             \x20 committed   {segments} segments; offsets committed after upload\n\
             \x20 verified    {verdict}\n\
             \n\
             Query it with DuckDB (pip install duckdb):\n\
             \x20 python3 -c \"import duckdb; print(duckdb.sql(\\\"SELECT date, hour, count(*) AS events, count(DISTINCT eventID) AS ids FROM read_json('{dir}/**/*.json.gz', hive_partitioning=true) GROUP BY ALL ORDER BY ALL\\\"))\"\n\
             \x20 python3 -c \"import duckdb; print(duckdb.sql(\\\"SELECT eventName, count(*) AS n, max(eventTime) AS latest FROM read_parquet('{pdir}/**/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY n DESC LIMIT 5\\\"))\"\n",
            produced = self.produced,
            pbytes = human_bytes(self.produced_bytes),
            parts = self.kafka_partitions,
            consumed = s.stats.records_in,
            rps = s.stats.records_in as f64 / secs,
            mbs = s.stats.bytes_in as f64 / 1e6 / secs,
            jlines = self.lake.lines,
            plines = self.parquet.lines,
            pfiles = self.parquet.files,
            pbytes_out = human_bytes(self.parquet.bytes),
            vs = self.lake.bytes as f64 / self.parquet.bytes.max(1) as f64,
            files = self.lake.files,
            hive = self.lake.partitions.len(),
            obytes = human_bytes(self.lake.bytes),
            segments = s.stats.segments_committed,
        )
    }
}
