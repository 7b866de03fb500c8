//! The daemon's log: text or JSON lines on stderr ([`init`]), repeats of one error summarized
//! instead of flooding ([`Repeats`]), and the steady `info` line a running daemon writes every
//! `log.interval` ([`steady`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::LogFormat;
use crate::stats::Stats;

/// The log format: `LAKESINK_LOG_FORMAT` (`text` or `json`) over the config's `log.format`.
pub fn format(configured: Option<LogFormat>) -> LogFormat {
    match std::env::var("LAKESINK_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        Ok("text") => LogFormat::Text,
        _ => configured.unwrap_or_default(),
    }
}

/// Installs the global subscriber: `LAKESINK_LOG` filters (default `default_filter`), stderr.
/// JSON is one object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
///
/// Beside the log, whatever it filters, a layer counts object_store's retries
/// (`lakesink_store_retries_total`): its client retries inside a request and says so only in
/// its log, one `info` event per retry (target `object_store::client::retry`).
pub fn init(format: LogFormat, default_filter: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAKESINK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_current_span(false).boxed(),
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    let retries = tracing_subscriber::filter::Targets::new()
        .with_target(STORE_RETRY_TARGET, tracing::Level::INFO);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(StoreRetries.with_filter(retries))
        .init();
}

/// Where object_store's client logs each retry.
const STORE_RETRY_TARGET: &str = "object_store::client::retry";

/// Counts object_store's retry events into `lakesink_store_retries_total`.
struct StoreRetries;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StoreRetries {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() == STORE_RETRY_TARGET {
            crate::metrics::count_store_retry();
        }
    }
}

/// How often one repeated message is written at most.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(60);

/// Rate-limits repeats of the same message (digits ignored, so "after 3ms" and "after 5ms" are
/// one message; every run of digits counts as one): the first is written, the next ones within [`REPEAT_WINDOW`] are counted, and
/// the first after the window says how many were held back.
#[derive(Debug, Default)]
pub struct Repeats {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Repeats {
    /// `Some(n)`: write this one, saying that `n` repeats were held back since the last one
    /// written; `None`: hold it back.
    pub fn admit(&self, message: &str, now: Instant) -> Option<u64> {
        let mut key = String::with_capacity(message.len());
        for c in message.chars() {
            match c.is_ascii_digit() {
                true if key.ends_with('#') => {}
                true => key.push('#'),
                false => key.push(c),
            }
        }
        let mut seen = self.seen.lock().expect("repeats lock");
        if seen.len() > 1024 {
            seen.retain(|_, (at, _)| now.saturating_duration_since(*at) < REPEAT_WINDOW);
        }
        match seen.get_mut(&key) {
            Some((at, held)) if now.saturating_duration_since(*at) < REPEAT_WINDOW => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let n = std::mem::take(held);
                *at = now;
                Some(n)
            }
            None => {
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// The process's one [`Repeats`], for messages from librdkafka and the poll loop.
pub fn repeats() -> &'static Repeats {
    static REPEATS: std::sync::OnceLock<Repeats> = std::sync::OnceLock::new();
    REPEATS.get_or_init(Repeats::default)
}

/// Writes the steady line every `interval` until the task is dropped: what moved since the
/// last one, the lag, the budget, and anything paused or stalled.
pub async fn steady(stats: Arc<Stats>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    let mut last = stats.snapshot();
    let mut at = Instant::now();
    loop {
        tick.tick().await;
        let now = stats.snapshot();
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        at = Instant::now();
        let m = &stats.metrics;
        let used = m.buffered_bytes.get();
        let limit = m.buffer_limit_bytes.get().max(1);
        tracing::info!(
            records_per_s = ((now.records_in - last.records_in) as f64 / secs).round(),
            mb_in_per_s =
                ((now.bytes_in - last.bytes_in) as f64 / 1e6 / secs * 10.0).round() / 10.0,
            records_written = now.records_written - last.records_written,
            files = now.files_written - last.files_written,
            segments = now.segments_committed - last.segments_committed,
            dead_letters = now.dead_letters - last.dead_letters,
            lag = now.lag,
            partitions = now.partitions_assigned,
            budget_pct = (used as f64 * 100.0 / limit as f64).round(),
            paused = m.health.pause_reason().unwrap_or("no"),
            catalog_stalled = m.catalog_stalled.get() == 1,
            commit_failures = now.commit_failures - last.commit_failures,
            "steady"
        );
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_held_back_and_counted() {
        let r = Repeats::default();
        let t = Instant::now();
        let msg = |ms: u32| format!("Connect to 127.0.0.1:9092 failed (after {ms}ms)");
        assert_eq!(r.admit(&msg(1), t), Some(0));
        for i in 0..411 {
            assert_eq!(
                r.admit(&msg(i), t + Duration::from_millis(u64::from(i))),
                None
            );
        }
        assert_eq!(r.admit("another message", t), Some(0));
        assert_eq!(r.admit(&msg(7), t + REPEAT_WINDOW), Some(411));
        assert_eq!(r.admit(&msg(8), t + REPEAT_WINDOW), None);
    }
}
