//! `lakesink verify`: proves from the lake itself that nothing is missing, and names what is.
//!
//! The claims are the lake's ledger of every segment (see [`crate::claim`]); since each now
//! records its objects' sizes, record counts and CRC-32s, the store can be audited against
//! them without trusting the daemon that wrote them:
//!
//! 1. **Offsets**: per Kafka partition and generation, the claims follow each other without a
//!    gap or an overlap from the first claim on, and the newest generation's claims reach the
//!    group's committed offset (every committed record is in a claimed segment).
//! 2. **Objects**: every object a committed claim lists exists with the recorded size; with
//!    `--deep` it is read back and its CRC-32 and record count compared too.
//! 3. **Orphans**: no object in a table's directories that no claim lists (a stray upload, a
//!    file of another writer, an object whose claim was deleted).
//!
//! The order of the reads makes a run against a lake that a daemon is writing sound: objects
//! are listed first, committed offsets read next, claims last. An object visible to the listing
//! was claimed before it was completed, so the later claim listing holds it (no false orphan);
//! a claim whose end is at or below an offset committed before the listing had its objects
//! completed before that commit (no false missing object). The one segment per partition that
//! may be claimed and not committed is "in flight": its objects are not required.

mod deep;
mod kafka;
mod report;
mod seals;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::claim::{Claim, ClaimError, ClaimedFile, Claims};
use crate::commit::Tp;
use crate::config::Plan;
pub use report::{Checked, Finding, Kind, Report};

/// Objects checked at once (HEAD requests; `--deep` reads [`deep::READS`] at a time).
const HEADS: usize = 32;

/// Names the store uses for what is not data and that readers skip (seal manifests, Hadoop
/// success markers): never orphans.
const NOT_DATA: [&str; 2] = ["_lakesink_manifest.json", "_SUCCESS"];

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Claims(#[from] ClaimError),
    #[error("listing {prefix}: {source}")]
    List {
        prefix: String,
        #[source]
        source: object_store::Error,
    },
    #[error("reading {key}: {source}")]
    Read {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("reading {tp} from Kafka: {step}: {source}")]
    Kafka {
        tp: Tp,
        step: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("reading {tp} from Kafka: it returned nothing for {secs}s before offset {to}")]
    KafkaStalled { tp: Tp, secs: u64, to: i64 },
    /// The broker's answer for the group's committed offset.
    #[error("reading the committed offsets of {topic}: {message}")]
    Committed { topic: String, message: String },
    #[error("table `{table}` cannot route {topic}'s records: {source}")]
    Route {
        table: String,
        topic: String,
        #[source]
        source: crate::route::json::TooManyFields,
    },
    #[error(transparent)]
    Offsets(#[from] crate::kafka::OffsetsError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("reading Kafka ended abnormally: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("no table named {0} in the config")]
    NoSuchTable(String),
}

/// What to audit.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this table (and the topics it reads).
    pub table: Option<String>,
    /// Only objects whose records' event times overlap `[from, to)`, and orphans in their
    /// directories (offsets are checked whole either way).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Read every object back: CRC-32 and record count.
    pub deep: bool,
    /// Compare the records Kafka still holds with the lake, record by record.
    pub against_kafka: bool,
}

/// One object a committed claim requires, with where it came from.
struct Required {
    tp: Tp,
    claim: (i64, i64),
    generation: u32,
    /// What the claim says of it, then what amendments say (a replay's other bytes, see
    /// [`Claims::amend`]); empty for an older claim that only named it.
    versions: Vec<ClaimedFile>,
    key: String,
}

impl Required {
    fn table(&self) -> Option<String> {
        self.versions.first().and_then(|f| f.table.clone())
    }

    /// A finding about this object: its table, partition, offsets and key.
    fn finding(&self, kind: Kind, detail: String) -> Finding {
        Finding {
            kind,
            table: self.table(),
            topic: Some(self.tp.topic.to_string()),
            partition: Some(self.tp.partition),
            generation: Some(self.generation),
            offsets: Some((Some(self.claim.0), self.claim.1)),
            key: Some(self.key.clone()),
            detail,
        }
    }
}

