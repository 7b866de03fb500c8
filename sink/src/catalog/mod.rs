//! Catalog stage: tells the table catalog about new partitions, after their objects are uploaded
//! and before the offsets that cover them are committed.
//!
//! [`Registrar`] sits between the segment tasks and a [`Catalog`] implementation:
//! - a cache of the partitions each table already has, loaded lazily from the catalog the first
//!   time a table is written (after a restart it asks the catalog instead of assuming);
//! - registration of the partitions the cache lacks, treating "already exists" as success;
//! - retries with exponential backoff and jitter while the catalog is unreachable. Meanwhile the
//!   segment stays not done in the ledger, so no offset moves past it, and [`Registrar::stalled`]
//!   tells the consumer to pause fetching. A success anywhere wakes every waiting task, so the
//!   pipeline resumes as soon as the catalog answers again.
//!
//! Kinds: [`none`](NoCatalog), [`webhook`], [`glue`] and [`hive`] (Hive Metastore over Thrift);
//! [`memory`] for tests. [`conformance`] holds the behaviours all of them show.

pub mod conformance;
pub mod glue;
pub mod hive;
pub mod memory;
mod sigv4;
pub mod thrift;
pub mod webhook;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::config::{CatalogPlan, Format, Plan};
use crate::stats::Stats;

/// One object of a new partition, as the webhook reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// The object key in the store.
    pub key: String,
    pub records: u64,
    /// Bytes of the object.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the object's bytes.
    pub crc32: u32,
    /// Smallest and largest event time of its records, microseconds since the epoch (UTC).
    pub min_event_micros: i64,
    pub max_event_micros: i64,
}

/// A partition that now holds at least one uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartition {
    /// The Lakesink table.
    pub table: String,
    /// The Hive path below the table, e.g. `date=2024-01-02/hour=01` (values Hive-escaped).
    pub path: String,
    /// Full location, e.g. `s3://bucket/prefix/cloudtrail/date=2024-01-02/hour=01/`.
    pub location: String,
    /// The files of the segment that brought this partition.
    pub files: Vec<FileFacts>,
}

impl NewPartition {
    /// The partition values in column order: the logical values, unescaped (`us/east` for the
    /// path's `region=us%2Feast`), as Hive registers them. A query filtering on the real value
    /// then finds the partition, and `MSCK REPAIR` or a crawler sees it as the same one.
    pub fn values(&self) -> Vec<String> {
        partition_values(&self.path)
    }
}

/// The partition values of a Hive path, unescaped (see [`NewPartition::values`]).
pub fn partition_values(path: &str) -> Vec<String> {
    path.split('/')
        .map(|seg| seg.split_once('=').map_or(seg, |(_, v)| v))
        .map(crate::route::escape::unescape_partition_value)
        .collect()
}

impl SealedPartition {
    /// Its partition values (see [`NewPartition::values`]).
    pub fn values(&self) -> Vec<String> {
        partition_values(&self.path)
    }
}

/// A table as the catalog sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogTable {
    /// The Lakesink table name.
    pub name: String,
    pub database: String,
    /// The table's name in the catalog (`catalog_table`, default: `name`).
    pub table: String,
    /// Partition columns, in path order; all declared `string`.
    pub partition_columns: Vec<String>,
    /// The table's root location, with a trailing slash.
    pub location: String,
    pub format: Format,
    /// Data columns (name, Hive type) `create_table` declares, from the table's schema.
    pub columns: Vec<(String, String)>,
    /// Create the database and table when they do not exist.
    pub create: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Worth retrying: connection refused or reset, timeout, 5xx, throttling.
    #[error("{catalog} catalog unreachable: {message}")]
    Unreachable {
        catalog: &'static str,
        message: String,
    },
    /// Retrying will not help: bad credentials, missing table, invalid request.
    #[error("{catalog} catalog refused {what}: {message}")]
    Refused {
        catalog: &'static str,
        what: String,
        message: String,
    },
}

/// What [`table_or_create`] says of a missing table it may not create.
const NO_SUCH_TABLE: &str =
    "no such table; create it (`lakesink ddl`) or set catalog.create_table = true";

impl CatalogError {
    /// The table is missing and `create_table` is off ([`table_or_create`]'s refusal).
    pub fn is_no_such_table(&self) -> bool {
        matches!(self, CatalogError::Refused { message, .. } if message == NO_SUCH_TABLE)
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, CatalogError::Unreachable { .. })
    }
}

