//! Measuring processes and threads: wall time, CPU time, peak RSS, medians of passes.

use std::process::Command;
use std::time::Instant;

/// What `wait4` says about a finished process.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: f64,
    pub cpu: f64,
    pub peak_rss_mb: f64,
    /// CPU seconds the broker process spent meanwhile (serving the fetches), if it ran.
    pub broker_cpu: Option<f64>,
}

/// CPU seconds (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> Option<f64> {
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
pub fn process_cpu_self() -> f64 {
    process_cpu(std::process::id()).unwrap_or(0.0)
}

/// Runs `cmd` to its end and measures it, and the broker process `broker` meanwhile.
pub fn measure(mut cmd: Command, what: &str, broker: Option<u32>) -> Measured {
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
pub fn median<T>(mut runs: Vec<T>, cpu: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
    runs.swap_remove(runs.len() / 2)
}

/// Runs an in-process ceiling `n` times and returns the result with the median CPU time.
pub fn median_of<T>(n: usize, mut f: impl FnMut() -> (f64, T)) -> (f64, T) {
    median((0..n.max(1)).map(|_| f()).collect(), |r| r.0)
}

/// Thread CPU time, for measuring work done on this thread only.
pub fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the out-parameter.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
