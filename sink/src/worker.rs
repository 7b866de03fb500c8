//! Worker threads: each owns the writers of some Kafka partitions and does their CPU work
//! (validation, routing, compression), so files of different partitions are encoded in parallel
//! while the consumer thread keeps fetching.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::batch::Batch;
use crate::commit::Tp;
use crate::rotate::CutReason;
use crate::writer::{PartitionWriter, WriterCtx};

pub enum WorkerMsg {
    Assign {
        tp: Tp,
        epoch: u64,
        /// The offset the consumer sought to for a [`crate::writer::Reread`] from a claimed
        /// segment's start.
        sought: Option<i64>,
    },
    Batch(Batch),
    /// Cut the open segments of these partitions (or of all with `None`) and complete in the
    /// store what the gates allow; reply once those uploads finished or the deadline passed.
    Flush {
        tps: Option<Vec<Tp>>,
        reason: CutReason,
        deadline: Instant,
        reply: Sender<Flushed>,
    },
    /// Drop these partitions' writers: whatever they still hold is abandoned, not committed.
    Forget {
        tps: Vec<Tp>,
    },
}

/// What a [`WorkerMsg::Flush`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Every cut segment finished uploading (and no fatal error).
    pub uploaded: bool,
    /// Some partition still has a sealed segment waiting for the commit of the one before.
    pub open: bool,
}

/// How often a worker looks at `max_age` deadlines and the memory budget while idle.
const TICK: Duration = Duration::from_millis(100);

pub(crate) fn run(ctx: Arc<WriterCtx>, rx: Receiver<WorkerMsg>) {
    let mut writers: HashMap<Tp, PartitionWriter> = HashMap::new();
    let mut last_tick = Instant::now();
    let mut last_relief = last_tick.checked_sub(TICK).unwrap_or(last_tick);
    loop {
        match rx.recv_timeout(TICK) {
            Ok(WorkerMsg::Assign { tp, epoch, sought }) => {
                match PartitionWriter::new(&ctx, tp.clone(), epoch, sought) {
                    Ok(w) => {
                        writers.insert(tp, w);
                    }
                    Err(e) => ctx.fatal.set(e),
                }
            }
            Ok(WorkerMsg::Batch(mut b)) => {
                if ctx.fatal.is_set() {
                    continue;
                }
                let Some(w) = writers.get_mut(&b.tp).filter(|w| w.epoch() == b.epoch) else {
                    continue; // revoked meanwhile: the next owner re-reads these records
                };
                if let Some(p) = b.claims.take() {
                    w.prefetched(p);
                }
                let now = Instant::now();
                let now_micros = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_micros() as i64);
                let recs = b.records();
                if let Err(e) = w.push_batch(&ctx, &recs, now, now_micros) {
                    ctx.fatal.set(e);
                }
            }
            Ok(WorkerMsg::Flush {
                tps,
                reason,
                deadline,
                reply,
            }) => {
                let mut done = Flushed {
                    uploaded: true,
                    open: false,
                };
                let wanted = |tp: &Tp| tps.as_ref().is_none_or(|t| t.contains(tp));
                // Cut them all before waiting for any: the cuts' encoding runs while the store
                // takes the first ones (one at a time, the worker sat idle through each upload).
                if !ctx.fatal.is_set() {
                    for (_, w) in writers.iter_mut().filter(|(tp, _)| wanted(tp)) {
                        if let Err(e) = w.cut(&ctx, reason) {
                            ctx.fatal.set(e);
                            break;
                        }
                        w.launch(&ctx);
                    }
                }
                for (_, w) in writers.iter_mut().filter(|(tp, _)| wanted(tp)) {
                    done.uploaded &= w.wait(&ctx.rt, deadline);
                    done.open |= w.queued();
                }
                done.uploaded &= !ctx.fatal.is_set();
                let _ = reply.send(done);
            }
            Ok(WorkerMsg::Forget { tps }) => {
                for tp in &tps {
                    writers.remove(tp);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }

        let now = Instant::now();
        if now.duration_since(last_tick) >= TICK && !ctx.fatal.is_set() {
            last_tick = now;
            for w in writers.values_mut() {
                w.reap();
                w.launch(&ctx);
                if w.deadline_expired(now) {
                    if let Err(e) = w.cut(&ctx, CutReason::Age) {
                        ctx.fatal.set(e);
                    }
                }
            }
        }
        // Over budget (or paused for memory above the resume mark) with much of it in this
        // worker's open files: cut its largest open segments, enough to set free this worker's
        // share (by what it holds) of the bytes above the resume mark. One cut per wake-up was
        // far too slow: once fetching paused, no batch woke the worker, and in the benchmark
        // 1 GiB held by 853 partitions took ~10 s of 100 ms ticks to fall to the resume mark,
        // the pipeline idle meanwhile. A round at most every TICK: the cut bytes are freed as
        // the store takes them, and rounds must not pile up cuts while uploads are in flight.
        if ctx.budget.needs_relief()
            && !ctx.fatal.is_set()
            && now.duration_since(last_relief) >= TICK
        {
            let mine = held(&writers);
            if ctx.budget.worth_cutting(mine, ctx.workers) {
                last_relief = now;
                let used = ctx.budget.used().max(1) as u128;
                let mut to_free =
                    (ctx.budget.above_resume_mark() as u128 * mine as u128 / used) as usize;
                loop {
                    // (A writer with sealed segments waiting would only queue another one.)
                    let Some(w) = writers
                        .values_mut()
                        .filter(|w| w.held() > 0 && !w.queued() && !w.following())
                        .max_by_key(|w| w.held())
                    else {
                        if writers.values().any(|w| w.following() && w.held() > 0) {
                            // Replays of claimed segments cannot be cut early: pausing would
                            // leave them waiting forever for the records that end them.
                            ctx.budget.report_only_replays_held();
                        }
                        break;
                    };
                    let freed = w.held();
                    tracing::debug!(tp = %w.tp(), held = freed, used = ctx.budget.used(), "memory budget exceeded: cutting early");
                    if let Err(e) = w.cut(&ctx, CutReason::Memory) {
                        ctx.fatal.set(e);
                        break;
                    }
                    to_free = to_free.saturating_sub(freed);
                    if to_free == 0 {
                        break;
                    }
                }
            }
        }
    }
    // Writers dropped here abandon their open files (multipart uploads abort).
}

fn held(writers: &HashMap<Tp, PartitionWriter>) -> usize {
    writers.values().map(PartitionWriter::held).sum()
}
