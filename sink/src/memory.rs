//! The memory budget (`pipeline.max_buffered_bytes`): bytes held by open files, by uploads in
//! flight and by the consumer's batches on their way to the workers, across all tables and
//! partitions; librdkafka's prefetch is reserved from it up front (see
//! [`crate::config::KafkaPlan::prefetch`]). Writers charge it when they hold bytes and
//! uploads credit it when the store has them; over budget, writers cut their largest segments
//! early and the consumer pauses fetching until uploads free memory.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a worker's report that only replays of claimed segments hold its memory lasts.
const REPLAYS_HELD_FOR: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Budget {
    max: i64,
    used: AtomicI64,
    /// Fetching is paused because the budget was exceeded (until the resume mark).
    fetch_paused: AtomicBool,
    born: Instant,
    /// Until when (ms after `born`) a worker reported that its memory is held only by replays
    /// of claimed segments, which cannot be cut early.
    replays_held_until: AtomicU64,
}

impl Budget {
    pub fn new(max: u64) -> Budget {
        Budget {
            max: i64::try_from(max).unwrap_or(i64::MAX),
            used: AtomicI64::new(0),
            fetch_paused: AtomicBool::new(false),
            born: Instant::now(),
            replays_held_until: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// A worker needs relief but its memory is held by replays of claimed segments, which are
    /// cut only at their claimed ends (see [`crate::claim`]): they need more records, not a
    /// pause. Lasts [`REPLAYS_HELD_FOR`] unless reported again.
    pub fn report_only_replays_held(&self) {
        let until = self.now_ms() + REPLAYS_HELD_FOR.as_millis() as u64;
        self.replays_held_until.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether fetching must go on over the budget so that replays reach their claimed ends.
    /// The overshoot is bounded: a claimed segment is one the first writer held within the
    /// same budget settings, and its large files stream out as parts.
    pub fn only_replays_held(&self) -> bool {
        self.now_ms() < self.replays_held_until.load(Ordering::Relaxed)
    }

    pub fn charge(&self, n: usize) {
        self.used.fetch_add(n as i64, Ordering::Relaxed);
    }

    pub fn release(&self, n: usize) {
        self.used.fetch_sub(n as i64, Ordering::Relaxed);
    }

    pub fn used(&self) -> i64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> i64 {
        self.max
    }

    /// Whether the budget is exceeded.
    pub fn over(&self) -> bool {
        self.used() > self.max
    }

    /// Fetching resumes once memory held falls to 80 % of the budget.
    fn resume_mark(&self) -> i64 {
        self.max / 10 * 8
    }

    /// Workers start cutting at 90 % of the budget, while fetching goes on: cutting (encoding
    /// and compressing what the cut files hold) then overlaps with fetching. Cutting only once
    /// fetching had paused at the maximum made the two take turns: in the Parquet benchmark,
    /// whose files do most of their work when cut, a second of fetching with the workers
    /// nearly idle alternated with a second of cutting with fetching paused (1.2 of 2 cores
    /// busy).
    fn relief_mark(&self) -> i64 {
        self.max / 10 * 9
    }

    /// Whether a worker whose open files hold `mine` bytes should cut them for relief: when
    /// open files hold more than a quarter of the budget, counted as this worker's share of
    /// that quarter (`workers` threads share the budget). Below it, memory is mostly in
    /// uploads in flight, and cutting would only make smaller files. (A whole quarter per
    /// worker, as it was, let no worker cut once 4 or more shared the load evenly: fetching
    /// stayed paused until `max_age`.)
    pub fn worth_cutting(&self, mine: usize, workers: usize) -> bool {
        mine as i64 > self.max / 4 / workers.max(1) as i64
    }

    /// Whether usage has fallen back to a level where fetching may resume.
    pub fn below_resume_mark(&self) -> bool {
        self.used() <= self.resume_mark()
    }

    /// Bytes held above the resume mark (0 below it).
    pub fn above_resume_mark(&self) -> u64 {
        (self.used() - self.resume_mark()).max(0) as u64
    }

    /// The consumer says whether it paused fetching for memory.
    pub fn set_fetch_paused(&self, paused: bool) {
        self.fetch_paused.store(paused, Ordering::Relaxed);
    }

    /// Whether workers should free memory by cutting open files: usage is above the relief mark
    /// (90 %, so also when the budget is exceeded), or fetching is paused for memory and usage
    /// is not yet down to the resume mark. (Without the second case, usage settling between the
    /// resume mark and the relief mark would leave fetching paused and nobody cutting until
    /// `max_age`.)
    pub fn needs_relief(&self) -> bool {
        self.used() > self.relief_mark()
            || (self.fetch_paused.load(Ordering::Relaxed) && !self.below_resume_mark())
    }
}

/// Bytes held outside the open files and uploads, charged to the budget while this lives: a
/// consumer batch's buffers, from the record that opened it until the worker has written it.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Budget>,
    n: usize,
}

impl Charge {
    pub fn new(budget: Arc<Budget>) -> Charge {
        Charge { budget, n: 0 }
    }

    /// Charges `n` bytes in all (the difference from what was charged before).
    pub fn set(&mut self, n: usize) {
        if n > self.n {
            self.budget.charge(n - self.n);
        } else {
            self.budget.release(self.n - n);
        }
        self.n = n;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.n);
    }
}

/// Tunes glibc's malloc for a daemon whose memory is a budget; called first, before any
/// thread starts. Returns what it set.
///
/// Arenas: one per core (at least two), not glibc's eight per core. Every thread that
/// allocates is given an arena, up to the maximum, and each arena keeps what its threads freed:
/// the tokio threads that write to a local store alone are dozens. With [`give_back`] and
/// [`BLOCKING_THREADS`], the daemon's own peak resident set in `e2e_memory` (48 MiB budget,
/// ~40,000 small files cut early) went from 133–146 MiB to 97–104 MiB (docs/DESIGN.md,
/// "Memory").
///
/// `LAKESINK_MALLOC_TUNING` lists the settings to apply (`arena_max,malloc_trim`, the default;
/// `off` for none). `MALLOC_ARENA_MAX` or `glibc.malloc.arena_max` in `GLIBC_TUNABLES`, when
/// given, is left to glibc. Nothing is set where the allocator is not glibc's.
pub fn tune_allocator() -> Vec<&'static str> {
    let mut set = Vec::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let given = std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = i32::try_from(cores).unwrap_or(i32::MAX).max(2);
        // SAFETY: mallopt only sets malloc's parameters; called before other threads run.
        if tuning_wanted("arena_max")
            && !given
            && unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) } == 1
        {
            set.push("arena_max");
        }
    }
    if tuning_wanted("malloc_trim") && cfg!(all(target_os = "linux", target_env = "gnu")) {
        set.push("malloc_trim");
    }
    set
}

