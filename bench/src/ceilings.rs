//! The in-process ceilings: the work Lakesink cannot avoid, done on the same data by one thread
//! with the same libraries (gzip, the event-time parse, JSON → Arrow → Parquet), one stream and
//! in the files Lakesink writes; and the `shapes` and `parquet-memory` subcommands.

use std::io::Write as _;

use flate2::write::GzEncoder;
use flate2::Compression;
use lakesink::demo::generator::{event, GenConfig};

use crate::measure::{median, thread_cpu};

/// CPU seconds to gzip the same NDJSON bytes at `level` (one thread, large writes), and the
/// bytes out.
pub fn gzip_ceiling(data: &[u8], level: u32) -> (f64, u64) {
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
pub fn event_rows(records: u64) -> Vec<String> {
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
pub fn event_time_ceiling(rows: &[String]) -> f64 {
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
pub fn lakesink_files(rows: &[String], partitions: i32) -> Vec<Vec<usize>> {
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
pub fn files_ceiling(
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
pub fn ndjson(events: &[String]) -> Vec<u8> {
    events
        .iter()
        .flat_map(|r| [r.as_bytes(), b"\n"])
        .flatten()
        .copied()
        .collect()
}

/// Resident set of this process, in bytes.
pub fn rss() -> usize {
    lakesink::memory::resident().expect("/proc/self/status").now as usize
}

/// `lakesink-bench parquet-memory`: what open Parquet files really hold against what they
/// are charged to the memory budget (`Encoder::overhead` + `Encoder::buffered`).
pub fn parquet_memory(files: u64, rows: u64, one_pass: bool) {
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
            match pq.json.as_ref().filter(|_| one_pass) {
                Some(direct) => {
                    let open = e.parsed_rows().expect("rows");
                    direct
                        .parse(&buf, &[], open)
                        .expect("the direct path takes it");
                    e.commit_parsed(buf.len()).expect("commit");
                }
                None => e.append(buf.as_bytes()).expect("append"),
            }
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
        "{files} open Parquet files × {rows} rows ({}): RSS +{} KiB ({} KiB/file), charged {} KiB/file",
        if one_pass { "one pass" } else { "two passes" },
        after.saturating_sub(before) / 1024,
        per(after.saturating_sub(before)),
        per(charged)
    );
}

/// `lakesink-bench shapes`: each encoder on the same events in one file and in the files
/// Lakesink writes, passes interleaved, medians printed.
pub fn shapes(records: u64, partitions: i32, repeat: usize) {
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
