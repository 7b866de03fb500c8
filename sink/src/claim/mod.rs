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
//! - A writer whose first record lies inside a claimed segment (the group's offsets were reset
//!   into it) re-reads the partition from that segment's start, so the segment is rewritten
//!   whole under the same keys, never cut in two.
//! - A topic deleted and created again (or a new cluster with the same topic names) starts its
//!   offsets again at 0. Each claim holds a fingerprint of its first record (Kafka timestamp and
//!   CRC-32 of key and value); a record at a claimed start with another fingerprint belongs to
//!   another *incarnation* of the topic. The partition then moves to a new *generation*: its
//!   claims go to `{partition}.g{N}/` and its objects are named `….g{N}.json.gz`, so nothing the
//!   earlier incarnation landed is ever overwritten. Generation 0 keeps the original names.
//!
//! Stores that cannot create only (object_store returns `NotImplemented`) get plain writes:
//! replays still follow the claims, but concurrent writers are not fenced (`lakesink check`
//! says so). See `docs/DESIGN.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::commit::Tp;
use crate::route::escape::escape_partition_value;

mod amend;
mod probe;

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
    #[error("segment claim {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
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
    /// CRC-32 of the key and value of the record at `start` (see [`Fingerprint`]); absent in
    /// claims written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_crc: Option<u32>,
    /// Generation of the topic partition the segment belongs to (0: the first incarnation
    /// seen; see the module docs).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    pub records: u64,
    /// The newest event time among its records, µs since the epoch (for `lakesink status`;
    /// absent in claims written before it was recorded, and for segments of dead letters only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_event_micros: Option<i64>,
    /// Keys of the objects the segment completes (data and dead-letter files).
    pub objects: Vec<String>,
    /// The same objects with what `lakesink verify` checks them against (absent in claims
    /// written before it was recorded: those are checked for existence only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ClaimedFile>,
    /// Per table with `late_after_seal = "dlq"`, its watermark (µs) when the segment began:
    /// its records for partitions ending at or before it were dead-lettered, and a replay
    /// decides the same.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub late_before: std::collections::BTreeMap<String, i64>,
    /// Who claimed it (`host:pid`), for people reading the store.
    pub writer: String,
}

/// One object of a claimed segment, as written: what `lakesink verify` compares the store with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedFile {
    pub key: String,
    /// The table and the Hive path below it (`date=…/hour=…`); absent for dead-letter files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub records: u64,
    pub bytes: u64,
    /// CRC-32 (IEEE) of the object's bytes.
    pub crc32: u32,
    /// Smallest and largest event time of its records, µs since the epoch (absent when none
    /// had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_event_micros: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_micros: Option<i64>,
}

impl ClaimedFile {
    /// The claim's record of a data file of `table` under `path`, or of a dead-letter file.
    pub fn of(facts: &crate::catalog::FileFacts, table: Option<(&str, &str)>) -> ClaimedFile {
        let seen = facts.min_event_micros <= facts.max_event_micros;
        ClaimedFile {
            key: facts.key.clone(),
            table: table.map(|(t, _)| t.to_string()),
            path: table.map(|(_, p)| p.to_string()),
            records: facts.records,
            bytes: facts.bytes,
            crc32: facts.crc32,
            min_event_micros: seen.then_some(facts.min_event_micros),
            max_event_micros: seen.then_some(facts.max_event_micros),
        }
    }
}

fn is_zero(g: &u32) -> bool {
    *g == 0
}

/// What tells a record at an offset from the record at the same offset of another incarnation
/// of the topic: its Kafka timestamp and a CRC-32 of its key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub timestamp: Option<i64>,
    pub crc: Option<u32>,
}

impl Fingerprint {
    /// The fingerprint of a record.
    pub fn of(timestamp: Option<i64>, key: Option<&[u8]>, value: Option<&[u8]>) -> Fingerprint {
        let mut h = crc32fast::Hasher::new();
        for part in [key, value] {
            match part {
                Some(b) => {
                    h.update(&(b.len() as u64).to_le_bytes());
                    h.update(b);
                }
                None => h.update(&u64::MAX.to_le_bytes()),
            }
        }
        Fingerprint {
            timestamp,
            crc: Some(h.finalize()),
        }
    }

    /// Whether two fingerprints may be of the same record: what both know agrees. (A claim
    /// written before CRCs were recorded is judged by its timestamp alone.)
    pub fn same(&self, other: &Fingerprint) -> bool {
        let agree = |a: Option<i64>, b: Option<i64>| a.is_none() || b.is_none() || a == b;
        agree(self.timestamp, other.timestamp)
            && agree(self.crc.map(i64::from), other.crc.map(i64::from))
    }
}