/// Audits the lake of `plan`; see the module docs.
pub async fn verify(plan: &Plan, options: &Options) -> Result<Report, VerifyError> {
    let lake = crate::storage::open(&plan.storage)?;
    let tables: Vec<Scope> = match &options.table {
        Some(name) => vec![plan
            .tables
            .iter()
            .find(|t| &t.name == name)
            .ok_or_else(|| VerifyError::NoSuchTable(name.clone()))?],
        None => plan.tables.iter().collect(),
    }
    .into_iter()
    .map(|t| Scope {
        name: t.name.clone(),
        topics: t.topics.clone(),
    })
    .collect();
    let mut topics: Vec<String> = tables.iter().flat_map(|t| t.topics.clone()).collect();
    topics.sort();
    topics.dedup();
    let mut report = audit(
        &lake.store,
        lake.root.as_ref(),
        &tables,
        committed_offsets(plan, &topics),
        options,
    )
    .await?;
    kafka::pass_gaps_without_records(plan, &mut report).await?;
    if options.against_kafka {
        against_kafka(plan, &lake, &topics, options, &mut report).await?;
    }
    report.storage = lake.url;
    report.group = plan.kafka.group_id.clone();
    Ok(report)
}

/// A table audited: its name (its directory below the root) and its topics.
#[derive(Debug, Clone)]
pub struct Scope {
    pub name: String,
    pub topics: Vec<String>,
}

