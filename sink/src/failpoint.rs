//! Test hook for crash tests: `LAKESINK_FAILPOINT` lists `name:P` pairs (comma-separated),
//! and at the failpoint `name` the process kills itself (SIGKILL, no cleanup) with probability
//! `P`. The points:
//!
//! - in a segment's life (`writer::segment`): `crash-after-claim` (the claim is written, no
//!   object of the segment is completed yet), `crash-mid-multipart` (a file's multipart upload
//!   has parts, and is not completed), `crash-before-commit` (every file is uploaded and
//!   registered, the ledger has not heard: objects in the store whose offsets are not
//!   committed);
//! - in a seal's (`seal`): `seal-after-record` (the seal record is written, the catalog has not
//!   heard), `seal-after-catalog` (the catalog has, the directory has neither `_SUCCESS` nor the
//!   manifest copy), `seal-before-copy` (`_SUCCESS` is written, the copy is not);
//! - in a compaction's (`compact`): `compact-after-record` (its files and record are written,
//!   the catalog still points at the old files), `compact-after-relocate` (the catalog points
//!   at the new files, the seal still lists the old ones), `compact-mid-delete` (one replaced
//!   file deleted, the others not).

/// Kills the process at failpoint `name` if `LAKESINK_FAILPOINT` says so; `what` is logged.
pub(crate) fn hit(name: &str, what: &str) {
    static POINTS: std::sync::OnceLock<Vec<(String, f64)>> = std::sync::OnceLock::new();
    let points = POINTS.get_or_init(|| {
        std::env::var("LAKESINK_FAILPOINT")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| {
                let (n, p) = p.trim().split_once(':')?;
                Some((n.to_string(), p.parse().ok()?))
            })
            .collect()
    });
    let Some(&(_, p)) = points.iter().find(|(n, _)| n == name) else {
        return;
    };
    if rand::random::<f64>() < p {
        tracing::error!(what, "failpoint {name}: killing the process");
        // SAFETY: raise only sends a signal to this process.
        unsafe {
            libc::raise(libc::SIGKILL);
        }
    }
}