impl Claim {
    /// The fingerprint of the segment's first record.
    pub fn first(&self) -> Fingerprint {
        Fingerprint {
            timestamp: self.first_timestamp,
            crc: self.first_crc,
        }
    }
}

/// What a writer needs to know of a partition's claims before its first record: see
/// [`Claims::around`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Around {
    /// The newest generation of the partition that has claims (0 if none has).
    pub generation: u32,
    /// The claim of that generation whose segment holds the offset but does not start there.
    pub containing: Option<Claim>,
    /// Its claims whose segments start at or after the offset, by start.
    pub later: Vec<Claim>,
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
    /// Another writer claimed this start with another end, or the claim's first record is not
    /// this segment's (another incarnation of the topic): this segment must not be completed.
    Conflict(Claim),
}

/// The claims of one lake.
pub struct Claims {
    store: Arc<dyn ObjectStore>,
    /// Store root prefix (may be empty).
    root: String,
    /// Cleared when the store does not enforce create-only writes (the daemon's probe found it
    /// with `storage.unfenced = "at_least_once"`, or the store answered `NotImplemented`):
    /// claims are then read before they are written, and files get keys of their writer's own
    /// ([`Claims::unfenced`]).
    create_only: AtomicBool,
    /// Bounds the listings [`Claims::prefetch`] runs at once.
    prefetches: Arc<tokio::sync::Semaphore>,
}

/// A listing of one partition's claims, started on the runtime when the consumer took the
/// partition's first record, so the writer seldom waits for it (one at a time, each worker
/// waited ~3 ms per partition on a local disk, and a network round trip on S3).
pub struct Prefetch {
    from: i64,
    task: tokio::task::JoinHandle<Result<Around, ClaimError>>,
}