/// The audit of the lake at `root` in `store`; `committed` reads the group's committed offsets
/// (after the objects are listed, before the claims are: see the module docs).
pub async fn audit<F>(
    store: &Arc<dyn ObjectStore>,
    root: &str,
    tables: &[Scope],
    committed: F,
    options: &Options,
) -> Result<Report, VerifyError>
where
    F: std::future::Future<Output = Result<BTreeMap<(String, i32), Option<i64>>, VerifyError>>,
{
    let root = root.trim_matches('/').to_string();
    let mut checked = Checked {
        tables: tables.len(),
        ..Checked::default()
    };
    let mut findings = Vec::new();

    // 1. Objects first (see the module docs for the order).
    let mut listed: BTreeMap<String, (String, u64)> = BTreeMap::new(); // key → (table, size)
    let mut manifests: Vec<(String, String)> = Vec::new(); // (key, table) of manifest copies
    for table in tables {
        for m in list(store, &crate::storage::under_root(&root, &table.name)).await? {
            if m.location.filename() == Some(crate::seal::manifest::MANIFEST) {
                manifests.push((m.location.to_string(), table.name.clone()));
            }
            if m.location.filename().is_some_and(|n| NOT_DATA.contains(&n)) {
                continue;
            }
            listed.insert(m.location.to_string(), (table.name.clone(), m.size));
        }
    }
    checked.listed = listed.len();

    // 2. Committed offsets.
    let mut topics: Vec<String> = tables.iter().flat_map(|t| t.topics.clone()).collect();
    topics.sort();
    topics.dedup();
    let committed = committed.await?;

    // 3. Claims, per Kafka partition (those Kafka has and those only the claims remember).
    let claims = Claims::new(store.clone(), &root);
    let in_scope = |f: &ClaimedFile| -> bool {
        match &f.table {
            Some(t) => tables.iter().any(|p| &p.name == t),
            None => options.table.is_none(),
        }
    };
    let mut claimed: HashSet<String> = HashSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut required: Vec<Required> = Vec::new();
    let mut newest_of = BTreeMap::new();
    for topic in &topics {
        let mut partitions: BTreeSet<i32> = claims
            .partitions(topic)
            .await
            .map_err(VerifyError::from)?
            .into_iter()
            .collect();
        partitions.extend(
            committed
                .keys()
                .filter(|(t, _)| t == topic)
                .map(|(_, p)| *p),
        );
        for partition in partitions {
            checked.kafka_partitions += 1;
            let tp = Tp::new(topic, partition);
            let generations = claims.all(&tp).await.map_err(VerifyError::from)?;
            let newest = generations.last().map_or(0, |(g, _)| *g);
            newest_of.insert((topic.clone(), partition), newest);
            let commit = committed
                .get(&(topic.clone(), partition))
                .copied()
                .flatten();
            for (generation, list) in &generations {
                checked.claims += list.len();
                let amended = claims
                    .amendments(&tp, *generation)
                    .await
                    .map_err(VerifyError::from)?;
                let commit = commit.filter(|_| *generation == newest);
                offsets(&tp, *generation, list, commit, &mut findings, &mut checked);
                for c in list {
                    let done = commit.is_some_and(|o| c.end <= o) || *generation < newest;
                    collect(
                        &tp,
                        *generation,
                        c,
                        &amended,
                        done,
                        &in_scope,
                        &mut claimed,
                        &mut in_flight,
                        &mut required,
                        &mut checked,
                    );
                }
            }
        }
    }

    // Compactions: the files they wrote are checked like claimed ones; the files they
    // replaced may be gone.
    let mut replaced: HashSet<String> = HashSet::new();
    for table in tables {
        let records = crate::seal::compactions::table_records(store, &root, &table.name)
            .await
            .map_err(|source| VerifyError::List {
                prefix: format!("compactions of {}", table.name),
                source,
            })?;
        let (written, gone) = crate::seal::compactions::index(&records);
        replaced.extend(gone);
        for (key, f) in written {
            claimed.insert(key.clone());
            let first = f.offsets.first();
            required.push(Required {
                tp: first.map_or_else(|| Tp::new("", 0), |o| Tp::new(&o.topic, o.partition)),
                claim: first.map_or((0, 0), |o| (o.start, o.end)),
                generation: first.map_or(0, |o| o.generation),
                versions: vec![ClaimedFile {
                    key: key.clone(),
                    table: Some(table.name.clone()),
                    path: None,
                    records: f.records,
                    bytes: f.bytes,
                    crc32: f.crc32,
                    min_event_micros: f.min_event_time.as_deref().and_then(micros),
                    max_event_micros: f.max_event_time.as_deref().and_then(micros),
                }],
                key,
            });
            checked.compacted += 1;
        }
    }

    // 4. Objects of committed claims: present, of their size (and --deep, their bytes).
    let window = |v: &[ClaimedFile]| match (v.first(), options.from, options.to) {
        (Some(f), from, to) => {
            let (lo, hi) = (f.min_event_micros, f.max_event_micros);
            from.is_none_or(|from| hi.is_none_or(|hi| hi >= from.timestamp_micros()))
                && to.is_none_or(|to| lo.is_none_or(|lo| lo < to.timestamp_micros()))
        }
        (None, _, _) => true,
    };
    required.retain(|r| window(&r.versions));
    let listed_ref = &listed;
    let heads = futures::stream::iter(required.iter().map(|r| {
        let store = store.clone();
        async move {
            let sized = listed_ref.get(&r.key).map(|(_, size)| *size);
            match sized {
                Some(size) => Ok::<_, VerifyError>(Some(size)),
                // Not under a table's directory (dead letters), or listed before it was
                // completed: ask for it.
                None => match store.head(&Path::from(r.key.as_str())).await {
                    Ok(m) => Ok(Some(m.size)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(source) => Err(VerifyError::Read {
                        key: r.key.clone(),
                        source,
                    }),
                },
            }
        }
    }))
    .buffered(HEADS)
    .try_collect::<Vec<_>>()
    .await?;
    let mut to_read = Vec::new();
    for (r, size) in required.iter().zip(heads) {
        checked.objects += 1;
        let finding = |kind, detail: String| r.finding(kind, detail);
        let Some(size) = size else {
            if replaced.contains(&r.key) {
                checked.compacted_away += 1;
                continue; // a compaction replaced it (its files are checked in its place)
            }
            findings.push(finding(
                Kind::MissingObject,
                "the segment's claim lists it and its offsets are committed, but the store has no such object".into(),
            ));
            continue;
        };
        checked.bytes += size;
        let sized: Vec<&ClaimedFile> = r.versions.iter().filter(|f| f.bytes == size).collect();
        if sized.is_empty() && !r.versions.is_empty() {
            let claimed: Vec<String> = r.versions.iter().map(|f| f.bytes.to_string()).collect();
            findings.push(finding(
                Kind::SizeMismatch,
                format!(
                    "{size} bytes in the store, {} in the claim",
                    claimed.join(" or ")
                ),
            ));
        } else if options.deep && !sized.is_empty() {
            to_read.push((r, sized));
        }
    }
    if options.deep {
        let read = deep::check(store, &to_read, &mut checked).await?;
        for (r, kind, detail) in read {
            findings.push(r.finding(kind, detail));
        }
    }

    // 5. Orphans: objects in the tables' directories no claim lists. With a time window, only
    // in the directories of the window's objects.
    let dirs: Option<BTreeSet<&str>> =
        (options.from.is_some() || options.to.is_some()).then(|| {
            required
                .iter()
                .filter_map(|r| r.key.rsplit_once('/'))
                .map(|(d, _)| d)
                .collect()
        });
    for (key, (table, size)) in &listed {
        if claimed.contains(key) {
            continue;
        }
        if let Some(dirs) = &dirs {
            if !key.rsplit_once('/').is_some_and(|(d, _)| dirs.contains(d)) {
                continue;
            }
        }
        findings.push(Finding {
            kind: Kind::Orphan,
            table: Some(table.clone()),
            topic: None,
            partition: None,
            generation: None,
            offsets: None,
            key: Some(key.clone()),
            detail: format!("{size} bytes that no segment claim lists: not written by this lake's daemon, or its claim is gone"),
        });
    }
    // 6. Sealed partitions: each manifest lists exactly the objects in its directory.
    manifests.retain(|(key, _)| {
        dirs.as_ref()
            .is_none_or(|dirs| key.rsplit_once('/').is_some_and(|(d, _)| dirs.contains(d)))
    });
    seals::check(
        store,
        &manifests,
        &listed,
        &in_flight,
        &mut findings,
        &mut checked,
    )
    .await?;

    findings.sort();
    Ok(Report {
        ok: findings.is_empty(),
        storage: String::new(),
        group: String::new(),
        deep: options.deep,
        checked,
        findings,
        newest: newest_of,
    })
}

/// `--against-kafka`: every committed segment Kafka still holds records of, compared with its
/// objects (see [`kafka`]).
async fn against_kafka(
    plan: &Plan,
    lake: &crate::storage::Lake,
    topics: &[String],
    options: &Options,
    report: &mut Report,
) -> Result<(), VerifyError> {
    let claims = Claims::new(lake.store.clone(), lake.root.as_ref());
    let tables: Vec<&crate::config::TablePlan> = plan
        .tables
        .iter()
        .filter(|t| options.table.as_ref().is_none_or(|n| n == &t.name))
        .collect();
    for (topic, parts) in crate::kafka::read_offsets(&plan.kafka, topics.to_vec()).await? {
        for p in parts {
            let (Some(committed), Some(low)) = (p.committed, p.low) else {
                continue;
            };
            let tp = Tp::new(&topic, p.partition);
            let generation = claims
                .newest_generation(&tp)
                .await
                .map_err(VerifyError::from)?;
            let segments: Vec<kafka::Segment> = claims
                .from(&tp, generation, 0)
                .await
                .map_err(VerifyError::from)?
                .into_iter()
                .filter(|c| c.end <= committed && c.end > low)
                .map(|claim| kafka::Segment {
                    tp: tp.clone(),
                    generation,
                    claim,
                })
                .collect();
            kafka::check(
                plan,
                &lake.store,
                lake.root.as_ref(),
                &tables,
                low,
                &segments,
                report,
            )
            .await?;
        }
    }
    report.findings.sort();
    report.ok = report.findings.is_empty();
    Ok(())
}

/// Checks that one generation's claims follow each other, and (the newest generation) reach
/// the committed offset.
fn offsets(
    tp: &Tp,
    generation: u32,
    list: &[Claim],
    committed: Option<i64>,
    findings: &mut Vec<Finding>,
    checked: &mut Checked,
) {
    let finding = |kind, offsets, detail| Finding {
        kind,
        table: None,
        topic: Some(tp.topic.to_string()),
        partition: Some(tp.partition),
        generation: Some(generation),
        offsets: Some(offsets),
        key: None,
        detail,
    };
    let mut end: Option<i64> = None;
    for c in list {
        checked.offsets += (c.end - c.start).max(0) as u64;
        match end {
            Some(e) if c.start > e => findings.push(finding(
                Kind::Gap,
                (Some(e), c.start),
                format!("no segment claim covers these offsets (the claim before ends at {e}, the next starts at {})", c.start),
            )),
            Some(e) if c.start < e => findings.push(finding(
                Kind::Overlap,
                (Some(c.start), e),
                format!("two segment claims cover these offsets (one ends at {e}, the next starts at {})", c.start),
            )),
            _ => {}
        }
        end = Some(end.map_or(c.end, |e| e.max(c.end)));
    }
    if let Some(committed) = committed {
        match end {
            Some(e) if e < committed => findings.push(finding(
                Kind::Gap,
                (Some(e), committed),
                format!("the group committed offset {committed} but the last segment claim ends at {e}: these committed records are in no claimed segment"),
            )),
            None if committed > 0 => findings.push(finding(
                Kind::Gap,
                (None, committed),
                format!("the group committed offset {committed} but the partition has no segment claim"),
            )),
            _ => {}
        }
    }
}

/// Adds a claim's objects to those the store must have (a committed claim) or may have (in
/// flight).
#[allow(clippy::too_many_arguments)]
fn collect(
    tp: &Tp,
    generation: u32,
    c: &Claim,
    amended: &[(i64, ClaimedFile)],
    done: bool,
    in_scope: &dyn Fn(&ClaimedFile) -> bool,
    claimed: &mut HashSet<String>,
    in_flight: &mut HashSet<String>,
    required: &mut Vec<Required>,
    checked: &mut Checked,
) {
    let mut facts: HashMap<&str, &ClaimedFile> =
        c.files.iter().map(|f| (f.key.as_str(), f)).collect();
    for key in &c.objects {
        claimed.insert(key.clone());
        let file = facts.remove(key.as_str());
        if file.is_some_and(|f| !in_scope(f)) {
            continue;
        }
        if !done {
            checked.in_flight += 1;
            in_flight.insert(key.clone());
            continue;
        }
        let Some(file) = file else {
            checked.without_facts += 1;
            required.push(Required {
                tp: tp.clone(),
                claim: (c.start, c.end),
                generation,
                versions: Vec::new(),
                key: key.clone(),
            });
            continue;
        };
        let mut versions = vec![file.clone()];
        versions.extend(
            amended
                .iter()
                .filter(|(start, f)| *start == c.start && &f.key == key)
                .map(|(_, f)| f.clone()),
        );
        required.push(Required {
            tp: tp.clone(),
            claim: (c.start, c.end),
            generation,
            versions,
            key: key.clone(),
        });
    }
}

/// Every object below `prefix` (a directory).
async fn list(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<Vec<object_store::ObjectMeta>, VerifyError> {
    let p = Path::from(prefix);
    store
        .list(Some(&p))
        .try_collect()
        .await
        .map_err(|source| VerifyError::List {
            prefix: prefix.to_string(),
            source,
        })
}

/// The group's committed offset of every partition of `topics` (`None`: nothing committed).
async fn committed_offsets(
    plan: &Plan,
    topics: &[String],
) -> Result<BTreeMap<(String, i32), Option<i64>>, VerifyError> {
    let mut out = BTreeMap::new();
    for (topic, parts) in crate::kafka::read_offsets(&plan.kafka, topics.to_vec()).await? {
        for p in parts {
            if let Some(message) = p.error.filter(|e| e.starts_with("committed")) {
                return Err(VerifyError::Committed { topic, message });
            }
            out.insert((topic.clone(), p.partition), p.committed);
        }
    }
    Ok(out)
}

/// µs since the epoch of an RFC 3339 time.
fn micros(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Parses a `--from`/`--to` time: RFC 3339, or `YYYY-MM-DD`, `YYYY-MM-DDTHH`,
/// `YYYY-MM-DDTHH:MM` (UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let padded = match s.len() {
        10 => format!("{s}T00:00"),
        13 => format!("{s}:00"),
        _ => s.to_string(),
    };
    chrono::NaiveDateTime::parse_from_str(&padded, "%Y-%m-%dT%H:%M")
        .map(|t| t.and_utc())
        .map_err(|_| {
            format!("{s:?} is not a time: use RFC 3339 (2024-01-02T03:00:00Z) or 2024-01-02, 2024-01-02T03, 2024-01-02T03:04 (UTC)")
        })
}

#[cfg(test)]
mod tests;
