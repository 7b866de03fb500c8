//! `lakesink-bench avro`: the benchmark's events as Confluent Avro records of the shipped
//! CloudTrail schema, into one Parquet file by each of the two paths a registry table's Avro
//! records can take: through JSON text (the datum written out as JSON, routed, then parsed again
//! by arrow-json) and straight into Arrow (the datum read once for its routed fields, then
//! decoded into the columns). One thread, no broker, passes interleaved; both files must come
//! out byte for byte the same.

use std::sync::Arc;

use lakesink::encode::{Encoder, ParquetEncoder, ParquetPlan};
use lakesink::route::json::FieldSet;
use lakesink_schema_registry::avro_arrow::AvroArrow;
use lakesink_schema_registry::wire::AvroDecoder;
use serde_json::Value;

use crate::ceilings::event_rows;
use crate::measure::{median, thread_cpu};

const CLOUDTRAIL: &str = include_str!("../../schema-registry/schemas/cloudtrail.avsc");

/// The event as the CloudTrail Avro schema holds it: instants as epoch milliseconds.
fn to_avro_shape(v: &mut Value) {
    fn millis(v: &mut Value) {
        if let Some(s) = v.as_str() {
            let t = chrono::DateTime::parse_from_rfc3339(s).expect("RFC 3339");
            *v = Value::from(t.timestamp_millis());
        }
    }
    millis(&mut v["eventTime"]);
    if let Some(a) = v
        .pointer_mut("/userIdentity/sessionContext/attributes/creationDate")
        .filter(|x| x.is_string())
    {
        millis(a);
    }
}

/// One pass of one path: CPU seconds and the file.
fn run(
    decoder: &AvroDecoder,
    plan: &Arc<ParquetPlan>,
    datums: &[Vec<u8>],
    direct: bool,
) -> (f64, Vec<u8>) {
    let mut fields = FieldSet::default();
    fields.add(&["eventTime".to_string()]).unwrap();
    let paths = fields.paths().to_vec();
    let mut enc: Box<dyn Encoder> = Box::new(ParquetEncoder::new(plan.clone()));
    let mut json = String::new();
    let mut rejected = Vec::new();
    let mut sum = 0i64;
    let t0 = thread_cpu();
    for d in datums {
        json.clear();
        if direct {
            decoder.project(d, &paths, &mut json).unwrap();
        } else {
            decoder.to_json(d, &mut json).unwrap();
        }
        let found = fields.extract(&json).unwrap();
        sum = sum.wrapping_add(found[0].unwrap().get().parse::<i64>().unwrap());
        enc.append(if direct { d } else { json.as_bytes() })
            .unwrap();
        if enc.unsettled() >= lakesink::encode::parquet::SETTLE_ROWS {
            enc.settle(&mut rejected).unwrap();
        }
    }
    enc.settle(&mut rejected).unwrap();
    let out = enc.finish().unwrap();
    let cpu = thread_cpu() - t0;
    assert!(
        rejected.is_empty(),
        "{:?}",
        rejected.first().map(|r| &r.reason)
    );
    assert!(sum != 0);
    (cpu, out)
}

pub fn avro(records: u64, repeat: usize) {
    eprintln!("generating {records} events …");
    let events = event_rows(records);
    let json_bytes: usize = events.iter().map(|e| e.len() + 1).sum();
    let decoder = AvroDecoder::new(CLOUDTRAIL).unwrap();
    let datums: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut v: Value = serde_json::from_str(e).unwrap();
            to_avro_shape(&mut v);
            let mut b = Vec::new();
            decoder.encode(&v, &mut b).unwrap();
            b
        })
        .collect();
    let avro_bytes: usize = datums.iter().map(Vec::len).sum();
    let plan = || lakesink::config::default_parquet_plan("cloudtrail.avsc").unwrap();
    let through_json = Arc::new(plan());
    let p = plan();
    let direct_path = AvroArrow::new(&decoder, p.schema.clone()).expect("covered");
    let direct = Arc::new(p.with_avro(direct_path));
    let mut runs = [Vec::new(), Vec::new()];
    for pass in 0..repeat.max(1) {
        eprintln!("pass {} …", pass + 1);
        runs[0].push(run(&decoder, &through_json, &datums, false));
        runs[1].push(run(&decoder, &direct, &datums, true));
    }
    let [a, b] = runs;
    let a = median(a, |r| r.0);
    let b = median(b, |r| r.0);
    if a.1 != b.1 {
        let dir = std::env::temp_dir();
        std::fs::write(dir.join("avro-through-json.parquet"), &a.1).unwrap();
        std::fs::write(dir.join("avro-direct.parquet"), &b.1).unwrap();
        panic!(
            "the two paths wrote different files: {} and {}",
            dir.join("avro-through-json.parquet").display(),
            dir.join("avro-direct.parquet").display()
        );
    }
    let gb = json_bytes as f64 / 1e9;
    println!(
        "{records} CloudTrail events as Confluent Avro ({:.1} MB of Avro, {:.1} MB as JSON) → one Parquet zstd file ({:.1} MB, the same bytes by both paths); median of {repeat} passes, one thread\n",
        avro_bytes as f64 / 1e6,
        json_bytes as f64 / 1e6,
        a.1.len() as f64 / 1e6
    );
    println!(
        "| path | CPU s | µs per record | CPU-s per GB of the events' JSON |\n|---|---|---|---|"
    );
    for (name, cpu) in [
        (
            "Avro → JSON text → route → arrow-json → Parquet (before)",
            a.0,
        ),
        ("Avro → route fields → Arrow → Parquet (direct)", b.0),
    ] {
        println!(
            "| {name} | {cpu:.2} | {:.2} | {:.2} |",
            cpu * 1e6 / records as f64,
            cpu / gb
        );
    }
}

