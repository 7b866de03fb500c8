//! Segment claims: the lake's own record of where each Kafka partition's segments were cut.
//!
//! Before the objects of a segment `[start, end)` are completed in the store, the writer
//! *claims* the segment: it creates `_lakesink/segments/{topic}/{partition}/{start, 20 digits}.json`
//! with a create-only write (`If-None-Match: *` on S3, the equivalent elsewhere). The claim says
//! where the segment ends and which objects it holds.
//!
//! - A writer that starts reading a partition (after an assignment, a restart or a crash) first
//!   lists the claims at or after its first offset and cuts exactly where they say, whatever its
//!   own clock, memory budget or shutdown would decide. A replay therefore rewrites the same
//!   objects with the same records, however many uploaded segments were not committed.
//! - Two writers of one partition at once (a zombie that lost the partition without noticing,
//!   a broker that does not fence): for each segment start only one claim can be created. The
//!   writer whose claim is refused finds another end in the existing one, completes nothing, and
//!   has its partition re-read from the committed offset, following the claims.
//!
//! A claim whose segment starts at the same offset but whose first record has another Kafka
//! timestamp belongs to an earlier topic of the same name (deleted and re-created): it is
//! replaced. Stores that cannot create only (object_store returns `NotImplemented`) get plain
//! writes: replays still follow the claims, but concurrent writers are not fenced (`lakesink
//! check` says so). See `docs/DESIGN.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::commit::Tp;
use crate::route::escape::escape_partition_value;

/// Directory of the claims below the store root.
pub const CLAIMS_DIR: &str = "_lakesink/segments";

/// Listings [`Claims::prefetch`] runs at once: a lake of hundreds of partitions assigned at once
/// lists them all at the start, and a store takes a few dozen requests at a time well.
const PREFETCHES: usize = 32;

/// Attempts at one claim request before its error is final (object_store retries each request
/// on its own as well).
const ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("segment claim {key}: {source}")]
    Store {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("segment claim {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
}

/// One segment's claim, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub topic: String,
    pub partition: i32,
    /// Offset of the segment's first record.
    pub start: i64,
    /// One past its last record.
    pub end: i64,
    /// Kafka timestamp (ms) of the record at `start`.
    pub first_timestamp: Option<i64>,
    pub records: u64,
    /// Keys of the objects the segment completes (data and dead-letter files).
    pub objects: Vec<String>,
    /// Who claimed it (`host:pid`), for people reading the store.
    pub writer: String,
}

/// What claiming a segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The claim is new.
    Claimed,
    /// The same segment was claimed before (a replay, or a retried request that had succeeded).
    Matched,
    /// The store cannot create only: written as a plain overwrite, unfenced.
    Unfenced,
    /// Another writer claimed this start with another end: this segment must not be completed.
    Conflict(Claim),
}

/// The claims of one lake.
pub struct Claims {
    store: Arc<dyn ObjectStore>,
    /// Store root prefix (may be empty).
    root: String,
    /// Cleared when the store answers `NotImplemented` to a create-only write.
    create_only: AtomicBool,
    /// Bounds the listings [`Claims::prefetch`] runs at once.
    prefetches: Arc<tokio::sync::Semaphore>,
}

/// A listing of one partition's claims, started on the runtime when the consumer took the
/// partition's first record, so the writer seldom waits for it (one at a time, each worker
/// waited ~3 ms per partition on a local disk, and a network round trip on S3).
pub struct Prefetch {
    from: i64,
    task: tokio::task::JoinHandle<Result<Vec<Claim>, ClaimError>>,
}

impl Prefetch {
    /// The claims at or after `from`, if this listing started there; `None` if it started
    /// elsewhere or its task failed (the caller lists again).
    pub fn wait(
        self,
        rt: &tokio::runtime::Handle,
        from: i64,
    ) -> Option<Result<Vec<Claim>, ClaimError>> {
        if self.from != from {
            self.task.abort();
            return None;
        }
        rt.block_on(self.task).ok()
    }
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

impl Claims {
    pub fn new(store: Arc<dyn ObjectStore>, root: &str) -> Claims {
        Claims {
            store,
            root: root.trim_matches('/').to_string(),
            create_only: AtomicBool::new(true),
            prefetches: Arc::new(tokio::sync::Semaphore::new(PREFETCHES)),
        }
    }

