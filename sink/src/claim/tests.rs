use super::*;
use object_store::memory::InMemory;

fn claim(start: i64, end: i64, ts: i64) -> Claim {
    Claim {
        topic: "t/x".into(),
        partition: 3,
        start,
        end,
        first_timestamp: Some(ts),
        first_crc: Some(7),
        generation: 0,
        records: (end - start) as u64,
        newest_event_micros: Some(end * 1_000),
        objects: vec![format!("lake/t/date=2024-01-01/t+3+{start:020}.json.gz")],
        files: Vec::new(),
        late_before: Default::default(),
        writer: writer_id(),
    }
}

#[tokio::test]
async fn the_latest_claim_is_the_newest_generations_last() {
    let claims = Claims::new(Arc::new(InMemory::new()), "lake");
    let tp = Tp::new("t/x", 3);
    assert!(claims.latest(&tp).await.unwrap().is_none());
    for (s, e) in [(0, 100), (100, 5_000), (5_000, 5_001)] {
        claims.claim(&tp, &claim(s, e, 1)).await.unwrap();
    }
    let (c, _) = claims.latest(&tp).await.unwrap().unwrap();
    assert_eq!(
        (c.start, c.end, c.newest_event_micros),
        (5_000, 5_001, Some(5_001_000))
    );
    let mut again = claim(0, 40, 2);
    again.generation = 1;
    claims.claim(&tp, &again).await.unwrap();
    let (c, _) = claims.latest(&tp).await.unwrap().unwrap();
    assert_eq!((c.generation, c.start, c.end), (1, 0, 40));
}

