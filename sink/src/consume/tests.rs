//! Tests of the consumer's batching.
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::partitions::{PartState, Shared, HOLD_BACK};
use crate::batch::Batch;
use crate::commit::Tp;
use crate::worker::WorkerMsg;
use std::sync::mpsc::sync_channel;

fn part(tp: Tp, worker: usize, bytes: usize) -> PartState {
    PartState {
        batch: Some(Batch {
            tp: tp.clone(),
            epoch: 1,
            data: vec![b'x'; bytes],
            recs: Vec::new(),
            claims: None,
            charge: None,
        }),
        tp,
        epoch: 1,
        worker,
        held_back: 0,
        capacity: 0,
        position: Some(1),
    }
}

fn sent(msg: WorkerMsg) -> usize {
    match msg {
        WorkerMsg::Batch(b) => b.data.len(),
        _ => panic!("expected a batch"),
    }
}

#[test]
fn a_busy_worker_has_its_batches_held_back_and_the_others_still_get_theirs() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ctx = crate::writer::tests::ctx_with(
        &rt,
        Arc::new(object_store::memory::InMemory::new()),
        "[[tables]]\nname = \"t\"\ntopics = [\"t\"]\n",
    );
    let (busy_tx, busy_rx) = sync_channel(1);
    let (idle_tx, idle_rx) = sync_channel(1);
    let shared = Shared::new(vec![busy_tx, idle_tx], &ctx, Duration::from_secs(1));
    shared.workers[0]
        .send(WorkerMsg::Forget { tps: Vec::new() })
        .unwrap(); // worker 0's queue is full

    let mut a = part(Tp::new("t", 0), 0, 1000);
    let mut b = part(Tp::new("t", 1), 1, 2000);
    assert!(shared.offer(&mut a).is_none());
    assert!(shared.offer(&mut b).is_none());
    assert_eq!(sent(idle_rx.try_recv().unwrap()), 2000);
    // Held back whole, counted, and still the partition's to fill.
    assert_eq!(a.batch.as_ref().map(|b| b.data.len()), Some(1000));
    assert_eq!(a.held_back, 1000);
    assert_eq!(shared.held_back.load(Ordering::Relaxed), 1000);
    a.batch
        .as_mut()
        .unwrap()
        .data
        .extend_from_slice(&[b'y'; 500]);

    // Once the worker takes from its queue, the next offer sends all of it.
    busy_rx.try_recv().unwrap();
    assert!(shared.offer(&mut a).is_none());
    assert_eq!(sent(busy_rx.try_recv().unwrap()), 1500);
    assert!(a.batch.is_none());
    assert_eq!(shared.held_back.load(Ordering::Relaxed), 0);

    // Beyond HOLD_BACK a batch is handed back to be sent by waiting, not kept.
    shared.workers[0]
        .send(WorkerMsg::Forget { tps: Vec::new() })
        .unwrap();
    let mut big = part(Tp::new("t", 2), 0, HOLD_BACK + 1);
    let (w, batch) = shared.offer(&mut big).expect("too much to hold back");
    assert_eq!((w, batch.data.len()), (0, HOLD_BACK + 1));
    assert_eq!(shared.held_back.load(Ordering::Relaxed), 0);
}

#[test]
fn open_batches_stay_within_a_sixteenth_of_the_budget() {
    use super::partitions::{batch_bytes, BATCH_BYTES};
    // Few partitions: full batches.
    assert_eq!(batch_bytes(896 << 20, 24), BATCH_BYTES);
    // Many: smaller ones, all of them together a sixteenth of the budget.
    let b = batch_bytes(896 << 20, 853);
    assert!(b < BATCH_BYTES && b * 853 <= (896 << 20) / 16, "{b}");
    // Never below 16 KiB, whatever the count.
    assert_eq!(batch_bytes(48 << 20, 100_000), 16 << 10);
    assert_eq!(batch_bytes(0, 0), 16 << 10);
}
