//! Tests of the partition writer: replays, claims, gates, dead letters, Parquet settling.

use super::*;
use crate::catalog::{NoCatalog, Registrar};
use crate::config::Plan;

use crate::fatal::Fatal;
use object_store::path::Path;
use std::time::Duration;

pub(super) fn ctx(rt: &tokio::runtime::Runtime) -> WriterCtx {
    ctx_on(rt, Arc::new(object_store::memory::InMemory::new()))
}

/// A writer context on `store` (two contexts on one store: two members of a group).
fn ctx_on(rt: &tokio::runtime::Runtime, store: Arc<dyn ObjectStore>) -> WriterCtx {
    ctx_with(
        rt,
        store,
        r#"
[[tables]]
name = "t"
topics = ["t"]
timestamp = { field = "ts" }
max_future_skew = "1000d"
[tables.rotate]
max_records = 3
"#,
    )
}

/// A writer context with these `[[tables]]`.
pub(crate) fn ctx_with(
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    tables: &str,
) -> WriterCtx {
    let plan = Plan::with_tables(tables);
    WriterCtx {
        tables: Arc::new(plan.tables),
        store: store.clone(),
        root: String::new(),
        location_base: "memory://".into(),
        rt: rt.handle().clone(),
        ledger: Arc::new(Mutex::new(OffsetLedger::new())),
        catalog: Arc::new(Registrar::new(
            Arc::new(NoCatalog),
            Vec::new(),
            Arc::new(Stats::default()),
        )),
        budget: Arc::new(Budget::new(1 << 30)),
        workers: 1,
        stats: Arc::new(Stats::default()),
        fatal: Arc::new(Fatal::default()),
        part_size: 5 << 20,
        dead_letter_prefix: "_errors".into(),
        dead_letter_producer: None,
        upload_slots: Arc::new(tokio::sync::Semaphore::new(8)),
        claims: Arc::new(Claims::new(store, "")),
        reread: Arc::new(Mutex::new(Vec::new())),
        watermarks: Default::default(),
    }
}

/// Keys of the data and dead-letter objects (not the claims), sorted.
pub(super) fn data_keys(ctx: &WriterCtx) -> Vec<String> {
    ctx.rt.block_on(async {
        use futures::TryStreamExt;
        let list: Vec<_> = ctx.store.list(None).try_collect().await.unwrap();
        let mut keys: Vec<String> = list
            .iter()
            .map(|m| m.location.to_string())
            .filter(|k| !k.starts_with("_lakesink/"))
            .collect();
        keys.sort();
        keys
    })
}

/// The text of a gzip object.
pub(super) fn gunzipped(ctx: &WriterCtx, key: &str) -> String {
    let bytes = ctx.rt.block_on(async {
        use object_store::ObjectStoreExt;
        let got = ctx.store.get(&Path::from(key)).await.unwrap();
        got.bytes().await.unwrap()
    });
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    text
}

/// The offsets in every data object, from the `o` field of the test records.
fn stored_offsets(ctx: &WriterCtx) -> Vec<i64> {
    let mut out = Vec::new();
    for key in data_keys(ctx) {
        for line in gunzipped(ctx, &key).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push(v["o"].as_i64().unwrap());
        }
    }
    out.sort_unstable();
    out
}