    /// Starts listing the claims of `tp` at or after `from` ([`Claims::from`]) on `rt`.
    pub fn prefetch(self: &Arc<Self>, rt: &tokio::runtime::Handle, tp: &Tp, from: i64) -> Prefetch {
        let (claims, tp) = (self.clone(), tp.clone());
        let task = rt.spawn(async move {
            let _permit = claims.prefetches.acquire().await.expect("never closed");
            claims.from(&tp, from).await
        });
        Prefetch { from, task }
    }

    fn dir(&self, tp: &Tp) -> String {
        let mut topic = String::with_capacity(tp.topic.len());
        escape_partition_value(&tp.topic, &mut topic);
        let sep = if self.root.is_empty() { "" } else { "/" };
        format!("{}{sep}{CLAIMS_DIR}/{topic}/{}", self.root, tp.partition)
    }

    pub fn key(&self, tp: &Tp, start: i64) -> Path {
        path(format!("{}/{start:020}.json", self.dir(tp)))
    }

    /// Claims `claim`'s segment; see [`Outcome`].
    pub async fn claim(&self, tp: &Tp, claim: &Claim) -> Result<Outcome, ClaimError> {
        let key = self.key(tp, claim.start);
        let body = serde_json::to_vec(claim).expect("a claim serializes");
        let overwrite = || async {
            self.put(&key, &body, PutMode::Overwrite)
                .await
                .map_err(|source| ClaimError::Store {
                    key: key.to_string(),
                    source,
                })
        };
        if !self.create_only.load(Ordering::Relaxed) {
            overwrite().await?;
            return Ok(Outcome::Unfenced);
        }
        match self.put(&key, &body, PutMode::Create).await {
            Ok(()) => Ok(Outcome::Claimed),
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.create_only.swap(false, Ordering::Relaxed) {
                    tracing::warn!(store = %self.store, "the store cannot write create-only: segment claims are plain writes, so concurrent writers of one partition are not fenced (at-least-once against zombie writers; see `lakesink check`)");
                }
                overwrite().await?;
                Ok(Outcome::Unfenced)
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self.read(&key).await?;
                if existing.end == claim.end {
                    Ok(Outcome::Matched)
                } else if existing.first_timestamp.is_some()
                    && claim.first_timestamp.is_some()
                    && existing.first_timestamp != claim.first_timestamp
                {
                    tracing::warn!(%tp, key = %key, "replacing a segment claim of an earlier topic of the same name (its first record has another timestamp)");
                    overwrite().await?;
                    Ok(Outcome::Claimed)
                } else {
                    Ok(Outcome::Conflict(existing))
                }
            }
            Err(source) => Err(ClaimError::Store {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// The claims of `tp` whose segments start at or after `from`, by start offset.
    pub async fn from(&self, tp: &Tp, from: i64) -> Result<Vec<Claim>, ClaimError> {
        let dir = path(self.dir(tp));
        // Keys sort by start (20 digits): list only those after `{from - 1}.json`.
        let offset = path(format!("{}/{:020}", self.dir(tp), from));
        let (store, dir_ref, offset) = (&self.store, &dir, &offset);
        let metas: Vec<object_store::ObjectMeta> = retrying(&dir, move || {
            store.list_with_offset(Some(dir_ref), offset).try_collect()
        })
        .await
        .map_err(|source| ClaimError::Store {
            key: dir.to_string(),
            source,
        })?;
        let mut starts: Vec<i64> = metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                let start: i64 = name.strip_suffix(".json")?.parse().ok()?;
                (start >= from).then_some(start)
            })
            .collect();
        starts.sort_unstable();
        let mut out = Vec::with_capacity(starts.len());
        for start in starts {
            out.push(self.read(&self.key(tp, start)).await?);
        }
        Ok(out)
    }

    async fn read(&self, key: &Path) -> Result<Claim, ClaimError> {
        let store = &self.store;
        let bytes = retrying(
            key,
            move || async move { store.get(key).await?.bytes().await },
        )
        .await
        .map_err(|source| ClaimError::Store {
            key: key.to_string(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClaimError::Corrupt {
            key: key.to_string(),
            message: e.to_string(),
        })
    }

    /// One write, retried on transient errors. A create-only write retried after a lost answer
    /// may find its own claim: [`Claims::claim`] reads it back and calls that a match.
    async fn put(&self, key: &Path, body: &[u8], mode: PutMode) -> Result<(), object_store::Error> {
        let body = bytes::Bytes::copy_from_slice(body);
        let store = &self.store;
        retrying(key, move || {
            let opts = PutOptions {
                mode: mode.clone(),
                ..Default::default()
            };
            store.put_opts(key, PutPayload::from(body.clone()), opts)
        })
        .await
        .map(|_| ())
    }
}

/// A key whose segments are already escaped (topic names go through
/// [`escape_partition_value`], like object names).
fn path(key: String) -> Path {
    Path::parse(&key).unwrap_or_else(|_| Path::from(key))
}

/// Errors worth another attempt: what object_store reports as generic (5xx, timeouts and
/// resets after its own retries). Refusals (403, no such bucket, precondition) are final.
fn transient(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { .. })
}

/// Runs one request up to [`ATTEMPTS`] times, backing off with jitter after each
/// [`transient`] error.
async fn retrying<T, F, Fut>(key: &Path, mut request: F) -> Result<T, object_store::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, object_store::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match request().await {
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                let base = Duration::from_millis(250 << attempt.min(6));
                let jitter = Duration::from_millis(rand::random::<u64>() % 250);
                tracing::info!(%key, attempt, error = %e, "segment claim request failed; retrying");
                tokio::time::sleep(base + jitter).await;
            }
            done => return done,
        }
    }
}