/// `lakesink-bench json-direct`: the benchmark's events into one Parquet file, routed and
/// encoded the old way (the route pass, then arrow-json at the settle) and the direct way (one
/// pass into builders); one thread, passes interleaved, both files compared.
pub fn json_direct(records: u64, repeat: usize) {
    eprintln!("generating {records} events …");
    let events = event_rows(records);
    let json_bytes: usize = events.iter().map(|e| e.len() + 1).sum();
    let plan = Arc::new(lakesink::config::default_parquet_plan("cloudtrail.avsc").unwrap());
    let direct = plan.json.clone().expect("CloudTrail is covered");
    let mut fields = FieldSet::default();
    fields.add(&["eventTime".to_string()]).unwrap();
    let paths = fields.paths().to_vec();
    // Settled every this many rows (`LAKESINK_BENCH_SETTLE_EVERY`): the writer settles a file
    // at the end of each consumer batch, ~180 rows of a Kafka partition in the many shape.
    let settle_every = std::env::var("LAKESINK_BENCH_SETTLE_EVERY")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(lakesink::encode::parquet::SETTLE_ROWS);
    let run = |parsed: bool| -> (f64, Vec<u8>) {
        let mut enc: Box<dyn Encoder> = Box::new(ParquetEncoder::new(plan.clone()));
        let mut rejected = Vec::new();
        let mut n = 0usize;
        let t0 = thread_cpu();
        for e in &events {
            let found = if parsed {
                // As the writer does for a record that stays in the file of the one before:
                // parsed straight into the file's open rows.
                let f = direct
                    .parse(e, &paths, enc.parsed_rows().unwrap())
                    .expect("taken");
                enc.commit_parsed(e.len()).unwrap();
                f
            } else {
                let f = fields.extract(e).unwrap();
                enc.append(e.as_bytes()).unwrap();
                f
            };
            n += found[0].map_or(0, |r| r.get().len());
            if enc.unsettled() >= settle_every {
                enc.settle(&mut rejected).unwrap();
            }
        }
        enc.settle(&mut rejected).unwrap();
        let out = enc.finish().unwrap();
        let cpu = thread_cpu() - t0;
        assert!(rejected.is_empty() && n > 0);
        (cpu, out)
    };
    // The parts alone: the route pass, and the direct parse into a row (no file, no encoding).
    let route_only = || {
        let t0 = thread_cpu();
        let n: usize = events
            .iter()
            .map(|e| fields.extract(e).unwrap()[0].map_or(0, |r| r.get().len()))
            .sum();
        assert!(n > 0);
        (thread_cpu() - t0, Vec::new())
    };
    let parse_only = || {
        let mut rows = direct.rows();
        let t0 = thread_cpu();
        for e in &events {
            rows.truncate(0);
            direct.parse(e, &paths, &mut rows).expect("taken");
        }
        (thread_cpu() - t0, Vec::new())
    };
    // One path once, nothing printed: for counting its instructions under callgrind, where a
    // noisy VM's CPU times cannot tell a 5 % change.
    match std::env::var("LAKESINK_BENCH_ONLY").as_deref() {
        Ok("before") => return drop(run(false)),
        Ok("direct") => return drop(run(true)),
        Ok("route") => return drop(route_only()),
        Ok("parse") => return drop(parse_only()),
        Ok("none") => return,
        _ => {}
    }
    let mut runs = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for pass in 0..repeat.max(1) {
        eprintln!("pass {} …", pass + 1);
        runs[0].push(run(false));
        runs[1].push(run(true));
        runs[2].push(route_only());
        runs[3].push(parse_only());
    }
    let [a, b, c, d] = runs;
    let c = median(c, |r| r.0);
    let d = median(d, |r| r.0);
    let a = median(a, |r| r.0);
    let b = median(b, |r| r.0);
    let gb = json_bytes as f64 / 1e9;
    println!(
        "{records} CloudTrail events ({:.1} MB of JSON) → one Parquet zstd file; the files {}; median of {repeat} passes, one thread\n",
        json_bytes as f64 / 1e6,
        if a.1 == b.1 { "are byte for byte the same" } else { "differ in bytes" }
    );
    println!("| path | CPU s | µs per record | CPU-s per GB |\n|---|---|---|---|");
    for (name, cpu) in [
        ("route pass, then arrow-json at the settle (before)", a.0),
        ("one pass into the file's builders (direct)", b.0),
        ("of which: the route pass alone (before)", c.0),
        ("of which: the one pass alone (direct)", d.0),
    ] {
        println!(
            "| {name} | {cpu:.2} | {:.2} | {:.2} |",
            cpu * 1e6 / records as f64,
            cpu / gb
        );
    }
}