fn push_o(w: &mut PartitionWriter, ctx: &WriterCtx, offset: i64) {
    let payload = format!(r#"{{"ts":"2024-01-02T01:00:00Z","o":{offset}}}"#);
    let rec = RecordIn {
        offset,
        kafka_millis: Some(1_704_157_200_000 + offset),
        payload: Some(payload.as_bytes()),
        key: None,
        headers: None,
    };
    w.push(ctx, rec, Instant::now(), 0).unwrap();
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_replay_cuts_where_the_claims_of_uploaded_uncommitted_segments_say() {
    let rt = runtime();
    let far = Instant::now() + Duration::from_secs(60);
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let tp = Tp::new("t", 0);

    // The first owner cuts by the clock at 2, 4 and 7; [2, 4) and [4, 7) reach the store,
    // but Kafka's committed offset stays at 2 (the commit was lost with the process).
    let first = ctx_on(&rt, store.clone());
    let epoch = first.ledger.lock().unwrap().assign(&tp);
    let mut w = PartitionWriter::new(&first, tp.clone(), epoch, None).unwrap();
    for (o, cut_after) in [
        (0, false),
        (1, true),
        (2, false),
        (3, true),
        (4, false),
        (5, false),
        (6, true),
    ] {
        push_o(&mut w, &first, o);
        if cut_after {
            w.cut(&first, CutReason::Age).unwrap();
            assert!(w.wait(&first.rt, far));
            let safe = safe(&first);
            first.ledger.lock().unwrap().committed(&safe);
            w.launch(&first);
            assert!(w.wait(&first.rt, far));
        }
    }
    drop(w);
    let before = data_keys(&first);
    assert_eq!(stored_offsets(&first), (0..7).collect::<Vec<_>>());

    // The next owner replays from 2 with max_records = 3: alone it would cut at 5 and
    // store records 5 and 6 a second time under a new key. It follows the claims instead;
    // a shutdown in the middle of a claimed segment does not cut it.
    let next = ctx_on(&rt, store.clone());
    let epoch = next.ledger.lock().unwrap().assign(&tp);
    let mut w = PartitionWriter::new(&next, tp.clone(), epoch, None).unwrap();
    for o in 2..6 {
        push_o(&mut w, &next, o);
    }
    assert!(w.following());
    w.cut(&next, CutReason::Shutdown).unwrap();
    assert!(w.following(), "a claimed segment is cut only at its end");
    push_o(&mut w, &next, 6);
    assert!(
        !w.following(),
        "cut at the claim's end, without waiting for another record"
    );
    for o in 7..9 {
        push_o(&mut w, &next, o);
    }
    w.cut(&next, CutReason::Shutdown).unwrap();
    for _ in 0..3 {
        assert!(w.wait(&next.rt, far));
        let safe = safe(&next);
        next.ledger.lock().unwrap().committed(&safe);
        w.launch(&next);
    }
    assert!(w.wait(&next.rt, far));
    assert_eq!(safe(&next), vec![]);
    assert!(next.reread.lock().unwrap().is_empty());
    assert_eq!(
        stored_offsets(&next),
        (0..9).collect::<Vec<_>>(),
        "every record once"
    );
    let after = data_keys(&next);
    assert_eq!(after.len(), before.len() + 1, "{before:?} → {after:?}");
}

#[test]
fn a_writer_whose_claim_is_refused_completes_nothing_abandons_what_it_sealed_behind_and_asks_for_a_reread(
) {
    let rt = runtime();
    let far = Instant::now() + Duration::from_secs(60);
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let tp = Tp::new("t", 0);
    let a = ctx_on(&rt, store.clone());
    let b = ctx_on(&rt, store.clone());
    let epoch_a = a.ledger.lock().unwrap().assign(&tp);
    let epoch_b = b.ledger.lock().unwrap().assign(&tp);
    let mut wa = PartitionWriter::new(&a, tp.clone(), epoch_a, None).unwrap();
    let mut wb = PartitionWriter::new(&b, tp.clone(), epoch_b, None).unwrap();
    // Both own the partition at once (a zombie, or a broker that does not fence). B
    // starts first and finds no claim…
    push_o(&mut wb, &b, 0);
    // …then A cuts [0, 2) by its clock and claims it.
    push_o(&mut wa, &a, 0);
    push_o(&mut wa, &a, 1);
    wa.cut(&a, CutReason::Age).unwrap();
    assert!(wa.wait(&a.rt, far));
    assert_eq!(safe(&a), vec![(tp.clone(), 2)]);
    // B's clock cuts [0, 3): refused. Before hearing so, B cuts [3, 4), which waits behind
    // the gate for a commit of offset 3 that B will never make.
    push_o(&mut wb, &b, 1);
    push_o(&mut wb, &b, 2);
    wb.cut(&b, CutReason::Age).unwrap();
    push_o(&mut wb, &b, 3);
    wb.cut(&b, CutReason::Shutdown).unwrap();
    assert!(wb.wait(&b.rt, far));
    // None of its objects appears and nothing is committable; its partition is to be
    // re-read.
    assert_eq!(safe(&b), vec![]);
    assert_eq!(
        *b.reread.lock().unwrap(),
        vec![Reread {
            tp: tp.clone(),
            epoch: epoch_b,
            from: None
        }]
    );
    assert_eq!(stored_offsets(&a), vec![0, 1]);
    // A drain or revocation waits while segments are queued: this one never completes,
    // so the writer must not say it is waiting (a thawed zombie's drain spun to its
    // timeout on it).
    assert!(
        !wb.queued(),
        "a segment behind a refused claim counts as waiting"
    );
    wb.launch(&b);
    assert_eq!(
        b.budget.used(),
        0,
        "the refused segment's bytes, and those of the one behind it, are returned to the budget"
    );
    assert_eq!(safe(&b), vec![]);
    assert_eq!(stored_offsets(&a), vec![0, 1]);
}

/// Writes `offsets` as records of incarnation `inc` of the topic, cutting by the clock
/// after each offset in `cuts`, and commits as it goes; returns the writer's ledger end.
fn land(
    ctx: &WriterCtx,
    tp: &Tp,
    sought: Option<i64>,
    inc: i64,
    offsets: impl IntoIterator<Item = i64>,
    cuts: &[i64],
) -> PartitionWriter {
    let far = Instant::now() + Duration::from_secs(60);
    let epoch = ctx.ledger.lock().unwrap().assign(tp);
    let mut w = PartitionWriter::new(ctx, tp.clone(), epoch, sought).unwrap();
    for o in offsets {
        let payload = format!(r#"{{"ts":"2024-01-02T01:00:00Z","o":{o},"inc":{inc}}}"#);
        let rec = RecordIn {
            offset: o,
            kafka_millis: Some(1_704_157_200_000 + o + inc * 1_000_000),
            payload: Some(payload.as_bytes()),
            key: None,
            headers: None,
        };
        w.push(ctx, rec, Instant::now(), 0).unwrap();
        if cuts.contains(&o) {
            w.cut(ctx, CutReason::Age).unwrap();
        }
        for _ in 0..2 {
            assert!(w.wait(&ctx.rt, far));
            let safe = safe(ctx);
            ctx.ledger.lock().unwrap().committed(&safe);
            w.launch(ctx);
        }
    }
    w
}

/// Every stored record as (incarnation, offset), sorted.
fn stored(ctx: &WriterCtx) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for key in data_keys(ctx) {
        for line in gunzipped(ctx, &key).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            out.push((v["inc"].as_i64().unwrap(), v["o"].as_i64().unwrap()));
        }
    }
    out.sort_unstable();
    out
}

#[test]
fn a_writer_starting_inside_a_claimed_segment_has_it_read_again_from_its_start() {
    let rt = runtime();
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let tp = Tp::new("t", 0);
    let first = ctx_on(&rt, store.clone());
    // [0, 2) and [2, 4) cut by the clock, [4, 7) by max_records = 3, [7, 9) at the end.
    let mut w = land(&first, &tp, None, 0, 0..9, &[1, 3, 8]);
    assert!(w.wait(&first.rt, Instant::now() + Duration::from_secs(60)));
    drop(w);
    let before = data_keys(&first);
    let all: Vec<(i64, i64)> = (0..9).map(|o| (0, o)).collect();
    assert_eq!(stored(&first), all);

    // The group's offsets are reset to 5, inside [4, 7). Cutting from 5 on would store
    // 5 and 6 a second time under a new key: the writer asks to read again from 4 instead,
    // and takes nothing meanwhile.
    let next = ctx_on(&rt, store.clone());
    let w = land(&next, &tp, None, 0, 5..9, &[]);
    let asked = next.reread.lock().unwrap().clone();
    assert_eq!(
        asked,
        vec![Reread {
            tp: tp.clone(),
            epoch: w.epoch(),
            from: Some(4)
        }]
    );
    assert_eq!(w.held(), 0, "no record taken");
    drop(w);

    // Read again from 4 (with a shutdown cut in the middle: a claimed segment is not cut
    // before its end), then to the end: the same objects, every record once.
    let again = ctx_on(&rt, store.clone());
    let mut w = land(&again, &tp, Some(4), 0, 4..9, &[5]);
    w.cut(&again, CutReason::Shutdown).unwrap();
    assert!(w.wait(&again.rt, Instant::now() + Duration::from_secs(60)));
    assert!(again.reread.lock().unwrap().is_empty());
    assert_eq!(data_keys(&again), before);
    assert_eq!(stored(&again), all);

    // Kafka no longer has 4 (retention) when the partition is read again from there: the
    // segment is replayed from 5 as the claim it is, and its stored object, which holds 4
    // too, is not overwritten with fewer records.
    let gone = ctx_on(&rt, store.clone());
    let mut w = land(&gone, &tp, Some(4), 0, 5..9, &[]);
    w.cut(&gone, CutReason::Shutdown).unwrap();
    assert!(w.wait(&gone.rt, Instant::now() + Duration::from_secs(60)));
    assert!(gone.reread.lock().unwrap().is_empty());
    assert_eq!(safe(&gone), vec![]);
    assert_eq!(
        gone.ledger
            .lock()
            .unwrap()
            .safe_offsets(std::slice::from_ref(&tp)),
        vec![(tp.clone(), 9)]
    );
    assert_eq!(data_keys(&gone), before);
    assert_eq!(stored(&gone), all);
}

#[test]
fn a_replayed_claim_ends_at_its_claimed_end_when_its_last_offsets_are_gone() {
    let rt = runtime();
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let tp = Tp::new("t", 0);
    let first = ctx_on(&rt, store.clone());
    // [0, 2) cut by the clock, [2, 5) by max_records = 3.
    let w = land(&first, &tp, None, 0, 0..5, &[1]);
    assert_eq!(safe(&first), vec![]);
    drop(w);
    let before = data_keys(&first);
    // Compaction removed 3 and 4 and the commit of 5 was lost: the replay from 2 sees 2,
    // then 6. It seals [2, 5) as claimed (a shorter segment would conflict with the claim
    // and be re-read forever), keeps the stored object that holds 3 and 4, and commits
    // past the gap.
    let next = ctx_on(&rt, store.clone());
    let mut w = land(&next, &tp, None, 0, [2, 6], &[]);
    w.cut(&next, CutReason::Shutdown).unwrap();
    assert!(w.wait(&next.rt, Instant::now() + Duration::from_secs(60)));
    assert!(next.reread.lock().unwrap().is_empty(), "no claim conflict");
    assert_eq!(safe(&next), vec![(tp.clone(), 7)]);
    let after = data_keys(&next);
    assert_eq!(after.len(), before.len() + 1, "{before:?} → {after:?}");
    let want: Vec<(i64, i64)> = [0, 1, 2, 3, 4, 6].iter().map(|o| (0, *o)).collect();
    assert_eq!(stored(&next), want);
}

#[test]
fn another_incarnation_of_the_topic_lands_beside_the_first_and_never_over_it() {
    let rt = runtime();
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let tp = Tp::new("t", 0);
    let first = ctx_on(&rt, store.clone());
    let mut w = land(&first, &tp, None, 0, 0..8, &[1]);
    w.cut(&first, CutReason::Shutdown).unwrap();
    assert!(w.wait(&first.rt, Instant::now() + Duration::from_secs(60)));
    drop(w);
    let before = data_keys(&first);
    let old: Vec<Vec<u8>> = before
        .iter()
        .map(|k| gunzipped(&first, k).into_bytes())
        .collect();

    // The topic is deleted and created again: offsets start at 0 again, with other
    // records, cut elsewhere.
    let next = ctx_on(&rt, store.clone());
    let mut w = land(&next, &tp, None, 1, 0..6, &[2]);
    w.cut(&next, CutReason::Shutdown).unwrap();
    assert!(w.wait(&next.rt, Instant::now() + Duration::from_secs(60)));
    let mut want: Vec<(i64, i64)> = (0..8).map(|o| (0, o)).collect();
    want.extend((0..6).map(|o| (1, o)));
    assert_eq!(stored(&next), want, "both incarnations, each record once");
    for (k, bytes) in before.iter().zip(&old) {
        assert_eq!(&gunzipped(&next, k).into_bytes(), bytes, "{k} unchanged");
    }
    let after = data_keys(&next);
    assert!(
        after
            .iter()
            .filter(|k| !before.contains(k))
            .all(|k| k.ends_with(".g1.json.gz")),
        "{after:?}"
    );

    // A restart of the new incarnation follows its own generation's claims.
    drop(w);
    let again = ctx_on(&rt, store.clone());
    let mut w = land(&again, &tp, None, 1, 0..6, &[]);
    w.cut(&again, CutReason::Shutdown).unwrap();
    assert!(w.wait(&again.rt, Instant::now() + Duration::from_secs(60)));
    assert!(again.reread.lock().unwrap().is_empty());
    assert_eq!(stored(&again), want);
    assert_eq!(data_keys(&again), after);
}

/// A store that takes a create-only write for a plain one, as some S3-compatible stores and
/// proxies that drop `If-None-Match` do.
#[derive(Debug, Default)]
struct IgnoresCreateOnly(object_store::memory::InMemory);

impl std::fmt::Display for IgnoresCreateOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IgnoresCreateOnly")
    }
}