/// Whether the store refuses a second create-only write of one key: what `lakesink check`
/// reports. Writes and then deletes one probe object below `_lakesink/`.
pub async fn probe_create_only(
    store: &Arc<dyn ObjectStore>,
    root: &str,
) -> Result<CreateOnly, object_store::Error> {
    let root = root.trim_matches('/');
    let sep = if root.is_empty() { "" } else { "/" };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let key = Path::from(format!(
        "{root}{sep}_lakesink/probe/create-only-{}-{nanos}",
        std::process::id()
    ));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let first = store.put_opts(&key, "1".into(), create()).await;
    let result = match first {
        Err(object_store::Error::NotImplemented { .. }) => Ok(CreateOnly::NotSupported),
        Err(e) => Err(e),
        Ok(_) => match store.put_opts(&key, "2".into(), create()).await {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(CreateOnly::Enforced),
            Ok(_) => Ok(CreateOnly::Ignored),
            Err(e) => Err(e),
        },
    };
    let _ = store.delete(&key).await;
    result
}

/// What [`probe_create_only`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOnly {
    /// A second create-only write is refused: concurrent writers are fenced.
    Enforced,
    /// The store accepted the second write: claims cannot fence concurrent writers.
    Ignored,
    /// object_store has no create-only write for this store (S3 with conditional put disabled).
    NotSupported,
}

/// `host:pid`, for the `writer` of claims.
pub fn writer_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        format!("{host}:{}", std::process::id())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn claim(start: i64, end: i64, ts: i64) -> Claim {
        Claim {
            topic: "t/x".into(),
            partition: 3,
            start,
            end,
            first_timestamp: Some(ts),
            records: (end - start) as u64,
            objects: vec![format!("lake/t/date=2024-01-01/t+3+{start:020}.json.gz")],
            writer: writer_id(),
        }
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
        // The same start in a re-created topic (another first timestamp) replaces the claim.
        assert_eq!(
            claims.claim(&tp, &claim(10, 12, 9)).await.unwrap(),
            Outcome::Claimed
        );
        assert_eq!(
            claims.claim(&tp, &claim(10, 12, 9)).await.unwrap(),
            Outcome::Matched
        );
        // The topic name is escaped into one path segment.
        assert_eq!(
            claims.key(&tp, 10).as_ref(),
            "lake/_lakesink/segments/t%2Fx/3/00000000000000000010.json"
        );
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
            starts(claims.from(&tp, 100).await.unwrap()),
            vec![(100, 200), (200, 250)]
        );
        assert_eq!(
            starts(claims.from(&tp, 101).await.unwrap()),
            vec![(200, 250)]
        );
        assert_eq!(starts(claims.from(&tp, 0).await.unwrap()).len(), 4);
        assert!(claims.from(&tp, 251).await.unwrap().is_empty());
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
}
