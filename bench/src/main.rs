//! `lakesink-bench`: measures Lakesink against the ceiling of the work it cannot avoid, on the
//! same data, in the same run, in two shapes of the same events:
//!
//! - **real**: 24 Kafka partitions holding ~150 MB each, files rotated at 64 MiB: the shape
//!   users run (6–48 partitions, few large files);
//! - **many**: ~4 MiB per partition (~850 partitions for 3.6 GB), so ~5,000 small files.
//!
//! For each shape:
//! 1. A broker process (`lakesink-bench-broker`) preloads generated CloudTrail events into
//!    librdkafka's mock cluster (its retention raised to hold every record, see
//!    `src/mock_retention.c`).
//! 2. A null consumer in a consumer group (consume and discard), in its own process.
//! 3. Lakesink runs `--until-caught-up` for each configuration, in its own process, into a
//!    local directory (and, with `--s3`, into an S3 server); then compacts two of the lakes.
//!
//! Then, once, the in-process ceilings on the same events: gzip of the same bytes with the same
//! library and level, the event-time parse, JSON → Arrow → Parquet (one thread each), and the
//! same encoders in the files each shape makes Lakesink write.
//!
//! Each process is measured with `wait4`: wall time, user + system CPU, peak RSS. CPU-seconds
//! per GB of input is the headline: it holds on a noisy machine where wall time does not.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

mod avro;
mod ceilings;
mod compact;
mod measure;
mod report;

use clap::{Parser, Subcommand};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use ceilings::{
    event_rows, event_time_ceiling, files_ceiling, gzip_ceiling, lakesink_files, ndjson,
};
use measure::{measure, median, median_of, Measured};
use report::{Row, ShapeReport, Work};

#[derive(Parser)]
#[command(about = "Benchmark Lakesink against the machine's ceiling")]
struct Args {
    /// Events to generate (~1.4 KB each). The default, ~3.6 GB of JSON, keeps each Lakesink
    /// run busy for 20 s or more on 2 cores, so that starting up and the final drain weigh
    /// little.
    #[arg(long, default_value_t = 2_500_000)]
    records: u64,
    /// A small, quick run (to keep the benchmark working in CI, not to judge speed).
    #[arg(long)]
    quick: bool,
    /// The shapes to run, in order: `real` (24 partitions, large files), `many` (~4 MiB per
    /// partition, small files).
    #[arg(long, value_delimiter = ',', default_value = "real,many")]
    shapes: Vec<ShapeKind>,
    /// Where the results table goes (Markdown).
    #[arg(long, default_value = "bench/results/latest.md")]
    out: PathBuf,
    /// Scratch directory for the lakes written.
    #[arg(long, default_value = "target/bench")]
    workdir: PathBuf,
    /// Also run into this S3 endpoint (bucket must exist): `http://127.0.0.1:8333/BUCKET`;
    /// credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    #[arg(long)]
    s3: Option<String>,
    /// Measure everything this many times, interleaved, and show for each row the pass with the
    /// median CPU time. CPU time for the same work varied by ±15 % between runs on the 2-core
    /// VMs this was built on.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Also run json.gz level 6 and Parquet with only these of Lakesink's malloc settings
    /// (`LAKESINK_MALLOC_TUNING`: `off` for glibc's defaults, or a list such as
    /// `arena_max` or `malloc_trim`), to weigh them; may be given more than once.
    #[arg(long)]
    malloc: Vec<String>,
    #[command(subcommand)]
    sub: Option<Sub>,
}

/// A shape of the same events: how many Kafka partitions hold them, and the rotation size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShapeKind {
    /// 24 Kafka partitions, files rotated at 64 MiB (or by hour).
    Real,
    /// ~4 MiB per Kafka partition, ~5,000 small files.
    Many,
}

