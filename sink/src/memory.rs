//! The memory budget (`pipeline.max_buffered_bytes`): bytes held by open files and by uploads in
//! flight, across all tables and partitions. Writers charge it when they hold bytes and uploads
//! credit it when the store has them; over budget, writers cut their largest segments early and
//! the consumer pauses fetching until uploads free memory.

use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Debug)]
pub struct Budget {
    max: i64,
    used: AtomicI64,
}

impl Budget {
    pub fn new(max: u64) -> Budget {
        Budget {
            max: i64::try_from(max).unwrap_or(i64::MAX),
            used: AtomicI64::new(0),
        }
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

    /// Whether usage has fallen back to a level where fetching may resume.
    pub fn below_resume_mark(&self) -> bool {
        self.used() <= self.max / 10 * 8
    }
}