/// A catalog implementation. Every call is idempotent.
pub trait Catalog: Send + Sync {
    fn kind(&self) -> &'static str;

    /// Makes sure the table exists (creating it when `table.create`) and returns the partition
    /// paths it already has, or `None` when this catalog cannot list them.
    fn load<'a>(
        &'a self,
        table: &'a CatalogTable,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, CatalogError>>;

    /// Registers partitions of one table; "already exists" is success.
    fn register<'a>(
        &'a self,
        table: &'a CatalogTable,
        partitions: &'a [&'a NewPartition],
    ) -> BoxFuture<'a, Result<(), CatalogError>>;

    /// Points a registered partition at another location (a compaction's directory), in one
    /// call, so that a query sees either the old files or the new ones. Called again after a
    /// crash, so it must be idempotent. Catalogs that hold no locations refuse.
    fn relocate<'a>(
        &'a self,
        table: &'a CatalogTable,
        path: &'a str,
        _location: &'a str,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        let kind = self.kind();
        Box::pin(async move {
            Err(CatalogError::Refused {
                catalog: kind,
                what: format!("moving {}/{path}", table.name),
                message: "this catalog holds no partition locations".into(),
            })
        })
    }

    /// Tells of a sealed partition (registered before). Called again for the same generation
    /// after a crash, so it must be idempotent. A catalog with nothing to record does nothing.
    fn seal<'a>(
        &'a self,
        _table: &'a CatalogTable,
        _sealed: &'a SealedPartition,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A partition sealed ([`crate::seal`]), as the catalog is told of it.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedPartition {
    /// The Hive path below the table.
    pub path: String,
    pub location: String,
    /// 1 for the first seal, one more for each re-seal.
    pub generation: u32,
    pub records: u64,
    pub bytes: u64,
    pub files: usize,
    /// The table's watermark when it was sealed (RFC 3339).
    pub watermark: String,
    /// The manifest copy's key, and the manifest itself.
    pub manifest_key: String,
    pub manifest: serde_json::Value,
}

impl SealedPartition {
    /// The partition parameters Glue and Hive record: `lakesink.sealed`, `lakesink.records`,
    /// `lakesink.watermark` (and the generation and manifest).
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        vec![
            ("lakesink.sealed", "true".into()),
            ("lakesink.seal_generation", self.generation.to_string()),
            ("lakesink.records", self.records.to_string()),
            ("lakesink.files", self.files.to_string()),
            ("lakesink.watermark", self.watermark.clone()),
            ("lakesink.manifest", self.manifest_key.clone()),
        ]
    }
}

/// `kind = "none"`: nothing to tell.
#[derive(Debug, Default)]
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn kind(&self) -> &'static str {
        "none"
    }
    fn load<'a>(
        &'a self,
        _: &'a CatalogTable,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, CatalogError>> {
        Box::pin(async { Ok(None) })
    }
    fn register<'a>(
        &'a self,
        _: &'a CatalogTable,
        _: &'a [&'a NewPartition],
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Opens the catalog a plan names.
pub fn open(plan: &Plan) -> Result<Arc<dyn Catalog>, CatalogError> {
    Ok(match &plan.catalog {
        CatalogPlan::None => Arc::new(NoCatalog),
        CatalogPlan::Webhook(w) => Arc::new(webhook::Webhook::new(w)?),
        CatalogPlan::Glue(g) => Arc::new(glue::Glue::new(g)?),
        CatalogPlan::Hive(h) => Arc::new(hive::HiveMetastore::new(h)),
    })
}

/// The catalog view of every table of a plan.
pub fn tables(plan: &Plan, location_base: &str) -> Vec<CatalogTable> {
    let (database, create) = match &plan.catalog {
        CatalogPlan::None | CatalogPlan::Webhook(_) => (String::new(), false),
        CatalogPlan::Glue(g) => (g.database.clone(), g.create_table),
        CatalogPlan::Hive(h) => (h.database.clone(), h.create_table),
    };
    plan.tables
        .iter()
        .map(|t| CatalogTable {
            name: t.name.clone(),
            database: t
                .catalog_database
                .clone()
                .unwrap_or_else(|| database.clone()),
            table: t.catalog_table.clone().unwrap_or_else(|| t.name.clone()),
            partition_columns: t.partition.partition_columns(),
            location: format!("{location_base}/{}/", t.name),
            format: t.format,
            columns: crate::columns::hive_columns(t).unwrap_or_else(|e| {
                tracing::warn!(table = %t.name, error = %e, "create_table declares no data columns");
                Vec::new()
            }),
            create,
        })
        .collect()
}