/// Whether `LAKESINK_MALLOC_TUNING` (a list of settings; `off` for none; unset for all)
/// asks for this one.
fn tuning_wanted(name: &str) -> bool {
    std::env::var("LAKESINK_MALLOC_TUNING")
        .ok()
        .is_none_or(|o| o.split(',').any(|w| w.trim() == name))
}

/// The most threads the runtime keeps for blocking work (tokio's default is 512). A local
/// store writes each object on such a thread, and so do a few of the daemon's own calls (the
/// consumer loop holds one for the whole run). With tokio's default, `e2e_memory`'s 48 MiB run
/// (~40,000 small files cut early) had 525 threads at its peak, their stacks 14 MiB resident,
/// and each thread its own allocator caches; with 32, 45 threads and 1 MiB of stacks. More
/// threads add nothing to writing on two to a few cores: the blocking work queues instead.
pub const BLOCKING_THREADS: usize = 32;

/// How far the resident set may run above `pipeline.max_buffered_bytes` before the allocator
/// is asked to give back what it keeps free: the code, the threads and what is outside the
/// budget take ~30–40 MiB of it.
const GIVE_BACK_ABOVE: u64 = 48 << 20;
/// How often the resident set is looked at.
const GIVE_BACK_EVERY: Duration = Duration::from_millis(250);