impl ShapeKind {
    fn key(self) -> &'static str {
        match self {
            ShapeKind::Real => "real",
            ShapeKind::Many => "many",
        }
    }
    /// Partitions for the broker (0: sized to the data, ~4 MiB each).
    fn partitions(self) -> i32 {
        match self {
            ShapeKind::Real => 24,
            ShapeKind::Many => 0,
        }
    }
    fn max_bytes(self) -> &'static str {
        match self {
            ShapeKind::Real => "64MiB",
            ShapeKind::Many => "128MiB",
        }
    }
    fn title(self) -> &'static str {
        match self {
            ShapeKind::Real => {
                "The real shape: 24 Kafka partitions, files rotated at 64 MiB or at the end of each hour"
            }
            ShapeKind::Many => {
                "The many-partition shape: ~4 MiB per Kafka partition, one small file per partition and hour"
            }
        }
    }
}

#[derive(Subcommand)]
enum Sub {
    /// (internal) Consume a topic in a consumer group and discard everything.
    NullConsume {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        expect: u64,
    },
    /// Opens this many CloudTrail Parquet files of `rows` rows each (settled every 100 rows,
    /// as the writer settles them) and prints what they hold in memory, by the process's
    /// resident set, against what Lakesink charges them to its memory budget.
    ParquetMemory {
        #[arg(long, default_value_t = 300)]
        files: u64,
        #[arg(long, default_value_t = 600)]
        rows: u64,
        /// Parse the records once, into the files' builders (`parquet.one_pass`), as the
        /// writer does for tables whose schema the direct path covers.
        #[arg(long)]
        one_pass: bool,
    },
    /// (internal) Seal and compact the `cloudtrail` table of a lake Lakesink wrote into a
    /// local directory, and write the figures (CPU-s per GB compacted, files per partition
    /// before and after) to `report` as JSON.
    Compact {
        #[arg(long)]
        lake: PathBuf,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        report: PathBuf,
    },
    /// Encode the benchmark's events with Lakesink's encoders, into one file and into the
    /// files Lakesink writes from them (no broker, no daemon), and print the CPU each takes:
    /// what the data's shape costs, apart from the daemon around the encoders.
    /// Write the benchmark's events as Confluent Avro records of the shipped CloudTrail schema
    /// into Parquet by both paths (through JSON text, straight into Arrow) and print the CPU
    /// each takes (one thread, no broker).
    Avro {
        #[arg(long, default_value_t = 300_000)]
        records: u64,
        /// Passes, interleaved; each row shows the median.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Route and encode the benchmark's events into one Parquet file the old way (the route
    /// pass, then arrow-json) and the direct way (one pass into builders), and print the CPU
    /// each takes (one thread, no broker).
    JsonDirect {
        #[arg(long, default_value_t = 300_000)]
        records: u64,
        /// Passes, interleaved; each row shows the median.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    Shapes {
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Kafka partitions the events are spread over (the broker's count for this size).
        #[arg(long, default_value_t = 853)]
        partitions: i32,
        /// Passes, interleaved; each row shows the median.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

struct Broker {
    child: Child,
    _stdin: ChildStdin,
    bootstrap: String,
    partitions: i32,
    bytes: u64,
}

impl Broker {
    /// Starts the broker process and waits until it holds every record.
    fn start(bin_dir: &Path, records: u64, topic: &str, partitions: i32) -> Broker {
        let mut child = Command::new(bin_dir.join("lakesink-bench-broker"))
            .args(["--records", &records.to_string(), "--topic", topic])
            .args(["--partitions", &partitions.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect(
                "start lakesink-bench-broker (build it: cargo build --release -p lakesink-bench)",
            );
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut get = |key: &str| -> String {
            let line = lines.next().expect("broker output").expect("broker output");
            line.strip_prefix(key)
                .unwrap_or_else(|| panic!("broker said {line:?}, expected {key}"))
                .trim()
                .to_string()
        };
        let bootstrap = get("BOOTSTRAP");
        let partitions = get("PARTITIONS").parse().unwrap();
        let bytes = get("BYTES").parse().unwrap();
        Broker {
            child,
            _stdin: stdin,
            bootstrap,
            partitions,
            bytes,
        }
    }

    /// Closes the broker's standard input (it exits then) and waits for it.
    fn stop(mut self) {
        drop(self._stdin);
        let _ = self.child.wait();
    }
}

fn null_consume(brokers: &str, topic: &str, expect: u64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("null-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let (mut n, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(3600);
    while n < expect {
        assert!(
            Instant::now() < deadline,
            "null consumer timed out at {n}/{expect}"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            n += 1;
            bytes += m.payload_len() as u64;
        }
    }
    std::hint::black_box(bytes);
}

/// One Lakesink run of the benchmark.
struct Target {
    name: String,
    url: String,
    level: u32,
    endpoint: Option<String>,
    parquet: bool,
    /// Extra lines of the table's section (`[tables.parquet]` settings).
    extra: &'static str,
    /// Environment of the daemon's process.
    env: Vec<(&'static str, String)>,
}

/// Runs Lakesink into `target` (pass `pass`: its own consumer group and lake) to the end of the
/// topic and measures it; with the size of the lake written, if it is a local directory.
#[allow(clippy::too_many_arguments)]
fn run_lakesink(
    lakesink: &Path,
    workdir: &Path,
    broker: &Broker,
    topic: &str,
    shape: ShapeKind,
    i: usize,
    pass: usize,
    target: &Target,
) -> (Measured, Option<f64>) {
    let Target {
        name,
        url,
        level,
        endpoint,
        parquet,
        extra,
        env,
    } = target;
    let url = format!("{url}-{pass}");
    let endpoint = endpoint.as_ref().map(|v| {
        format!("[storage.options]\nendpoint = \"{v}\"\nallow_http = \"true\"\nregion = \"us-east-1\"\n")
    });
    let config = format!(
        r#"[kafka]
brokers = "{brokers}"
group_id = "bench-{pid}-{shape}-{i}-{pass}"
[storage]
url = "{url}"
{endpoint}
[pipeline]
max_buffered_bytes = "1GiB"
[http]
address = "127.0.0.1:0"
[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
max_future_skew = "1000d"
compression_level = {level}
{format}
{extra}
[tables.rotate]
max_records = 500000
max_bytes = "{max_bytes}"
max_age = "5m"
"#,
        brokers = broker.bootstrap,
        pid = std::process::id(),
        shape = shape.key(),
        endpoint = endpoint.unwrap_or_default(),
        max_bytes = shape.max_bytes(),
        format = if *parquet {
            "format = \"parquet\"\nschema = { file = \"cloudtrail.avsc\" }"
        } else {
            ""
        },
    );
    let path = workdir.join(format!("bench-{}-{i}-{pass}.toml", shape.key()));
    std::fs::write(&path, config).unwrap();
    eprintln!("running {name} (pass {}) …", pass + 1);
    let mut cmd = Command::new(lakesink);
    cmd.args(["run", "--until-caught-up", "--config"])
        .arg(&path)
        .env("LAKESINK_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v)));
    let m = measure(cmd, name, Some(broker.child.id()));
    let out_mb = url
        .strip_prefix("file://")
        .map(|d| dir_bytes(Path::new(d)) as f64 / 1e6);
    (m, out_mb)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

/// Where a shape's runs go and what they run against.
struct Setup<'a> {
    args: &'a Args,
    lakesink: &'a Path,
    workdir: &'a Path,
    lakes: &'a Path,
    bin_dir: &'a Path,
    topic: &'a str,
}

/// One shape: its broker, the null consumer, the Lakesink runs (passes interleaved), and the
/// compaction of two of its lakes. The references in its files are added later.
fn run_shape(s: &Setup, kind: ShapeKind) -> (ShapeReport, u64) {
    let args = s.args;
    eprintln!(
        "[{}] preloading {} events into the mock broker …",
        kind.key(),
        args.records
    );
    let broker = Broker::start(s.bin_dir, args.records, s.topic, kind.partitions());
    let gb = broker.bytes as f64 / 1e9;
    eprintln!(
        "[{}] broker ready: {} partitions, {:.1} MB",
        kind.key(),
        broker.partitions,
        gb * 1e3
    );

    // Ceiling 1: consume and discard, in a consumer group.
    let null = median(
        (0..args.repeat.max(1))
            .map(|_| {
                let mut cmd = Command::new(std::env::current_exe().unwrap());
                cmd.args([
                    "null-consume",
                    "--brokers",
                    &broker.bootstrap,
                    "--topic",
                    s.topic,
                    "--expect",
                    &args.records.to_string(),
                ]);
                measure(cmd, "null consumer", Some(broker.child.id()))
            })
            .collect(),
        |m| m.cpu,
    );
    let mut rows = vec![Row {
        name: "ceiling: null consumer (consume + discard)".into(),
        m: null,
        out_mb: None,
        ceiling: None,
    }];

    let lakes = s.lakes.join(kind.key());
    let mut targets: Vec<Target> = Vec::new();
    for level in [1u32, 6] {
        targets.push(Target {
            name: format!("lakesink json.gz level {level} → local dir"),
            url: format!("file://{}/gz{level}", lakes.display()),
            level,
            endpoint: None,
            parquet: false,
            extra: "",
            env: Vec::new(),
        });
    }
    targets.push(Target {
        name: "lakesink parquet zstd → local dir".into(),
        url: format!("file://{}/parquet", lakes.display()),
        level: 6,
        endpoint: None,
        parquet: true,
        extra: "",
        env: Vec::new(),
    });
    // The same with the route pass and arrow-json, the way before the one pass: the two side by
    // side in one run, passes interleaved, on a VM whose CPU times drift between runs.
    targets.push(Target {
        name: "lakesink parquet zstd, two passes (parquet.one_pass = false) → local dir".into(),
        url: format!("file://{}/parquet2", lakes.display()),
        level: 6,
        endpoint: None,
        parquet: true,
        extra: "[tables.parquet]\none_pass = false",
        env: Vec::new(),
    });
    for tuning in &args.malloc {
        // The same with only these of Lakesink's malloc settings (`memory::tune_allocator`;
        // `off`: glibc's defaults), side by side.
        for (name, key, parquet) in [
            ("json.gz level 6", "gz6", false),
            ("parquet zstd", "parquet", true),
        ] {
            targets.push(Target {
                name: format!("lakesink {name}, LAKESINK_MALLOC_TUNING={tuning} → local dir"),
                url: format!(
                    "file://{}/{key}-malloc-{}",
                    lakes.display(),
                    tuning.replace(',', "-")
                ),
                level: 6,
                endpoint: None,
                parquet,
                extra: "",
                env: vec![("LAKESINK_MALLOC_TUNING", tuning.clone())],
            });
        }
    }
    if let Some(s3) = &args.s3 {
        let (endpoint, bucket) = s3.rsplit_once('/').expect("--s3 http://host:port/BUCKET");
        let run = format!("{}-{}", std::process::id(), kind.key());
        targets.push(Target {
            name: "lakesink json.gz level 6 → S3".into(),
            url: format!("s3://{bucket}/bench-{run}"),
            level: 6,
            endpoint: Some(endpoint.into()),
            parquet: false,
            extra: "",
            env: Vec::new(),
        });
        targets.push(Target {
            name: "lakesink parquet zstd → S3".into(),
            url: format!("s3://{bucket}/bench-pq-{run}"),
            level: 6,
            endpoint: Some(endpoint.into()),
            parquet: true,
            extra: "",
            env: Vec::new(),
        });
    }
    // Pass by pass, each target once per pass: a slow spell of the machine hits all of them.
    let mut runs: Vec<Vec<(Measured, Option<f64>)>> = targets.iter().map(|_| Vec::new()).collect();
    for pass in 0..args.repeat.max(1) {
        for (i, t) in targets.iter().enumerate() {
            runs[i].push(run_lakesink(
                s.lakesink, s.workdir, &broker, s.topic, kind, i, pass, t,
            ));
        }
    }
    for (t, runs) in targets.iter().zip(runs) {
        let (m, out_mb) = median(runs, |r| r.0.cpu);
        rows.push(Row {
            name: t.name.clone(),
            m,
            out_mb,
            ceiling: Some(if t.parquet {
                Work::Parquet
            } else {
                Work::Gzip(t.level)
            }),
        });
    }
    let partitions = broker.partitions;
    let bytes = broker.bytes;
    broker.stop();

    // Compaction of the first pass's json.gz level 6 and Parquet lakes (each in a process of
    // its own).
    let compactions = [
        ("json.gz level 6", "gz6-0", "gzip members concatenated"),
        ("parquet zstd", "parquet-0", "row groups copied as bytes"),
    ]
    .into_iter()
    .map(|(name, dir, how)| {
        let report = s
            .workdir
            .join(format!("compaction-{}-{dir}.json", kind.key()));
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["compact", "--topic", s.topic, "--lake"])
            .arg(lakes.join(dir))
            .arg("--report")
            .arg(&report);
        eprintln!("[{}] compacting the {name} lake …", kind.key());
        let m = measure(cmd, "compaction", None);
        let figures: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (
            how,
            m,
            serde_json::json!({"name": name, "figures": figures}),
        )
    })
    .collect();
    let report = ShapeReport {
        title: kind.title(),
        key: kind.key(),
        partitions,
        rows,
        consume: null.cpu / gb,
        broker: null.broker_cpu.unwrap_or(0.0) / gb,
        files_parquet: 0.0,
        files_gzip: BTreeMap::new(),
        files: 0,
        compactions,
    };
    (report, bytes)
}

fn main() {
    let mut args = Args::parse();
    match &args.sub {
        Some(Sub::NullConsume {
            brokers,
            topic,
            expect,
        }) => return null_consume(brokers, topic, *expect),
        Some(Sub::Compact {
            lake,
            topic,
            report,
        }) => return compact::run(lake, topic, report),
        Some(Sub::ParquetMemory {
            files,
            rows,
            one_pass,
        }) => return ceilings::parquet_memory(*files, *rows, *one_pass),
        Some(Sub::Shapes {
            records,
            partitions,
            repeat,
        }) => return ceilings::shapes(*records, *partitions, *repeat),
        Some(Sub::Avro { records, repeat }) => return avro::avro(*records, *repeat),
        Some(Sub::JsonDirect { records, repeat }) => return avro::json_direct(*records, *repeat),
        None => {}
    }
    if args.quick {
        args.records = 20_000;
    }
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let lakesink = bin_dir.join("lakesink");
    assert!(
        lakesink.exists(),
        "{} not found: build it with the same profile (cargo build --release -p lakesink)",
        lakesink.display()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let repeat = args.repeat.max(1);

    // Each run writes into a new directory: ext4 spends much of a run's system time looking
    // past recently deleted inodes when files are created where a lake was just removed. The
    // lakes of earlier runs are removed at the end, after the measurements.
    std::fs::create_dir_all(&args.workdir).unwrap();
    let workdir = std::fs::canonicalize(&args.workdir).unwrap();
    let old_lakes: Vec<PathBuf> = std::fs::read_dir(&workdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    let lakes = workdir.join(format!("lakes-{}", std::process::id()));
    let setup = Setup {
        args: &args,
        lakesink: &lakesink,
        workdir: &workdir,
        lakes: &lakes,
        bin_dir: &bin_dir,
        topic: "bench",
    };
    let mut shapes = Vec::new();
    let mut bytes = 0;
    for &kind in &args.shapes {
        let (report, b) = run_shape(&setup, kind);
        bytes = b;
        shapes.push(report);
    }
    let gb = bytes as f64 / 1e9;

    // The in-process ceilings come after the Lakesink runs: they hold the events in this
    // process, and a child forked from a large process starts with its peak RSS.
    // The events once, for every in-process ceiling; per GB of NDJSON (one newline each).
    eprintln!("in-process ceilings …");
    let events = event_rows(args.records);
    let ndjson = ndjson(&events);
    let ndjson_gb = ndjson.len() as f64 / 1e9;
    let mut ceiling_rows = Vec::new();

    // gzip of the same bytes.
    let mut gzip = BTreeMap::new();
    for level in [1u32, 6] {
        let (cpu, bytes_out) = median_of(repeat, || gzip_ceiling(&ndjson, level));
        gzip.insert(level, cpu / ndjson_gb);
        ceiling_rows.push(Row::on_this_thread(
            format!("ceiling: gzip level {level} of the same bytes"),
            cpu,
            Some(bytes_out),
        ));
    }
    drop(ndjson);

    // Finding and parsing each record's event time (json.gz runs; the Parquet ceiling parses
    // every field anyway).
    let (cpu, ()) = median_of(repeat, || (event_time_ceiling(&events), ()));
    let event_time = cpu / ndjson_gb;
    ceiling_rows.push(Row::on_this_thread(
        "ceiling: find and parse eventTime (serde_json, borrowing)".into(),
        cpu,
        None,
    ));

    // JSON → Arrow → Parquet (zstd) of the same rows, in one file, with the demo table's schema
    // and settings and Lakesink's encoder.
    let pq =
        std::sync::Arc::new(lakesink::config::default_parquet_plan("cloudtrail.avsc").unwrap());
    let parquet = || -> Box<dyn lakesink::encode::Encoder> {
        Box::new(lakesink::encode::ParquetEncoder::new(pq.clone()))
    };
    let one = vec![(0..events.len()).collect::<Vec<usize>>()];
    let (cpu, bytes_out) = median_of(repeat, || files_ceiling(&events, &one, parquet));
    let parquet_cpu = cpu / ndjson_gb;
    ceiling_rows.push(Row::on_this_thread(
        "ceiling: JSON → Arrow → Parquet zstd of the same rows".into(),
        cpu,
        Some(bytes_out),
    ));

    // Not ceilings the ratios use: the same encoders in the files each shape makes Lakesink
    // write.
    for s in &mut shapes {
        let files = lakesink_files(&events, s.partitions);
        let n = files.len();
        s.files = n;
        let (cpu, bytes_out) = median_of(repeat, || files_ceiling(&events, &files, parquet));
        s.files_parquet = cpu / ndjson_gb;
        s.rows.push(Row::on_this_thread(
            format!(
                "reference: the same rows → Parquet in the {n} files Lakesink writes (1 thread)"
            ),
            cpu,
            Some(bytes_out),
        ));
        for level in [1u32, 6] {
            let (cpu, bytes_out) = median_of(repeat, || {
                files_ceiling(&events, &files, || {
                    Box::new(lakesink::encode::GzipNdjson::new(level))
                })
            });
            s.files_gzip.insert(level, cpu / ndjson_gb);
            s.rows.push(Row::on_this_thread(
                format!("reference: the same rows → json.gz level {level} in the {n} files Lakesink writes (1 thread)"),
                cpu,
                Some(bytes_out),
            ));
        }
    }

    let report = report::Report {
        records: args.records,
        gb,
        cores,
        command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        repeat,
        ceilings: report::Ceilings {
            event_time,
            gzip,
            parquet: parquet_cpu,
        },
        ceiling_rows,
        shapes: &shapes,
    };
    let md = report.markdown();
    print!("{md}");
    if let Some(parent) = args.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&args.out, md).expect("write the results");
    eprintln!("written to {}", args.out.display());
    for old in old_lakes {
        let _ = std::fs::remove_dir_all(old);
    }
}