#[tokio::test]
async fn a_start_is_claimed_once_and_a_replay_of_it_matches() {
    let claims = Claims::new(Arc::new(InMemory::new()), "lake");
    let tp = Tp::new("t/x", 3);
    assert_eq!(
        claims.claim(&tp, &claim(10, 20, 5)).await.unwrap(),
        Outcome::Claimed
    );
    assert_eq!(
        claims.claim(&tp, &claim(10, 20, 5)).await.unwrap(),
        Outcome::Matched
    );
    // Another writer cut the same start elsewhere: refused, with the claim that stands.
    match claims.claim(&tp, &claim(10, 15, 5)).await.unwrap() {
        Outcome::Conflict(c) => assert_eq!(c.end, 20),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The same start and end in a re-created topic (another first record) is refused too:
    // a claim is never replaced, so the earlier incarnation's objects are never overwritten.
    for other in [
        claim(10, 20, 9),
        Claim {
            first_crc: Some(8),
            ..claim(10, 20, 5)
        },
    ] {
        match claims.claim(&tp, &other).await.unwrap() {
            Outcome::Conflict(c) => assert_eq!(c.first(), claim(10, 20, 5).first()),
            got => panic!("expected a conflict, got {got:?}"),
        }
    }
    // A claim written before CRCs were recorded is matched on its timestamp.
    let old = Claim {
        first_crc: None,
        ..claim(30, 40, 5)
    };
    assert_eq!(claims.claim(&tp, &old).await.unwrap(), Outcome::Claimed);
    assert_eq!(
        claims.claim(&tp, &claim(30, 40, 5)).await.unwrap(),
        Outcome::Matched
    );
    // Its new generation claims the same start apart from the first.
    let next = Claim {
        generation: 1,
        ..claim(10, 12, 9)
    };
    assert_eq!(claims.claim(&tp, &next).await.unwrap(), Outcome::Claimed);
    assert_eq!(claims.claim(&tp, &next).await.unwrap(), Outcome::Matched);
    // The topic name is escaped into one path segment.
    assert_eq!(
        claims.key(&tp, 0, 10).as_ref(),
        "lake/_lakesink/segments/t%2Fx/3/00000000000000000010.json"
    );
    assert_eq!(
        claims.key(&tp, 1, 10).as_ref(),
        "lake/_lakesink/segments/t%2Fx/3.g1/00000000000000000010.json"
    );
}

#[tokio::test]
async fn around_finds_the_newest_generation_and_the_claim_holding_an_offset() {
    let claims = Claims::new(Arc::new(InMemory::new()), "");
    let tp = Tp::new("t/x", 3);
    for (s, e) in [(0, 100), (100, 5_000), (5_000, 5_001), (5_001, 90_000)] {
        claims.claim(&tp, &claim(s, e, 1)).await.unwrap();
    }
    let around = |from| {
        let claims = &claims;
        let tp = &tp;
        async move { claims.around(tp, from).await.unwrap() }
    };
    let span = |a: &Around| {
        (
            a.generation,
            a.containing.as_ref().map(|c| (c.start, c.end)),
            a.later.iter().map(|c| c.start).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        span(&around(0).await),
        (0, None, vec![0, 100, 5_000, 5_001])
    );
    assert_eq!(span(&around(100).await), (0, None, vec![100, 5_000, 5_001]));
    assert_eq!(
        span(&around(4_000).await),
        (0, Some((100, 5_000)), vec![5_000, 5_001])
    );
    assert_eq!(
        span(&around(89_999).await),
        (0, Some((5_001, 90_000)), vec![])
    );
    // At a segment's end, or past every claim: no claim holds it.
    assert_eq!(span(&around(90_000).await), (0, None, vec![]));
    assert_eq!(span(&around(1 << 40).await), (0, None, vec![]));
    // A new generation hides the claims of the ones before.
    let next = Claim {
        generation: 1,
        ..claim(0, 50, 9)
    };
    claims.claim(&tp, &next).await.unwrap();
    assert_eq!(span(&around(20).await), (1, Some((0, 50)), vec![]));
    assert_eq!(span(&around(4_000).await), (1, None, vec![]));
}

#[test]
fn a_fingerprint_tells_records_apart_by_timestamp_key_and_value() {
    let f = |t, k: Option<&[u8]>, v: Option<&[u8]>| Fingerprint::of(t, k, v);
    let a = f(Some(1), Some(b"k"), Some(b"v"));
    assert!(a.same(&f(Some(1), Some(b"k"), Some(b"v"))));
    assert!(!a.same(&f(Some(2), Some(b"k"), Some(b"v"))));
    assert!(!a.same(&f(Some(1), None, Some(b"v"))));
    assert!(!a.same(&f(Some(1), Some(b"kv"), Some(b""))));
    assert!(!a.same(&f(Some(1), Some(b"k"), Some(b"w"))));
    // What one side does not know is not held against it.
    assert!(a.same(&Fingerprint {
        timestamp: Some(1),
        crc: None
    }));
    assert!(a.same(&Fingerprint {
        timestamp: None,
        crc: a.crc
    }));
}

#[tokio::test]
async fn claims_are_listed_from_an_offset_in_order() {
    let claims = Claims::new(Arc::new(InMemory::new()), "");
    let tp = Tp::new("t", 0);
    for (s, e) in [(100, 200), (0, 100), (200, 250), (9, 10)] {
        claims.claim(&tp, &claim(s, e, 1)).await.unwrap();
    }
    claims
        .claim(&Tp::new("t", 1), &claim(300, 400, 1))
        .await
        .unwrap();
    let starts = |v: Vec<Claim>| v.iter().map(|c| (c.start, c.end)).collect::<Vec<_>>();
    assert_eq!(
        starts(claims.from(&tp, 0, 100).await.unwrap()),
        vec![(100, 200), (200, 250)]
    );
    assert_eq!(
        starts(claims.from(&tp, 0, 101).await.unwrap()),
        vec![(200, 250)]
    );
    assert_eq!(starts(claims.from(&tp, 0, 0).await.unwrap()).len(), 4);
    assert!(claims.from(&tp, 0, 251).await.unwrap().is_empty());
}

#[test]
fn a_prefetched_listing_serves_only_the_offset_it_started_from() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let claims = Arc::new(Claims::new(Arc::new(InMemory::new()), "lake"));
    let tp = Tp::new("t/x", 3);
    for (s, e) in [(0, 100), (100, 200)] {
        rt.block_on(claims.claim(&tp, &claim(s, e, 1))).unwrap();
    }
    let listed = claims
        .prefetch(rt.handle(), &tp, 100)
        .wait(rt.handle(), 100);
    let starts: Vec<(i64, i64)> = listed
        .expect("started at 100")
        .unwrap()
        .later
        .iter()
        .map(|c| (c.start, c.end))
        .collect();
    assert_eq!(starts, vec![(100, 200)]);
    // Started elsewhere: no answer, the writer lists from its own first offset.
    assert!(claims
        .prefetch(rt.handle(), &tp, 0)
        .wait(rt.handle(), 100)
        .is_none());
}

#[tokio::test]
async fn the_probe_sees_create_only_writes_enforced() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    assert_eq!(
        probe_create_only(&store, "x").await.unwrap(),
        CreateOnly::Enforced
    );
    let left: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert!(left.is_empty(), "the probe removes its object: {left:?}");
}