/// Runs until aborted: every [`GIVE_BACK_EVERY`], when the resident set is more than
/// [`GIVE_BACK_ABOVE`] above `max_buffered` (the whole budget, the prefetch with it), asks
/// glibc to return its free pages to the system (`malloc_trim`; the setting `malloc_trim`).
///
/// glibc keeps freed memory inside its heaps, returning only the top of a heap as it goes. In
/// a daemon that opens and cuts tens of thousands of small files, that kept the resident set
/// ~95 MiB above a 48 MiB budget. Trimming whenever the resident set stood 48 MiB above what
/// the budget held cost Parquet runs of the benchmark ~25 % more CPU (a row group's column
/// writers, outside the budget, faulted their pages in again each time), so it trims only
/// when the process is that far above its whole budget.
pub async fn give_back(max_buffered: u64) {
    if !tuning_wanted("malloc_trim") || resident().is_none() {
        return;
    }
    let mut tick = tokio::time::interval(GIVE_BACK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(r) = resident() else { return };
        if r.now > max_buffered.saturating_add(GIVE_BACK_ABOVE) {
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            // SAFETY: malloc_trim only returns free memory to the system.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// The process's resident set now and at its peak, in bytes, as the kernel counts them
/// (`VmRSS` and `VmHWM` of `/proc/self/status`); `None` where there is no such file.
///
/// The peak is this program's own: a parent's `wait4` reports `ru_maxrss`, which also holds
/// the resident set of whatever process forked it before it exec'd (a test harness of 130 MiB
/// had hidden the daemon's own peak under a 48 MiB budget behind its own).
pub fn resident() -> Option<Resident> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Resident::parse(&status)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resident {
    pub now: u64,
    pub peak: u64,
}

impl Resident {
    /// From the text of a `/proc/<pid>/status` file.
    pub fn parse(status: &str) -> Option<Resident> {
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|k| k * 1024)
        };
        Some(Resident {
            now: kib("VmRSS:")?,
            peak: kib("VmHWM:")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_set_is_read_from_the_kernels_status_file() {
        let status = "Name:\tlakesink\nVmPeak:\t  900000 kB\nVmHWM:\t  133532 kB\nVmRSS:\t   83020 kB\nThreads:\t18\n";
        assert_eq!(
            Resident::parse(status),
            Some(Resident {
                now: 83020 * 1024,
                peak: 133532 * 1024
            })
        );
        assert_eq!(Resident::parse("Name:\tx\n"), None);
        #[cfg(target_os = "linux")]
        {
            let r = resident().expect("/proc/self/status");
            assert!(r.now > 0 && r.peak >= r.now, "{r:?}");
        }
    }

    #[test]
    fn a_charge_follows_its_size_and_is_released_when_dropped() {
        let b = Arc::new(Budget::new(1000));
        let mut c = Charge::new(b.clone());
        c.set(300);
        assert_eq!(b.used(), 300);
        c.set(700);
        assert_eq!(b.used(), 700);
        c.set(100);
        assert_eq!(b.used(), 100);
        drop(c);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn relief_is_needed_above_the_relief_mark_and_while_paused_above_the_resume_mark() {
        let b = Budget::new(1000);
        b.charge(900);
        assert!(!b.needs_relief(), "at the relief mark, fetching not paused");
        b.charge(50);
        assert!(!b.over());
        assert!(
            b.needs_relief(),
            "above the relief mark: cutting starts while fetching goes on"
        );
        b.charge(150);
        assert!(b.needs_relief(), "over the budget");
        b.set_fetch_paused(true);
        b.release(250);
        assert!(
            b.needs_relief(),
            "paused and above the resume mark: cutting must go on or nothing resumes fetching"
        );
        b.release(150);
        assert!(b.below_resume_mark());
        assert!(!b.needs_relief());
    }

    #[test]
    fn with_many_workers_each_one_cuts_its_share() {
        let b = Budget::new(1000);
        // Eight workers evenly holding a full budget: each must cut, or nobody would.
        assert!(b.worth_cutting(125, 8));
        assert!(b.worth_cutting(300, 1));
        // Open files holding less than a quarter of the budget (the rest is in uploads).
        assert!(!b.worth_cutting(200, 1));
        assert!(!b.worth_cutting(25, 8));
    }

    #[test]
    fn a_report_that_only_replays_hold_memory_lasts_a_moment() {
        let b = Budget::new(1000);
        assert!(!b.only_replays_held());
        b.report_only_replays_held();
        assert!(b.only_replays_held());
        std::thread::sleep(REPLAYS_HELD_FOR + Duration::from_millis(50));
        assert!(!b.only_replays_held(), "it expires unless reported again");
    }
}
