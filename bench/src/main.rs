//! `lakesink-bench`: measures Lakesink against the ceiling of the work it cannot avoid, on the
//! same data, in the same run.
//!
//! 1. A broker process (`lakesink-bench-broker`) preloads generated CloudTrail events into
//!    librdkafka's mock cluster.
//! 2. Ceilings: a null consumer in a consumer group (consume and discard) in its own process,
//!    and gzip of the same bytes with the same library and level (on one thread).
//! 3. Lakesink runs `--until-caught-up` for each configuration, in its own process, into a
//!    local directory (and, with `--s3`, into an S3 server).
//!
//! Each process is measured with `wait4`: wall time, user + system CPU, peak RSS. CPU-seconds
//! per GB of input is the headline: it holds on a noisy machine where wall time does not.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

mod compact;

use clap::{Parser, Subcommand};
use flate2::write::GzEncoder;
use flate2::Compression;
use lakesink::demo::generator::{event, GenConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

#[derive(Parser)]
#[command(about = "Benchmark Lakesink against the machine's ceiling")]
struct Args {
    /// Events to generate (~1.4 KB each). The default, ~3.6 GB of JSON over ~860 partitions,
    /// keeps each Lakesink run busy for 20 s or more on 2 cores, so that starting up and the
    /// final drain weigh little.
    #[arg(long, default_value_t = 2_500_000)]
    records: u64,
    /// A small, quick run (to keep the benchmark working in CI, not to judge speed).
    #[arg(long)]
    quick: bool,
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
    #[command(subcommand)]
    sub: Option<Sub>,
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
    /// Encode the benchmark's events with Lakesink's encoders, into one file and into the
    /// files Lakesink writes from them (no broker, no daemon), and print the CPU each takes:
    /// what the data's shape costs, apart from the daemon around the encoders.
    /// Opens this many CloudTrail Parquet files of `rows` rows each (settled every 100 rows,
    /// as the writer settles them) and prints what they hold in memory, by the process's
    /// resident set, against what Lakesink charges them to its memory budget.
    ParquetMemory {
        #[arg(long, default_value_t = 300)]
        files: u64,
        #[arg(long, default_value_t = 600)]
        rows: u64,
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

/// What `wait4` says about a finished process.
#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: f64,
    cpu: f64,
    peak_rss_mb: f64,
    /// CPU seconds the broker process spent meanwhile (serving the fetches), if it ran.
    broker_cpu: Option<f64>,
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// This process's CPU seconds so far.
fn process_cpu_self() -> f64 {
    process_cpu(std::process::id()).unwrap_or(0.0)
}

/// Runs `cmd` to its end and measures it, and the broker process `broker` meanwhile.
fn measure(mut cmd: Command, what: &str, broker: Option<u32>) -> Measured {
    let broker_before = broker.and_then(process_cpu);
    let start = Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; `ru` is a zeroed out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed().as_secs_f64();
    drop(child);
    assert!(r == pid, "wait4 on {what} failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{what} failed (status {status})"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let broker_after = broker.and_then(process_cpu);
    Measured {
        wall,
        cpu: secs(ru.ru_utime) + secs(ru.ru_stime),
        peak_rss_mb: ru.ru_maxrss as f64 / 1024.0,
        broker_cpu: broker_before.zip(broker_after).map(|(a, b)| b - a),
    }
}

/// The run with the median CPU time (`cpu` says a run's).
fn median<T>(mut runs: Vec<T>, cpu: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
    runs.swap_remove(runs.len() / 2)
}

/// Runs an in-process ceiling `n` times and returns the result with the median CPU time.
fn median_of<T>(n: usize, mut f: impl FnMut() -> (f64, T)) -> (f64, T) {
    median((0..n.max(1)).map(|_| f()).collect(), |r| r.0)
}

/// Thread CPU time, for measuring work done on this thread only.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

struct Broker {
    child: Child,
    _stdin: ChildStdin,
    bootstrap: String,
    partitions: i32,
    bytes: u64,
}

fn start_broker(bin_dir: &Path, records: u64, topic: &str) -> Broker {
    let mut child = Command::new(bin_dir.join("lakesink-bench-broker"))
        .args(["--records", &records.to_string(), "--topic", topic])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start lakesink-bench-broker (build it: cargo build --release -p lakesink-bench)");
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

/// CPU seconds to gzip the same NDJSON bytes at `level` (one thread, large writes), and the
/// bytes out.
fn gzip_ceiling(data: &[u8], level: u32) -> (f64, u64) {
    let t0 = thread_cpu();
    let mut out_bytes = 0u64;
    for chunk in data.chunks(64 << 20) {
        let mut enc = GzEncoder::new(Vec::with_capacity(chunk.len() / 4), Compression::new(level));
        for piece in chunk.chunks(256 << 10) {
            enc.write_all(piece).unwrap();
        }
        out_bytes += enc.finish().unwrap().len() as u64;
    }
    (thread_cpu() - t0, out_bytes)
}

/// The benchmark's events, one string each (what the broker holds, record by record).
fn event_rows(records: u64) -> Vec<String> {
    let cfg = GenConfig::default();
    let mut buf = String::new();
    (0..records)
        .map(|seq| {
            event(&cfg, seq, records, &mut buf);
            buf.clone()
        })
        .collect()
}

/// CPU seconds to find and parse every record's `eventTime`: serde_json into a borrowing struct
/// (which still checks the whole record is valid JSON) and an RFC 3339 parse. The issue counts
/// this as unavoidable work of an event-time-partitioned sink (≈ 0.7 CPU-s per GB).
fn event_time_ceiling(rows: &[String]) -> f64 {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(rename = "eventTime", borrow)]
        event_time: &'a str,
    }
    let t0 = thread_cpu();
    let mut sum = 0i64;
    for r in rows {
        let e: Event<'_> = serde_json::from_str(r).expect("generated events are valid");
        let t = chrono::DateTime::parse_from_rfc3339(e.event_time).expect("RFC 3339 eventTime");
        sum = sum.wrapping_add(t.timestamp_micros());
    }
    std::hint::black_box(sum);
    thread_cpu() - t0
}

/// The files Lakesink writes from the benchmark's rows: one per Kafka partition (the broker puts
/// event `seq` in partition `seq % partitions`) and event hour, each with its rows in offset
/// order.
fn lakesink_files(rows: &[String], partitions: i32) -> Vec<Vec<usize>> {
    let mut files: std::collections::BTreeMap<(u64, &str), Vec<usize>> = Default::default();
    for (seq, r) in rows.iter().enumerate() {
        // "eventTime":"2024-01-02T03:04:05Z": the hour is the first 13 characters.
        let at = r.find(r#""eventTime":""#).expect("eventTime") + 13;
        files
            .entry((seq as u64 % partitions as u64, &r[at..at + 13]))
            .or_default()
            .push(seq);
    }
    files.into_values().collect()
}

/// CPU seconds to encode the same rows into `files` (each a list of row indices: one file with
/// every row, or the files Lakesink writes, from [`lakesink_files`]), each with a new encoder
/// from `encoder`, and the bytes out. Rows are settled every 4,096 and output of 8 MiB or more
/// is taken then, as a worker settles rows and streams parts. Each file pays its format's fixed
/// costs (Parquet: a column chunk, a zstd context and a dictionary per column, a footer;
/// json.gz: an empty window at the start and 128 KiB segments, see `GzipNdjson`): the files
/// Lakesink writes show how much of its CPU the data's shape asks for, next to the one-file
/// ceilings the ratios use.
fn files_ceiling(
    rows: &[String],
    files: &[Vec<usize>],
    encoder: impl Fn() -> Box<dyn lakesink::encode::Encoder>,
) -> (f64, u64) {
    let t0 = thread_cpu();
    let mut rejected = Vec::new();
    let mut out = 0u64;
    for seqs in files {
        let mut enc = encoder();
        for (i, &seq) in seqs.iter().enumerate() {
            enc.append(rows[seq].as_bytes()).unwrap();
            if i % 4096 == 4095 {
                enc.settle(&mut rejected).unwrap();
                if let Some(part) = enc.take_ready(8 << 20) {
                    out += part.len() as u64;
                }
            }
        }
        out += enc.finish().unwrap().len() as u64;
    }
    assert!(rejected.is_empty());
    (thread_cpu() - t0, out)
}

/// The events as NDJSON: each followed by a newline.
fn ndjson(events: &[String]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|r| [r.as_bytes(), b"\n"])
        .flatten()
        .copied()
        .collect()
}

/// Resident set of this process, in bytes (from `/proc/self/statm`).
fn rss() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    s.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<usize>().ok())
        .expect("statm's resident pages")
        * 4096
}

/// `lakesink-bench parquet-memory`: what open Parquet files really hold against what they
/// are charged to the memory budget (`Encoder::overhead` + `Encoder::buffered`).
fn parquet_memory(files: u64, rows: u64) {
    use lakesink::encode::{Encoder, ParquetEncoder};
    use std::sync::Arc;
    let pq = Arc::new(lakesink::config::default_parquet_plan("cloudtrail.avsc").expect("schema"));
    let cfg = GenConfig::default();
    let mut buf = String::new();
    let before = rss();
    let mut open = Vec::new();
    let mut rejected = Vec::new();
    for f in 0..files {
        let mut e = ParquetEncoder::new(pq.clone());
        for seq in 0..rows {
            event(&cfg, f * rows + seq, files * rows, &mut buf);
            e.append(buf.as_bytes()).expect("append");
            if seq % 100 == 99 {
                e.settle(&mut rejected).expect("settle");
            }
        }
        open.push(e);
    }
    let after = rss();
    let charged: usize = open.iter().map(|e| e.overhead() + e.buffered()).sum();
    let per = |b: usize| b / 1024 / files.max(1) as usize;
    println!(
        "{files} open Parquet files × {rows} rows: RSS +{} KiB ({} KiB/file), charged {} KiB/file",
        after.saturating_sub(before) / 1024,
        per(after.saturating_sub(before)),
        per(charged)
    );
}

/// `lakesink-bench shapes`: each encoder on the same events in one file and in the files
/// Lakesink writes, passes interleaved, medians printed.
fn shapes(records: u64, partitions: i32, repeat: usize) {
    use lakesink::encode::{Encoder, GzipNdjson, ParquetEncoder, ParquetPlan};
    use std::sync::Arc;
    eprintln!("generating {records} events …");
    let events = event_rows(records);
    let ndjson = ndjson(&events);
    let gb = ndjson.len() as f64 / 1e9;
    let many = lakesink_files(&events, partitions);
    let one = vec![(0..events.len()).collect::<Vec<usize>>()];
    let pq = Arc::new(lakesink::config::default_parquet_plan("cloudtrail.avsc").unwrap());
    let no_dict = Arc::new(ParquetPlan::new(
        pq.schema.clone(),
        pq.origin.clone(),
        pq.props
            .clone()
            .into_builder()
            .set_dictionary_enabled(false)
            .build(),
        pq.strict,
    ));
    type Make<'a> = Box<dyn Fn() -> Box<dyn Encoder> + 'a>;
    let encoders: Vec<(&str, Make)> = vec![
        ("json.gz level 1", Box::new(|| Box::new(GzipNdjson::new(1)))),
        ("json.gz level 6", Box::new(|| Box::new(GzipNdjson::new(6)))),
        (
            "Parquet zstd",
            Box::new(|| Box::new(ParquetEncoder::new(pq.clone()))),
        ),
        (
            "Parquet zstd, no dictionaries",
            Box::new(|| Box::new(ParquetEncoder::new(no_dict.clone()))),
        ),
    ];
    // What each row measures: CPU seconds and bytes out.
    type Job<'a> = Box<dyn Fn() -> (f64, u64) + 'a>;
    let mut jobs: Vec<(String, Job)> = Vec::new();
    for level in [1, 6] {
        let ndjson = &ndjson;
        jobs.push((
            format!("flate2 gzip level {level}, one stream"),
            Box::new(move || gzip_ceiling(ndjson, level)),
        ));
    }
    let many_name = format!("{} files", many.len());
    for (name, make) in &encoders {
        for (shape, files) in [("one file", &one), (many_name.as_str(), &many)] {
            let events = &events;
            jobs.push((
                format!("{name}, {shape}"),
                Box::new(move || files_ceiling(events, files, make)),
            ));
        }
    }
    let mut runs = vec![Vec::new(); jobs.len()];
    for pass in 0..repeat.max(1) {
        eprintln!("pass {} …", pass + 1);
        for (run, (_, job)) in runs.iter_mut().zip(&jobs) {
            run.push(job());
        }
    }
    println!(
        "{records} events, {:.1} MB, {} (one per Kafka partition of {partitions} and hour); median of {repeat} passes, one thread\n",
        gb * 1e3,
        many_name
    );
    println!("| encoding | CPU-s/GB | output MB |\n|---|---|---|");
    for ((name, _), r) in jobs.iter().zip(runs) {
        let (cpu, out) = median(r, |r: &(f64, u64)| r.0);
        println!("| {name} | {:.2} | {:.1} |", cpu / gb, out as f64 / 1e6);
    }
}

/// One Lakesink run of the benchmark.
struct Target {
    name: String,
    url: String,
    level: u32,
    endpoint: Option<String>,
    parquet: bool,
}

/// Runs Lakesink into `target` (pass `pass`: its own consumer group and lake) to the end of the
/// topic and measures it; with the size of the lake written, if it is a local directory.
fn run_lakesink(
    lakesink: &Path,
    workdir: &Path,
    broker: &Broker,
    topic: &str,
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
    } = target;
    let url = format!("{url}-{pass}");
    let endpoint = endpoint.as_ref().map(|v| {
        format!("[storage.options]\nendpoint = \"{v}\"\nallow_http = \"true\"\nregion = \"us-east-1\"\n")
    });
    let config = format!(
        r#"[kafka]
brokers = "{brokers}"
group_id = "bench-{pid}-{i}-{pass}"
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
[tables.rotate]
max_records = 500000
max_bytes = "128MiB"
max_age = "5m"
"#,
        brokers = broker.bootstrap,
        pid = std::process::id(),
        endpoint = endpoint.unwrap_or_default(),
        format = if *parquet {
            "format = \"parquet\"\nschema = { file = \"cloudtrail.avsc\" }"
        } else {
            ""
        },
    );
    let path = workdir.join(format!("bench-{i}-{pass}.toml"));
    std::fs::write(&path, config).unwrap();
    eprintln!("running {name} (pass {}) …", pass + 1);
    let mut cmd = Command::new(lakesink);
    cmd.args(["run", "--until-caught-up", "--config"])
        .arg(&path)
        .env("LAKESINK_LOG", "warn");
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

/// The unavoidable work of a Lakesink run, whose ceiling it is measured against.
#[derive(Debug, Clone, Copy)]
enum Work {
    Gzip(u32),
    Parquet,
}

struct Row {
    name: String,
    m: Measured,
    out_mb: Option<f64>,
    ceiling: Option<Work>,
    ceiling_cpu_per_gb: Option<f64>,
}

impl Row {
    /// A ceiling measured on this thread: its CPU time is its wall time.
    fn on_this_thread(name: String, cpu: f64, out_bytes: Option<u64>) -> Row {
        Row {
            name,
            m: Measured {
                wall: cpu,
                cpu,
                peak_rss_mb: 0.0,
                broker_cpu: None,
            },
            out_mb: out_bytes.map(|b| b as f64 / 1e6),
            ceiling: None,
            ceiling_cpu_per_gb: None,
        }
    }
}

fn main() {
    let mut args = Args::parse();
    if let Some(Sub::NullConsume {
        brokers,
        topic,
        expect,
    }) = &args.sub
    {
        null_consume(brokers, topic, *expect);
        return;
    }
    if let Some(Sub::Compact {
        lake,
        topic,
        report,
    }) = &args.sub
    {
        compact::run(lake, topic, report);
        return;
    }
    if let Some(Sub::ParquetMemory { files, rows }) = &args.sub {
        parquet_memory(*files, *rows);
        return;
    }
    if let Some(Sub::Shapes {
        records,
        partitions,
        repeat,
    }) = &args.sub
    {
        shapes(*records, *partitions, *repeat);
        return;
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
    let topic = "bench";

    eprintln!("preloading {} events into the mock broker …", args.records);
    let mut broker = start_broker(&bin_dir, args.records, topic);
    let gb = broker.bytes as f64 / 1e9;
    let mb = broker.bytes as f64 / 1e6;
    eprintln!(
        "broker ready: {} partitions, {:.1} MB",
        broker.partitions, mb
    );

    let mut rows: Vec<Row> = Vec::new();

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
                    topic,
                    "--expect",
                    &args.records.to_string(),
                ]);
                measure(cmd, "null consumer", Some(broker.child.id()))
            })
            .collect(),
        |m| m.cpu,
    );
    let consume_cpu_per_gb = null.cpu / gb;
    rows.push(Row {
        name: "ceiling: null consumer (consume + discard)".into(),
        m: null,
        out_mb: None,
        ceiling: None,
        ceiling_cpu_per_gb: None,
    });

    // Lakesink runs.
    let mut targets: Vec<Target> = Vec::new();
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
    for level in [1u32, 6] {
        targets.push(Target {
            name: format!("lakesink json.gz level {level} → local dir"),
            url: format!("file://{}/gz{level}", lakes.display()),
            level,
            endpoint: None,
            parquet: false,
        });
    }
    targets.push(Target {
        name: "lakesink parquet zstd → local dir".into(),
        url: format!("file://{}/parquet", lakes.display()),
        level: 6,
        endpoint: None,
        parquet: true,
    });
    if let Some(s3) = &args.s3 {
        let (endpoint, bucket) = s3.rsplit_once('/').expect("--s3 http://host:port/BUCKET");
        targets.push(Target {
            name: "lakesink json.gz level 6 → S3".into(),
            url: format!("s3://{bucket}/bench-{}", std::process::id()),
            level: 6,
            endpoint: Some(endpoint.into()),
            parquet: false,
        });
        targets.push(Target {
            name: "lakesink parquet zstd → S3".into(),
            url: format!("s3://{bucket}/bench-pq-{}", std::process::id()),
            level: 6,
            endpoint: Some(endpoint.into()),
            parquet: true,
        });
    }
    // Pass by pass, each target once per pass: a slow spell of the machine hits all of them.
    let mut runs: Vec<Vec<(Measured, Option<f64>)>> = targets.iter().map(|_| Vec::new()).collect();
    for pass in 0..args.repeat.max(1) {
        for (i, t) in targets.iter().enumerate() {
            runs[i].push(run_lakesink(
                &lakesink, &workdir, &broker, topic, i, pass, t,
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
            ceiling_cpu_per_gb: None,
        });
    }
    // Compaction of the first pass's json.gz level 6 and Parquet lakes (each in a process of
    // its own).
    let compactions: Vec<(&str, Measured, serde_json::Value)> = [
        ("json.gz level 6", "gz6-0", "gzip members concatenated"),
        ("parquet zstd", "parquet-0", "row groups copied as bytes"),
    ]
    .into_iter()
    .map(|(name, dir, how)| {
        let report = workdir.join(format!("compaction-{dir}.json"));
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["compact", "--topic", topic, "--lake"])
            .arg(lakes.join(dir))
            .arg("--report")
            .arg(&report);
        eprintln!("compacting the {name} lake …");
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
    // The in-process ceilings come after the Lakesink runs: they hold the events in this
    // process, and a child forked from a large process starts with its peak RSS.

    // The events once, for every in-process ceiling; per GB of NDJSON (one newline each).
    let events = event_rows(args.records);
    let ndjson = ndjson(&events);
    let ndjson_gb = ndjson.len() as f64 / 1e9;

    // Ceiling 2: gzip of the same bytes.
    let mut gzip_cpu_per_gb = std::collections::BTreeMap::new();
    for level in [1u32, 6] {
        let (cpu, bytes_out) = median_of(args.repeat, || gzip_ceiling(&ndjson, level));
        gzip_cpu_per_gb.insert(level, cpu / ndjson_gb);
        rows.push(Row::on_this_thread(
            format!("ceiling: gzip level {level} of the same bytes (1 thread)"),
            cpu,
            Some(bytes_out),
        ));
    }

    // Ceiling 3: finding and parsing each record's event time (json.gz runs; the Parquet
    // ceiling parses every field anyway).
    drop(ndjson);
    let (cpu, ()) = median_of(args.repeat, || (event_time_ceiling(&events), ()));
    let event_time_cpu_per_gb = cpu / ndjson_gb;
    rows.push(Row::on_this_thread(
        "ceiling: find and parse eventTime (serde_json, borrowing; 1 thread)".into(),
        cpu,
        None,
    ));

    // Ceiling 4: JSON → Arrow → Parquet (zstd) of the same rows, in one file, with the demo
    // table's schema and settings and Lakesink's encoder.
    let pq =
        std::sync::Arc::new(lakesink::config::default_parquet_plan("cloudtrail.avsc").unwrap());
    let parquet = || -> Box<dyn lakesink::encode::Encoder> {
        Box::new(lakesink::encode::ParquetEncoder::new(pq.clone()))
    };
    let one = vec![(0..events.len()).collect::<Vec<usize>>()];
    let (cpu, bytes_out) = median_of(args.repeat, || files_ceiling(&events, &one, parquet));
    let parquet_cpu_per_gb = cpu / ndjson_gb;
    rows.push(Row::on_this_thread(
        "ceiling: JSON → Arrow → Parquet zstd of the same rows (1 thread)".into(),
        cpu,
        Some(bytes_out),
    ));

    // Not a ceiling the ratios use: the same Parquet work in the files Lakesink writes.
    let files = lakesink_files(&events, broker.partitions);
    let n = files.len();
    let (cpu, bytes_out) = median_of(args.repeat, || files_ceiling(&events, &files, parquet));
    let parquet_files_cpu_per_gb = cpu / ndjson_gb;
    rows.push(Row::on_this_thread(
        format!(
            "reference: the same rows → Parquet in the {n} files Lakesink writes (one per Kafka partition and hour; 1 thread)"
        ),
        cpu,
        Some(bytes_out),
    ));

    // Nor these: gzip of the same rows in the json.gz files Lakesink writes.
    let mut gzip_files_cpu_per_gb = std::collections::BTreeMap::new();
    for level in [1u32, 6] {
        let (cpu, bytes_out) = median_of(args.repeat, || {
            files_ceiling(&events, &files, || {
                Box::new(lakesink::encode::GzipNdjson::new(level))
            })
        });
        gzip_files_cpu_per_gb.insert(level, cpu / ndjson_gb);
        rows.push(Row::on_this_thread(
            format!("reference: the same rows → json.gz level {level} in the {n} files Lakesink writes (1 thread)"),
            cpu,
            Some(bytes_out),
        ));
    }

    // The runs' ceilings.
    for r in &mut rows {
        r.ceiling_cpu_per_gb = r.ceiling.map(|w| {
            consume_cpu_per_gb
                + match w {
                    Work::Parquet => parquet_cpu_per_gb,
                    Work::Gzip(level) => event_time_cpu_per_gb + gzip_cpu_per_gb[&level],
                }
        });
    }
    drop(broker._stdin);
    let _ = broker.child.wait();

    // The table.
    let mut md = String::new();
    let _ = writeln!(md, "# Lakesink benchmark\n");
    let _ = writeln!(
        md,
        "{} CloudTrail-shaped events, {:.1} MB of JSON, {} Kafka partitions (mock broker in its own process), {} cores.\n",
        args.records, mb, broker.partitions, cores
    );
    let _ = writeln!(
        md,
        "Command: `scripts/bench.sh {}`. Each row is the pass (of {}) with the median CPU time.\n",
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        args.repeat.max(1)
    );
    let _ = writeln!(md, "| run | records | input MB | wall s | CPU s | CPU-s/GB | MB/s | records/s | peak RSS MB | output MB | broker CPU-s/GB | ceiling CPU-s/GB | CPU ratio | throughput ratio |");
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    // The broker shares the machine: serving the bytes costs it about what it cost while the
    // null consumer read them, and the cores it takes are not Lakesink's to use.
    let broker_cpu_per_gb = null.broker_cpu.unwrap_or(0.0) / gb;
    for r in &rows {
        let cpu_per_gb = r.m.cpu / gb;
        let (cpu_ratio, tput_ratio) = match r.ceiling_cpu_per_gb {
            Some(c) => {
                let ceiling_mb_s = cores as f64 / (c + broker_cpu_per_gb) * 1e3;
                (
                    format!("{:.0} %", c / cpu_per_gb * 100.0),
                    format!("{:.0} %", mb / r.m.wall / ceiling_mb_s * 100.0),
                )
            }
            None => ("".into(), "".into()),
        };
        let _ =
            writeln!(
            md,
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {} | {} | {} | {} | {} | {} |",
            r.name,
            args.records,
            mb,
            r.m.wall,
            r.m.cpu,
            cpu_per_gb,
            mb / r.m.wall,
            args.records as f64 / r.m.wall,
            if r.m.peak_rss_mb > 0.0 { format!("{:.0}", r.m.peak_rss_mb) } else { String::new() },
            r.out_mb.map(|x| format!("{x:.1}")).unwrap_or_default(),
            r.m.broker_cpu.map(|x| format!("{:.2}", x / gb)).unwrap_or_default(),
            r.ceiling_cpu_per_gb.map(|x| format!("{x:.2}")).unwrap_or_default(),
            cpu_ratio,
            tput_ratio,
        );
    }
    let _ = writeln!(
        md,
        "\nCeiling of a run = consume-and-discard CPU-s/GB + finding and parsing eventTime + gzip CPU-s/GB at the run's level \
         (or consume-and-discard + JSON → Arrow → Parquet CPU-s/GB for Parquet runs). \
         CPU ratio = ceiling ÷ Lakesink CPU-s/GB. Throughput ratio = Lakesink MB/s ÷ ({cores} cores ÷ (ceiling CPU-s/GB + \
         the broker's {broker_cpu_per_gb:.2} CPU-s/GB)): the broker runs on the same cores, and serving the bytes costs it about \
         what it cost while the null consumer read them (its CPU in each run is in the table). (SeaweedFS, in the S3 runs, also shares the cores; it is not counted.)"
    );
    if let Some(pq) = rows
        .iter()
        .find(|r| matches!(r.ceiling, Some(Work::Parquet)) && r.name.contains("local dir"))
    {
        let per_gb = pq.m.cpu / gb;
        let _ = writeln!(
            md,
            "\nThe Parquet work alone, in the files Lakesink writes ({parquet_files_cpu_per_gb:.2} CPU-s/GB), \
             is {:.1}× the one-file ceiling: per-file costs the data's shape asks for. Against it plus \
             consume-and-discard, Lakesink's Parquet run is at {:.0} %.",
            parquet_files_cpu_per_gb / parquet_cpu_per_gb,
            (consume_cpu_per_gb + parquet_files_cpu_per_gb) / per_gb * 100.0
        );
    }
    for r in rows.iter().filter(|r| r.name.contains("local dir")) {
        let Some(Work::Gzip(level)) = r.ceiling else {
            continue;
        };
        let files_cpu = gzip_files_cpu_per_gb[&level];
        let _ = writeln!(
            md,
            "\ngzip level {level} of the same rows, in the files Lakesink writes ({files_cpu:.2} CPU-s/GB), \
             is {:.2}× one stream. Against it plus consume-and-discard and eventTime, Lakesink's \
             json.gz level {level} run is at {:.0} %.",
            files_cpu / gzip_cpu_per_gb[&level],
            (consume_cpu_per_gb + event_time_cpu_per_gb + files_cpu) / (r.m.cpu / gb) * 100.0
        );
    }
    for (how, cm, c) in &compactions {
        let (name, c) = (&c["name"], &c["figures"]);
        let _ = writeln!(
            md,
            "\nCompaction of the {} lake (`[tables.compact]`, target 256 MiB; sealed first from the claims, then {how} into one object per partition, the catalog switched, the replaced files deleted; local disk, a process of its own): {} partitions, files per partition {:.1} → {:.1} ({} → {} files), {:.1} MB compacted in {:.2} CPU-s and {:.2} s: **{:.2} CPU-s per GB compacted**; the whole process (reading the claims and sealing first) {:.2} CPU-s, peak RSS {:.0} MB.",
            name.as_str().unwrap_or(""),
            c["compacted"],
            c["files_per_partition_before"].as_f64().unwrap_or(0.0),
            c["files_per_partition_after"].as_f64().unwrap_or(0.0),
            c["files_before"],
            c["files_after"],
            c["bytes"].as_f64().unwrap_or(0.0) / 1e6,
            c["cpu"].as_f64().unwrap_or(0.0),
            c["wall"].as_f64().unwrap_or(0.0),
            c["cpu_per_gb"].as_f64().unwrap_or(0.0),
            cm.cpu,
            cm.peak_rss_mb,
        );
    }
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