#[async_trait::async_trait]
impl ObjectStore for IgnoresCreateOnly {
    async fn put_opts(
        &self,
        location: &Path,
        payload: object_store::PutPayload,
        mut opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        opts.mode = object_store::PutMode::Overwrite;
        self.0.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

#[test]
fn on_a_store_that_does_not_fence_a_zombie_yields_to_an_earlier_claim_and_never_replaces_a_file() {
    let rt = runtime();
    let far = Instant::now() + Duration::from_secs(60);
    let store: Arc<dyn ObjectStore> = Arc::new(IgnoresCreateOnly::default());
    assert_eq!(
        rt.block_on(crate::claim::probe_create_only(&store, ""))
            .unwrap(),
        crate::claim::CreateOnly::Ignored
    );
    let tp = Tp::new("t", 0);
    let (a, b) = (ctx_on(&rt, store.clone()), ctx_on(&rt, store.clone()));
    a.claims.set_unfenced();
    b.claims.set_unfenced();
    let epoch_a = a.ledger.lock().unwrap().assign(&tp);
    let epoch_b = b.ledger.lock().unwrap().assign(&tp);
    let mut wa = PartitionWriter::new(&a, tp.clone(), epoch_a, None).unwrap();
    let mut wb = PartitionWriter::new(&b, tp.clone(), epoch_b, None).unwrap();
    // B (the zombie) starts, then A cuts [0, 2) and claims it.
    push_o(&mut wb, &b, 0);
    push_o(&mut wa, &a, 0);
    push_o(&mut wa, &a, 1);
    wa.cut(&a, CutReason::Age).unwrap();
    assert!(wa.wait(&a.rt, far));
    let first = data_keys(&a);
    assert!(
        first
            .iter()
            .all(|k| k.contains(&format!(".u{}", crate::claim::writer_token()))),
        "files not replaying a claim carry their writer's token: {first:?}"
    );
    // B's clock cuts [0, 3): the claim it finds refuses it, though the store would not.
    push_o(&mut wb, &b, 1);
    push_o(&mut wb, &b, 2);
    wb.cut(&b, CutReason::Age).unwrap();
    assert!(wb.wait(&b.rt, far));
    assert_eq!(b.stats.metrics.claims_refused.get(), 1);
    assert_eq!(b.reread.lock().unwrap().len(), 1);
    assert_eq!(data_keys(&b), first, "nothing of B's completed");
    assert_eq!(stored_offsets(&a), vec![0, 1]);
}

fn push(w: &mut PartitionWriter, ctx: &WriterCtx, offset: i64) {
    let payload = br#"{"ts":"2024-01-02T01:00:00Z"}"#;
    let rec = RecordIn {
        offset,
        kafka_millis: Some(1_704_157_200_000),
        payload: Some(payload),
        key: None,
        headers: None,
    };
    w.push(ctx, rec, Instant::now(), 0).unwrap();
}

pub(super) fn safe(ctx: &WriterCtx) -> Vec<(Tp, i64)> {
    ctx.ledger.lock().unwrap().to_commit()
}

#[test]
fn a_segment_is_completed_in_the_store_only_after_the_one_before_is_committed() {
    let rt = runtime();
    let ctx = ctx(&rt);
    let tp = Tp::new("t", 0);
    let epoch = ctx.ledger.lock().unwrap().assign(&tp);
    let mut w = PartitionWriter::new(&ctx, tp.clone(), epoch, None).unwrap();
    let far = Instant::now() + Duration::from_secs(60);
    let stored = |ctx: &WriterCtx| data_keys(ctx).len();

    // Cuts fall where the data puts them (max_records = 3): at 3, 6 and 9…
    for o in 0..9 {
        push(&mut w, &ctx, o);
    }
    assert!(w.wait(&ctx.rt, far));
    // …but only the first segment is in the store; the others wait, sealed.
    assert_eq!(stored(&ctx), 1);
    assert_eq!(safe(&ctx), vec![(tp.clone(), 3)]);
    assert!(w.queued());

    // Each commit lets the next one out, one at a time.
    ctx.ledger.lock().unwrap().committed(&[(tp.clone(), 3)]);
    w.launch(&ctx);
    w.launch(&ctx);
    assert!(w.wait(&ctx.rt, far));
    assert_eq!(
        stored(&ctx),
        2,
        "the gate lets one segment through per commit"
    );
    assert_eq!(safe(&ctx), vec![(tp.clone(), 6)]);

    // A cut by the clock or a shutdown is queued the same way.
    push(&mut w, &ctx, 9);
    w.cut(&ctx, CutReason::Shutdown).unwrap();
    ctx.ledger.lock().unwrap().committed(&[(tp.clone(), 6)]);
    w.launch(&ctx);
    assert!(w.wait(&ctx.rt, far));
    assert_eq!(safe(&ctx), vec![(tp.clone(), 9)]);
    ctx.ledger.lock().unwrap().committed(&[(tp.clone(), 9)]);
    w.launch(&ctx);
    assert!(w.wait(&ctx.rt, far));
    assert_eq!(safe(&ctx), vec![(tp.clone(), 10)]);
    assert!(!w.queued());
    assert_eq!(stored(&ctx), 4);
}