/// How often a stalled catalog is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Registers new partitions once per table, with retries and a cache; see the module docs.
pub struct Registrar {
    catalog: Arc<dyn Catalog>,
    tables: HashMap<String, CatalogTable>,
    /// Partition paths each table is known to have; a table is absent until loaded.
    known: Mutex<HashMap<String, HashSet<String>>>,
    /// One catalog conversation at a time: concurrent segments that bring the same new
    /// partition register it once, and a table is loaded once.
    turn: tokio::sync::Mutex<()>,
    /// Tasks currently waiting for the catalog after a failure.
    waiting: AtomicUsize,
    recovered: Notify,
    last_log: Mutex<Option<Instant>>,
    stats: Arc<Stats>,
}

impl Registrar {
    pub fn new(catalog: Arc<dyn Catalog>, tables: Vec<CatalogTable>, stats: Arc<Stats>) -> Self {
        Registrar {
            catalog,
            tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
            known: Mutex::new(HashMap::new()),
            turn: tokio::sync::Mutex::new(()),
            waiting: AtomicUsize::new(0),
            recovered: Notify::new(),
            last_log: Mutex::new(None),
            stats,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.catalog.kind()
    }

    /// Whether some partition waits for an unreachable catalog (the consumer pauses fetching).
    pub fn stalled(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Returns once every partition is registered (or was already); retries transient errors
    /// without end, returns refusals.
    pub async fn ensure(&self, partitions: &[NewPartition]) -> Result<(), CatalogError> {
        if self.catalog.kind() == "none" {
            return Ok(());
        }
        let mut delays = crate::retry::Backoff::CATALOG.delays();
        let mut failing = false;
        let result = loop {
            match self.try_ensure(partitions).await {
                Ok(()) => break Ok(()),
                Err(e) if e.is_transient() => {
                    self.stats.metrics.catalog_retries.inc();
                    if !failing {
                        failing = true;
                        self.waiting.fetch_add(1, Ordering::SeqCst);
                    }
                    self.log_stall(&e);
                    // A success of another task means the catalog is back: try again at once.
                    tokio::select! {
                        _ = tokio::time::sleep(delays.next().expect("endless")) => {}
                        _ = self.recovered.notified() => {}
                    }
                }
                Err(e) => break Err(e),
            }
        };
        if failing {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if result.is_ok() {
                tracing::info!(
                    catalog = self.catalog.kind(),
                    "catalog reachable again: registering and committing"
                );
            }
        }
        if result.is_ok() {
            self.recovered.notify_waiters();
        }
        result
    }

    async fn try_ensure(&self, partitions: &[NewPartition]) -> Result<(), CatalogError> {
        // Most segments bring no new partition: answer those from the cache without queueing.
        {
            let known = self.known.lock().expect("catalog cache");
            if partitions.iter().all(|p| {
                known
                    .get(&p.table)
                    .is_some_and(|have| have.contains(&p.path))
                    || !self.tables.contains_key(&p.table)
            }) {
                return Ok(());
            }
        }
        let _turn = self.turn.lock().await;
        let mut by_table: Vec<(&str, Vec<&NewPartition>)> = Vec::new();
        for p in partitions {
            match by_table.iter_mut().find(|(t, _)| *t == p.table) {
                Some((_, v)) => v.push(p),
                None => by_table.push((&p.table, vec![p])),
            }
        }
        for (name, parts) in by_table {
            let Some(table) = self.tables.get(name) else {
                continue;
            };
            let loaded = self.known.lock().expect("catalog cache").contains_key(name);
            if !loaded {
                let existing = self.catalog.load(table).await?.unwrap_or_default();
                tracing::debug!(
                    table = name,
                    partitions = existing.len(),
                    "catalog partitions loaded"
                );
                self.known
                    .lock()
                    .expect("catalog cache")
                    .entry(name.to_string())
                    .or_default()
                    .extend(existing);
            }
            let mut missing: Vec<&NewPartition> = {
                let known = self.known.lock().expect("catalog cache");
                let have = &known[name];
                parts
                    .into_iter()
                    .filter(|p| !have.contains(&p.path))
                    .collect()
            };
            missing.sort_by(|a, b| a.path.cmp(&b.path));
            missing.dedup_by(|a, b| a.path == b.path);
            if missing.is_empty() {
                continue;
            }
            let started = Instant::now();
            self.catalog.register(table, &missing).await?;
            let took = started.elapsed();
            Stats::add(&self.stats.partitions_registered, missing.len() as u64);
            Stats::add(&self.stats.catalog_micros, took.as_micros() as u64);
            self.stats
                .metrics
                .catalog_register_duration
                .observe(took.as_secs_f64());
            tracing::debug!(
                table = name,
                partitions = missing.len(),
                took_ms = took.as_millis() as u64,
                "partitions registered"
            );
            let mut known = self.known.lock().expect("catalog cache");
            let have = known.entry(name.to_string()).or_default();
            have.extend(missing.iter().map(|p| p.path.clone()));
        }
        Ok(())
    }

    fn log_stall(&self, e: &CatalogError) {
        let mut last = self.last_log.lock().expect("catalog log");
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!(
                error = %e,
                waiting = self.waiting.load(Ordering::SeqCst),
                "catalog unreachable: retrying; offsets are not committed past unregistered files and fetching is paused"
            );
        }
    }
}

/// Each table's storage descriptor as its catalog returned it, kept from `load` for the
/// partitions `register` creates (which copy it with their own location).
pub(crate) struct Descriptors<T>(Mutex<HashMap<String, T>>);

impl<T: Clone> Descriptors<T> {
    pub(crate) fn new() -> Self {
        Descriptors(Mutex::new(HashMap::new()))
    }

