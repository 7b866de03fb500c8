//! What a Parquet row group costs while it is written, measured by the allocator itself (this
//! test binary counts every allocation). The budget counts an open file's Arrow rows, pending
//! input and output; the column writers, their pages and dictionaries exist only while a row
//! group is written, beside all that, and are not counted. Written one column at a time they
//! stay a small fraction of what is counted: on CloudTrail-shaped rows 0.20–0.27× (parquet's
//! `ArrowWriter`, every column at once, allocated 0.54–0.76×: 28.9 MB beyond a 38 MB row
//! group).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use lakesink::encode::parquet::ParquetEncoder;
use lakesink::encode::Encoder;
use lakesink::generator::{event, GenConfig};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, layout, new);
        if !q.is_null() {
            if new >= layout.size() {
                let now =
                    LIVE.fetch_add(new - layout.size(), Ordering::Relaxed) + new - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The counters are the process's: tests that read them run one at a time (under `cargo test`,
/// which runs a binary's tests on threads; nextest gives each its own process).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn demo_parquet_plan() -> std::sync::Arc<lakesink::encode::parquet::ParquetPlan> {
    let dir = tempfile::tempdir().unwrap();
    // The demo's Parquet table: CloudTrail's 45 columns, zstd, a bloom filter on eventID.
    let plan = lakesink::Plan::from_toml(
        &lakesink::demo::demo_config(dir.path(), "127.0.0.1:1"),
        "demo",
    )
    .unwrap();
    plan.tables
        .iter()
        .find_map(|t| t.parquet.clone())
        .expect("a Parquet table")
}

/// Appends `rows` events, settling as the writer does; returns the JSON bytes appended.
fn fill(enc: &mut ParquetEncoder, rows: u64, buf: &mut String) -> usize {
    let cfg = GenConfig::default();
    let mut rejected = Vec::new();
    let mut input = 0;
    for seq in 0..rows {
        event(&cfg, seq, rows, buf);
        input += buf.len();
        enc.append(buf.as_bytes()).unwrap();
        if seq % 4096 == 4095 {
            enc.settle(&mut rejected).unwrap();
        }
    }
    enc.settle(&mut rejected).unwrap();
    assert!(rejected.is_empty());
    input
}

#[test]
fn writing_a_row_group_allocates_a_third_at_most_of_what_its_file_is_charged() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pq = demo_parquet_plan();
    let mut buf = String::new();
    let mut worst = 0.0f64;
    for rows in [2_000u64, 20_000, 60_000] {
        let mut enc = ParquetEncoder::new(pq.clone());
        let input = fill(&mut enc, rows, &mut buf);
        // What the budget counts of the open file now: its Arrow rows, pending input, state.
        let charged = enc.overhead() + enc.buffered();
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let out = Box::new(enc).finish().unwrap();
        let transient = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        eprintln!(
            "{rows} rows ({input} B of JSON): charged {charged} B, the flush allocated {transient} B beyond, file {} B",
            out.len()
        );
        worst = worst.max(transient as f64 / charged as f64);
        assert!(
            transient * 3 <= charged,
            "{rows} rows: the flush allocated {transient} B beyond what was charged ({charged} B), more than a third of it"
        );
    }
    eprintln!("worst: the flush allocated {worst:.2}× the charged bytes");
}

/// What an open file holds is what the budget is charged for it: its Arrow rows, its pending
/// input, the row groups written and not yet uploaded, and the output's spare capacity (left
/// out, it had put a file's charge 12 % under its heap once a row group was written).
#[test]
fn an_open_parquet_file_is_charged_what_it_holds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let pq = demo_parquet_plan();
    let mut buf = String::with_capacity(16 * 1024);
    // The worker thread's decoders and zstd contexts, made once and kept: not the file's.
    let mut warm = ParquetEncoder::new(pq.clone());
    fill(&mut warm, 5_000, &mut buf);
    Box::new(warm).finish().unwrap();
    for rows in [3_000u64, 30_000, 60_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let mut enc = ParquetEncoder::new(pq.clone());
        fill(&mut enc, rows, &mut buf);
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        let charged = enc.overhead() + enc.buffered();
        eprintln!("{rows} rows: the file holds {held} B of heap, is charged {charged} B");
        assert!(
            held <= charged + charged / 20,
            "{rows} rows: the open file holds {held} B, more than the {charged} B it is charged"
        );
    }
}
