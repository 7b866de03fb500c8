//! The daemon's upkeep task: every [`EVERY`], the tables' watermarks (published as
//! `lakesink_completeness_watermark_seconds` and shared with the writers for
//! `late_after_seal`), then the seals that are due ([`crate::seal`]), and every
//! [`COMPACT_EVERY`] rounds a compaction pass for tables with `auto = true`
//! ([`crate::compact`]): a full pass first, then passes over the partitions sealed since (and
//! those whose compaction waits for its grace). A failed round is logged once and tried again
//! at the next.

use std::sync::Arc;
use std::time::Duration;

use crate::claim::Claims;
use crate::compact::Compactor;
use crate::config::Plan;
use crate::seal::Sealer;
use crate::watermark::Tracker;

/// How often the watermarks are recomputed and due seals written.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// Rounds between compaction passes.
pub(crate) const COMPACT_EVERY: u32 = 6;

/// Runs until aborted.
pub(crate) async fn run(
    plan: Plan,
    claims: Arc<Claims>,
    mut sealer: Sealer,
    compactor: Option<Compactor>,
    current: Arc<crate::watermark::Current>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let mut tracker = if sealer.any() {
        Tracker::collecting(claims)
    } else {
        Tracker::new(claims)
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut round: u32 = 0;
    // Partitions sealed since the last compaction pass; `None` until a full pass succeeded.
    let mut sealed_since: Option<std::collections::BTreeSet<(String, String)>> = None;
    loop {
        tick.tick().await;
        round = round.wrapping_add(1);
        let watermarks = match crate::watermark::compute(&plan, &mut tracker).await {
            Ok(w) => w,
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "could not compute the tables' watermarks; trying again");
                }
                continue;
            }
        };
        for (table, w) in &watermarks {
            current.set(table, *w);
            let l = crate::metrics::labels([("table", &Arc::from(table.as_str()))]);
            match w {
                Some(us) => {
                    metrics
                        .completeness_watermark
                        .get_or_create(&l)
                        .set(*us as f64 / 1e6);
                }
                None => {
                    metrics.completeness_watermark.remove(&l);
                }
            }
        }
        sealer.committed(tracker.take_committed());
        let sealed = match sealer.seal_due(&watermarks).await {
            Ok(sealed) => sealed,
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "could not seal a partition; trying again");
                }
                // A failed round does not say which partitions it did seal: the next
                // compaction pass looks at them all.
                sealed_since = None;
                continue;
            }
        };
        if let Some(since) = sealed_since.as_mut() {
            since.extend(sealed.into_iter().map(|m| (m.table, m.path)));
        }
        if let Some(c) = compactor.as_ref().filter(|_| round % COMPACT_EVERY == 0) {
            let pass = match &sealed_since {
                None => c.run(&crate::compact::Options::default()).await,
                Some(since) => c.run_sealed(since).await,
            };
            if let Err(e) = pass {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "could not compact a partition; trying again");
                }
                continue;
            }
            sealed_since = Some(Default::default());
        }
        failing = false;
    }
}