    pub(crate) fn keep(&self, table: &str, descriptor: T) {
        self.0
            .lock()
            .expect("descriptors")
            .insert(table.to_string(), descriptor);
    }

    /// The table's descriptor, or `fallback()` if it was never loaded.
    pub(crate) fn get_or(&self, table: &str, fallback: impl FnOnce() -> T) -> T {
        self.0
            .lock()
            .expect("descriptors")
            .get(table)
            .cloned()
            .unwrap_or_else(fallback)
    }
}

/// Gets a table from its catalog, creating it first when it is missing and the config asks for
/// that (`create_table`); a missing table is refused otherwise.
pub(crate) async fn table_or_create<T, G, GF, C, CF>(
    catalog: &'static str,
    t: &CatalogTable,
    get: G,
    create: C,
) -> Result<T, CatalogError>
where
    G: Fn() -> GF,
    GF: std::future::Future<Output = Result<Option<T>, CatalogError>>,
    C: FnOnce() -> CF,
    CF: std::future::Future<Output = Result<(), CatalogError>>,
{
    let refused = |message: &str| CatalogError::Refused {
        catalog,
        what: format!("table {}.{}", t.database, t.table),
        message: message.to_string(),
    };
    if let Some(table) = get().await? {
        return Ok(table);
    }
    if !t.create {
        return Err(refused(NO_SUCH_TABLE));
    }
    create().await?;
    get()
        .await?
        .ok_or_else(|| refused("the table is missing right after it was created"))
}

/// Refuses a catalog table whose partition keys are not `partition_by`'s columns.
pub(crate) fn check_partition_keys(
    catalog: &'static str,
    t: &CatalogTable,
    keys: &[&str],
) -> Result<(), CatalogError> {
    if keys == t.partition_columns {
        return Ok(());
    }
    Err(CatalogError::Refused {
        catalog,
        what: format!("table {}.{}", t.database, t.table),
        message: format!(
            "its partition keys {keys:?} differ from partition_by's columns {:?}",
            t.partition_columns
        ),
    })
}

/// Classifies an HTTP failure: connection problems, timeouts, 5xx, 408 and 429 are transient.
pub(crate) fn http_error(
    catalog: &'static str,
    what: &str,
    status: Option<u16>,
    message: String,
) -> CatalogError {
    match status {
        Some(s) if !(s >= 500 || s == 408 || s == 429) => CatalogError::Refused {
            catalog,
            what: what.to_string(),
            message: format!("HTTP {s}: {message}"),
        },
        Some(s) => CatalogError::Unreachable {
            catalog,
            message: format!("{what}: HTTP {s}: {message}"),
        },
        None => CatalogError::Unreachable {
            catalog,
            message: format!("{what}: {message}"),
        },
    }
}

/// `reqwest` errors are all transport-level here (status is checked separately).
pub(crate) fn transport_error(
    catalog: &'static str,
    what: &str,
    e: &reqwest::Error,
) -> CatalogError {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_builder() {
        return CatalogError::Refused {
            catalog,
            what: what.to_string(),
            message,
        };
    }
    http_error(catalog, what, None, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_the_paths_values_unescaped() {
        let p = NewPartition {
            table: "t".into(),
            path: "date=2024-01-02/hour=01/region=us%2Feast".into(),
            location: String::new(),
            files: vec![],
        };
        assert_eq!(p.values(), vec!["2024-01-02", "01", "us/east"]);
    }

    /// A catalog that is unreachable for its first `failures` calls and records what it got.
    struct Flaky {
        failures: AtomicUsize,
        registered: Mutex<Vec<String>>,
        loads: AtomicUsize,
    }

    impl Catalog for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn load<'a>(
            &'a self,
            _: &'a CatalogTable,
        ) -> BoxFuture<'a, Result<Option<Vec<String>>, CatalogError>> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(Some(vec!["date=2024-01-01".to_string()])) })
        }
        fn register<'a>(
            &'a self,
            _: &'a CatalogTable,
            partitions: &'a [&'a NewPartition],
        ) -> BoxFuture<'a, Result<(), CatalogError>> {
            Box::pin(async move {
                if self
                    .failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err(CatalogError::Unreachable {
                        catalog: "flaky",
                        message: "connection refused".into(),
                    });
                }
                let mut r = self.registered.lock().unwrap();
                r.extend(partitions.iter().map(|p| p.path.clone()));
                Ok(())
            })
        }
    }

    fn part(path: &str) -> NewPartition {
        NewPartition {
            table: "t".into(),
            path: path.into(),
            location: format!("memory:///t/{path}/"),
            files: vec![],
        }
    }

    #[tokio::test]
    async fn registrar_retries_until_the_catalog_answers_and_caches() {
        let flaky = Arc::new(Flaky {
            failures: AtomicUsize::new(2),
            registered: Mutex::new(Vec::new()),
            loads: AtomicUsize::new(0),
        });
        let table = CatalogTable {
            name: "t".into(),
            database: "d".into(),
            table: "t".into(),
            partition_columns: vec!["date".into()],
            location: "memory:///t/".into(),
            format: Format::JsonGz,
            columns: Vec::new(),
            create: false,
        };
        let stats = Arc::new(Stats::default());
        let r = Arc::new(Registrar::new(flaky.clone(), vec![table], stats.clone()));
        let task = {
            let r = r.clone();
            tokio::spawn(async move {
                r.ensure(&[
                    part("date=2024-01-02"),
                    part("date=2024-01-01"),
                    part("date=2024-01-02"),
                ])
                .await
            })
        };
        // While the catalog refuses, the registrar says so (the consumer pauses on it).
        let mut saw_stall = false;
        while !task.is_finished() {
            saw_stall |= r.stalled();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.await.unwrap().unwrap();
        assert!(saw_stall);
        assert!(!r.stalled());
        assert_eq!(stats.metrics.catalog_retries.get(), 2);
        // The partition the catalog already had is not registered again; the new one once.
        assert_eq!(
            *flaky.registered.lock().unwrap(),
            vec!["date=2024-01-02".to_string()]
        );
        // Cached: no further call for known partitions, and the table is loaded once.
        r.ensure(&[part("date=2024-01-02")]).await.unwrap();
        assert_eq!(flaky.registered.lock().unwrap().len(), 1);
        assert_eq!(flaky.loads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn http_errors_are_classified() {
        assert!(http_error("x", "y", Some(503), String::new()).is_transient());
        assert!(http_error("x", "y", Some(429), String::new()).is_transient());
        assert!(http_error("x", "y", None, String::new()).is_transient());
        assert!(!http_error("x", "y", Some(403), String::new()).is_transient());
        assert!(!http_error("x", "y", Some(400), String::new()).is_transient());
    }
}
