//! The benchmark's broker: librdkafka's in-process mock cluster in a process of its own, so that
//! its CPU is not counted against the sink. It preloads the generated events, checks that the
//! watermarks hold every record, prints its address and waits until its standard input closes.
//!
//! The mock keeps only the newest ~5 MiB of each partition. With `--partitions 0` the partition
//! count is sized to the data (~4 MiB per partition); with a count, the mock's retention is
//! raised to keep everything (`src/mock_retention.c`), so a few partitions can hold GBs each.

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::Parser;
use lakesink::demo::generator::{event, GenConfig};
use lakesink::mock::EmbeddedBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    records: u64,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Partitions; 0 sizes them to the data (about 4 MiB each).
    #[arg(long, default_value_t = 0)]
    partitions: i32,
}

extern "C" {
    /// `src/mock_retention.c`: sets the retention limits of every partition of `topic` in the
    /// mock cluster owned by `rk`; returns the partition count, or -1.
    fn lakesink_bench_mock_retention(
        rk: *mut rdkafka_sys::RDKafka,
        topic: *const std::ffi::c_char,
        max_bytes: usize,
        max_batches: usize,
    ) -> i32;
}

fn main() {
    let args = Args::parse();
    let cfg = GenConfig::default();
    let mut buf = String::new();
    // Size the partitions from a sample of the data.
    let sample: u64 = (0..1000.min(args.records))
        .map(|i| {
            event(&cfg, i, args.records, &mut buf);
            buf.len() as u64
        })
        .sum();
    let est_bytes = sample * args.records / 1000.min(args.records).max(1);
    let partitions = if args.partitions > 0 {
        args.partitions
    } else {
        ((est_bytes / (4 << 20)) as i32 + 1).max(2)
    };

    let broker = EmbeddedBroker::start(1).expect("start the mock cluster");
    broker
        .create_topic(&args.topic, partitions)
        .expect("create the topic");
    if args.partitions > 0 {
        let topic = std::ffi::CString::new(args.topic.as_str()).unwrap();
        // SAFETY: the handle lives as long as `broker`; the shim takes the mock cluster's lock
        // and only changes the topic's partitions' two retention limits.
        let n = unsafe {
            lakesink_bench_mock_retention(
                broker.native_client(),
                topic.as_ptr(),
                usize::MAX,
                usize::MAX,
            )
        };
        assert_eq!(n, partitions, "raise the mock's retention");
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .expect("producer");
    let mut bytes = 0u64;
    // Event `seq` goes to partition `seq % partitions`, in seq order within each partition.
    // Produced one partition after another, so each batch holds ~1 MB of one partition's
    // records, as a producer with some linger would send them. (Round robin gave batches of a
    // few records; the mock answers a fetch with one batch per partition and finds it by a
    // linear scan, so at 853 partitions its one thread served only ~85 MB/s and was the
    // bottleneck of every run.)
    let seqs = (0..partitions as u64).flat_map(|p| (p..args.records).step_by(partitions as usize));
    for seq in seqs {
        event(&cfg, seq, args.records, &mut buf);
        bytes += buf.len() as u64;
        let p = (seq % partitions as u64) as i32;
        while let Err((e, _)) = producer.send(
            BaseRecord::<(), str>::to(&args.topic)
                .partition(p)
                .payload(buf.as_str()),
        ) {
            if !matches!(
                e,
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull
                )
            ) {
                panic!("produce: {e}");
            }
            producer.poll(Duration::from_millis(5));
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");

    // Every record must still be there (the mock silently drops old data when over its limit).
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap_servers())
        .create()
        .unwrap();
    let mut held = 0;
    for p in 0..partitions {
        let (lo, hi) = c
            .fetch_watermarks(&args.topic, p, Duration::from_secs(10))
            .expect("watermarks");
        assert_eq!(
            lo, 0,
            "partition {p} lost its oldest data: use more partitions"
        );
        held += hi;
    }
    assert_eq!(held as u64, args.records, "the broker holds every record");

    let mut out = std::io::stdout();
    writeln!(out, "BOOTSTRAP {}", broker.bootstrap_servers()).unwrap();
    writeln!(out, "PARTITIONS {partitions}").unwrap();
    writeln!(out, "BYTES {bytes}").unwrap();
    out.flush().unwrap();
    // Serve until the benchmark closes our stdin.
    for _ in std::io::stdin().lock().lines() {}
}