impl Prefetch {
    /// The claims [`Claims::around`] `from`, if this listing started there; `None` if it
    /// started elsewhere or its task failed (the caller lists again).
    pub fn wait(
        self,
        rt: &tokio::runtime::Handle,
        from: i64,
    ) -> Option<Result<Around, ClaimError>> {
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

    /// Claims are plain writes from now on: the store does not enforce create-only writes.
    pub fn set_unfenced(&self) {
        self.create_only.store(false, Ordering::Relaxed);
    }

    /// Whether the store does not fence writers (see [`Claims::set_unfenced`]). A file that
    /// does not replay a claim is then named with [`writer_token`] as well, so that a file cut
    /// elsewhere by another writer never replaces it.
    pub fn unfenced(&self) -> bool {
        !self.create_only.load(Ordering::Relaxed)
    }

    /// Starts finding the claims of `tp` [`Claims::around`] `from` on `rt`.
    pub fn prefetch(self: &Arc<Self>, rt: &tokio::runtime::Handle, tp: &Tp, from: i64) -> Prefetch {
        let (claims, tp) = (self.clone(), tp.clone());
        let task = rt.spawn(async move {
            let _permit = claims.prefetches.acquire().await.expect("never closed");
            claims.around(&tp, from).await
        });
        Prefetch { from, task }
    }

    /// The directory of a partition's claims of one generation: `{topic}/{partition}` for
    /// generation 0, `{topic}/{partition}.g{N}` after.
    fn dir(&self, tp: &Tp, generation: u32) -> String {
        let mut topic = String::with_capacity(tp.topic.len());
        escape_partition_value(&tp.topic, &mut topic);
        let sep = if self.root.is_empty() { "" } else { "/" };
        let g = if generation == 0 {
            String::new()
        } else {
            format!(".g{generation}")
        };
        format!("{}{sep}{CLAIMS_DIR}/{topic}/{}{g}", self.root, tp.partition)
    }

    pub fn key(&self, tp: &Tp, generation: u32, start: i64) -> Path {
        path(format!("{}/{start:020}.json", self.dir(tp, generation)))
    }

    /// Claims `claim`'s segment (in its generation); see [`Outcome`].
    pub async fn claim(&self, tp: &Tp, claim: &Claim) -> Result<Outcome, ClaimError> {
        let key = self.key(tp, claim.generation, claim.start);
        let body = serde_json::to_vec(claim).expect("a claim serializes");
        let overwrite = || async {
            self.put(&key, &body, PutMode::Overwrite)
                .await
                .map_err(|source| ClaimError::Store {
                    key: key.to_string(),
                    source,
                })
        };
        let compare = |existing: Claim| {
            // A claim is never replaced: not by another writer's cut, and not by another
            // incarnation of the topic (its writer moves to a new generation instead).
            if existing.end == claim.end && existing.first().same(&claim.first()) {
                Outcome::Matched
            } else {
                Outcome::Conflict(existing)
            }
        };
        if !self.create_only.load(Ordering::Relaxed) {
            // Read before writing: a writer that comes after another's claim still yields to
            // it. (Two writers at the same moment both write; see `Claims::unfenced`.)
            return match self.read(&key).await {
                Ok(existing) => Ok(compare(existing)),
                Err(ClaimError::Store {
                    source: object_store::Error::NotFound { .. },
                    ..
                }) => {
                    overwrite().await?;
                    Ok(Outcome::Unfenced)
                }
                Err(e) => Err(e),
            };
        }
        match self.put(&key, &body, PutMode::Create).await {
            Ok(()) => Ok(Outcome::Claimed),
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.create_only.swap(false, Ordering::Relaxed) {
                    tracing::warn!(store = %self.store, "the store cannot write create-only: segment claims are plain writes, read before they are written, and new files get keys of this writer's own (at-least-once; see `lakesink check`)");
                }
                Box::pin(self.claim(tp, claim)).await
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(compare(self.read(&key).await?)),
            Err(source) => Err(ClaimError::Store {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// What a writer whose first record is at `from` must follow: the newest generation of
    /// `tp` that has claims, its claim that holds `from` without starting there, and its claims
    /// that start at or after `from`.
    ///
    /// The claim that holds `from` is the one with the greatest start below it. Keys sort by
    /// start, and a listing only runs upwards from a key, so it is found by listing from
    /// `from - 16`, `from - 256`, … (factors of 16) until a claim shows up below `from`: a few
    /// requests, and none when `from` is 0 or a claim starts at `from` itself.
    pub async fn around(&self, tp: &Tp, from: i64) -> Result<Around, ClaimError> {
        let generation = self.newest_generation(tp).await?;
        let later = self.from(tp, generation, from).await?;
        let mut containing = None;
        if from > 0 && later.first().is_none_or(|c| c.start != from) {
            let mut span: i64 = 16;
            loop {
                let lo = from.saturating_sub(span).max(0);
                let below = self.starts(tp, generation, lo, Some(from)).await?;
                if let Some(&start) = below.last() {
                    let c = self.read(&self.key(tp, generation, start)).await?;
                    containing = (c.end > from).then_some(c);
                    break;
                }
                if lo == 0 {
                    break;
                }
                span = span.saturating_mul(16);
            }
        }
        Ok(Around {
            generation,
            containing,
            later,
        })
    }

    /// The claims of `tp` in `generation` whose segments start at or after `from`, by start
    /// (read [`PREFETCHES`] at a time).
    pub async fn from(
        &self,
        tp: &Tp,
        generation: u32,
        from: i64,
    ) -> Result<Vec<Claim>, ClaimError> {
        let starts = self.starts(tp, generation, from, None).await?;
        futures::stream::iter(starts)
            .map(|start| async move { self.read(&self.key(tp, generation, start)).await })
            .buffered(PREFETCHES)
            .try_collect()
            .await
    }

    /// Every claim of `tp`: per generation, oldest first, its claims by start.
    pub async fn all(&self, tp: &Tp) -> Result<Vec<(u32, Vec<Claim>)>, ClaimError> {
        let newest = self.newest_generation(tp).await?;
        let mut out = Vec::with_capacity(newest as usize + 1);
        for generation in 0..=newest {
            out.push((generation, self.from(tp, generation, 0).await?));
        }
        Ok(out)
    }

    /// The partitions of `topic` that have claims, in any generation, in order.
    pub async fn partitions(&self, topic: &str) -> Result<Vec<i32>, ClaimError> {
        let dir = self.dir(&Tp::new(topic, 0), 0);
        let dir = path(
            dir.rsplit_once('/')
                .map_or(dir.clone(), |(d, _)| d.to_string()),
        );
        let (store, dir_ref) = (&self.store, &dir);
        let listed = retrying(&dir, move || async move {
            store.list_with_delimiter(Some(dir_ref)).await
        })
        .await
        .map_err(|source| ClaimError::Store {
            key: dir.to_string(),
            source,
        })?;
        let mut out: Vec<i32> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .filter_map(|name| name.split('.').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The newest generation's last claim of `tp`, and when it was written (`None`: `tp` has
    /// no claim). Lists the generation's claims: for `lakesink status`, not the pipeline.
    pub async fn latest(
        &self,
        tp: &Tp,
    ) -> Result<Option<(Claim, chrono::DateTime<chrono::Utc>)>, ClaimError> {
        let generation = self.newest_generation(tp).await?;
        let dir = path(self.dir(tp, generation));
        let store = &self.store;
        let dir_ref = &dir;
        let last = retrying(&dir, move || async move {
            let mut listing = store.list(Some(dir_ref));
            let mut last: Option<(i64, object_store::ObjectMeta)> = None;
            while let Some(m) = listing.try_next().await? {
                if let Some(s) = start_of(&m) {
                    if last.as_ref().is_none_or(|(l, _)| s > *l) {
                        last = Some((s, m));
                    }
                }
            }
            Ok(last)
        })
        .await
        .map_err(|source| ClaimError::Store {
            key: dir.to_string(),
            source,
        })?;
        match last {
            None => Ok(None),
            Some((_, meta)) => Ok(Some((self.read(&meta.location).await?, meta.last_modified))),
        }
    }

    /// Start offsets of the claims in `generation` that start at or after `from`, in order;
    /// with `below`, only those below it. (The whole listing is read: not every store lists in
    /// key order.)
    async fn starts(
        &self,
        tp: &Tp,
        generation: u32,
        from: i64,
        below: Option<i64>,
    ) -> Result<Vec<i64>, ClaimError> {
        let dir = path(self.dir(tp, generation));
        // Keys sort by start (20 digits): list only those from `{from}.json` on.
        let offset = path(format!("{}/{:020}", self.dir(tp, generation), from));
        let below = below.unwrap_or(i64::MAX);
        let (store, dir_ref, offset) = (&self.store, &dir, &offset);
        let mut starts: Vec<i64> = retrying(&dir, move || async move {
            let mut listing = store.list_with_offset(Some(dir_ref), offset);
            let mut starts = Vec::new();
            while let Some(m) = listing.try_next().await? {
                if let Some(s) = start_of(&m).filter(|s| (from..below).contains(s)) {
                    starts.push(s);
                }
            }
            Ok(starts)
        })
        .await
        .map_err(|source| ClaimError::Store {
            key: dir.to_string(),
            source,
        })?;
        starts.sort_unstable();
        Ok(starts)
    }

    /// The newest generation of `tp` that has claims (0 when it has none at all).
    pub async fn newest_generation(&self, tp: &Tp) -> Result<u32, ClaimError> {
        let mut generation = 0;
        while self.any(tp, generation + 1).await? {
            generation += 1;
        }
        Ok(generation)
    }

    /// Whether `tp` has any claim in `generation`.
    async fn any(&self, tp: &Tp, generation: u32) -> Result<bool, ClaimError> {
        let dir = path(self.dir(tp, generation));
        let (store, dir_ref) = (&self.store, &dir);
        retrying(&dir, move || async move {
            Ok(store.list(Some(dir_ref)).try_next().await?.is_some())
        })
        .await
        .map_err(|source| ClaimError::Store {
            key: dir.to_string(),
            source,
        })
    }

    async fn read(&self, key: &Path) -> Result<Claim, ClaimError> {
        let bytes = self.get(key).await?;
        serde_json::from_slice(&bytes).map_err(|source| ClaimError::Corrupt {
            key: key.to_string(),
            source,
        })
    }

    async fn get(&self, key: &Path) -> Result<bytes::Bytes, ClaimError> {
        let store = &self.store;
        retrying(
            key,
            move || async move { store.get(key).await?.bytes().await },
        )
        .await
        .map_err(|source| ClaimError::Store {
            key: key.to_string(),
            source,
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

/// The start offset a claim's key names (`{start, 20 digits}.json`).
fn start_of(m: &object_store::ObjectMeta) -> Option<i64> {
    m.location.filename()?.strip_suffix(".json")?.parse().ok()
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
    let mut delays = crate::retry::Backoff::CLAIMS.delays();
    loop {
        attempt += 1;
        match request().await {
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                tracing::info!(%key, attempt, error = %e, "segment claim request failed; retrying");
                tokio::time::sleep(delays.next().expect("endless")).await;
            }
            done => return done,
        }
    }
}

pub use probe::{probe_create_only, writer_id, writer_token, CreateOnly};

#[cfg(test)]
mod tests;
