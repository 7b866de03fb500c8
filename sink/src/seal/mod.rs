//! Sealing: a partition whose time span ends below its table's watermark gets a manifest of
//! every object in it, once; late records re-seal it with the next generation.
//!
//! Every few seconds the daemon ([`crate::upkeep`]) computes the tables' watermarks
//! ([`crate::watermark`]) from the claims and the group's offsets, reading only claims it has
//! not seen. The data files of
//! newly committed segments join the *open* partitions they belong to; an open partition
//! whose span ends at or below its table's watermark is sealed:
//!
//! 1. its newest seal record (`_lakesink/seals/{table}/{path}/{generation}.json`) is read; if
//!    it lists every file, the partition is sealed already (by this instance before a restart,
//!    or by another) and only step 3 is made sure of;
//! 2. otherwise the next generation is created, create-only, listing the record's files and
//!    the new ones. Another instance that creates it first wins; this one reads it back and
//!    starts over (its files may be listed there already);
//! 3. the catalog hears of it (partition parameters, a webhook event), then `_SUCCESS` and the
//!    manifest copy `_lakesink_manifest.json` are written in the partition's directory. The
//!    copy is written last and names its generation, so a copy of this generation means all of
//!    step 3 happened; a crash before it is repaired by the next step 1.
//!
//! So each generation is written once whatever the number of instances and crashes, every
//! generation lists every file of the one before, and the copy readers see is never older than
//! the record by more than a crash's repair. See `docs/DESIGN.md`.

pub mod compactions;
pub mod manifest;

use std::collections::HashMap;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::catalog::{Catalog, CatalogError, CatalogTable, SealedPartition};
use crate::config::{Plan, TablePlan};
use crate::watermark::CommittedFile;
use manifest::{Manifest, ManifestFile, Offsets, MANIFEST, SEALS_DIR, SUCCESS};

/// Attempts at sealing one partition when other instances keep sealing it first.
const ATTEMPTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("seal of {table}/{path}: {key}: {source}")]
    Store {
        table: String,
        path: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("seal record {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("seal of {table}/{path}: {source}")]
    Catalog {
        table: String,
        path: String,
        #[source]
        source: CatalogError,
    },
    #[error(
        "seal of {table}/{path}: other instances sealed it {attempts} times while this one tried"
    )]
    Contended {
        table: String,
        path: String,
        attempts: usize,
    },
}

/// A partition with committed files not known to be in a seal yet.
#[derive(Debug)]
struct Open {
    span_end: i64,
    files: Vec<ManifestFile>,
}

/// What the sealer knows of one table.
struct Table {
    plan: TablePlan,
    catalog: Option<CatalogTable>,
}

/// Seals the partitions of a lake's tables (those with `seal = true`).
pub struct Sealer {
    store: Arc<dyn ObjectStore>,
    /// The store root without slashes around it (may be empty).
    root: String,
    catalog: Arc<dyn Catalog>,
    tables: HashMap<String, Table>,
    open: HashMap<(String, String), Open>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Sealer {
    pub fn new(
        plan: &Plan,
        store: Arc<dyn ObjectStore>,
        root: &str,
        catalog: Arc<dyn Catalog>,
        catalog_tables: Vec<CatalogTable>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Sealer {
        let tables = plan
            .tables
            .iter()
            .filter(|t| t.seal)
            .map(|t| {
                let catalog = catalog_tables.iter().find(|c| c.name == t.name).cloned();
                (
                    t.name.clone(),
                    Table {
                        plan: t.clone(),
                        catalog,
                    },
                )
            })
            .collect();
        Sealer {
            store,
            root: root.trim_matches('/').to_string(),
            catalog,
            tables,
            open: HashMap::new(),
            metrics,
        }
    }

    /// Whether any table seals.
    pub fn any(&self) -> bool {
        !self.tables.is_empty()
    }

    fn under(&self, rel: &str) -> String {
        crate::storage::under_root(&self.root, rel)
    }

    /// Adds the files of newly committed segments to their open partitions.
    pub fn committed(&mut self, files: Vec<CommittedFile>) {
        for c in files {
            let (Some(table), Some(path)) = (&c.file.table, &c.file.path) else {
                continue;
            };
            let Some(t) = self.tables.get(table) else {
                continue;
            };
            let Some(at) = c.file.max_event_micros else {
                continue;
            };
            let Some(span_end) = t.plan.partition.span_end(&t.plan.timezone, at) else {
                continue;
            };
            let open = self
                .open
                .entry((table.clone(), path.clone()))
                .or_insert(Open {
                    span_end,
                    files: Vec::new(),
                });
            open.span_end = open.span_end.max(span_end);
            open.files.push(ManifestFile::of(
                &c.file,
                Offsets {
                    topic: c.tp.topic.to_string(),
                    partition: c.tp.partition,
                    generation: c.generation,
                    start: c.start,
                    end: c.end,
                },
            ));
        }
    }

    /// Seals every open partition whose span ends at or below its table's watermark (µs).
    /// Returns the manifests this call wrote. A partition that fails stays open for the next
    /// call; the first error is returned after the others are tried.
    pub async fn seal_due(
        &mut self,
        watermarks: &[(String, Option<i64>)],
    ) -> Result<Vec<Manifest>, SealError> {
        let mut due: Vec<(String, String)> = self
            .open
            .iter()
            .filter(|((table, _), open)| {
                watermarks
                    .iter()
                    .any(|(t, w)| t == table && w.is_some_and(|w| open.span_end <= w))
            })
            .map(|(k, _)| k.clone())
            .collect();
        // Oldest first: hours seal in order.
        due.sort_by_key(|k| (self.open[k].span_end, k.clone()));
        let mut written = Vec::new();
        let mut first_error = None;
        for key in due {
            let open = self.open.remove(&key).expect("due partitions are open");
            let watermark = watermarks
                .iter()
                .find(|(t, _)| t == &key.0)
                .and_then(|(_, w)| *w)
                .expect("due partitions have a watermark");
            match self.seal(&key.0, &key.1, &open, watermark).await {
                Ok(Some(m)) => written.push(m),
                Ok(None) => {}
                Err(e) => {
                    self.open.insert(key, open);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Seals one partition (steps 1–3 of the module docs); `None` when its newest seal lists
    /// every file already.
    async fn seal(
        &self,
        table: &str,
        path: &str,
        open: &Open,
        watermark: i64,
    ) -> Result<Option<Manifest>, SealError> {
        // Files a compaction replaced are in its files already (a replay that rewrote one
        // brings it back to the directory, never into a seal). Only tables that compact have
        // compaction records to read (as only their replays skip replaced files).
        let compacts = self
            .tables
            .get(table)
            .is_some_and(|t| t.plan.compact.is_some());
        let replaced = if compacts {
            compactions::replaced(&self.store, &self.root, table, path)
                .await
                .map_err(|source| self.store_error(table, path, "compactions", source))?
        } else {
            std::collections::HashSet::new()
        };
        for _ in 0..ATTEMPTS {
            let before = self.newest(table, path).await?;
            let new: Vec<ManifestFile> = open
                .files
                .iter()
                .filter(|f| before.as_ref().is_none_or(|m| !m.lists(&f.key)))
                .filter(|f| !replaced.contains(&f.key))
                .cloned()
                .collect();
            if let Some(m) = before.as_ref().filter(|_| new.is_empty()) {
                self.publish(m).await?;
                return Ok(None);
            }
            let m = Manifest::next(before.as_ref(), table, path, new, open.span_end, watermark);
            if !self.create(&m).await? {
                continue;
            }
            tracing::info!(table, path, generation = m.generation, files = m.files.len(), records = m.records, watermark = %m.watermark, "partition sealed");
            crate::failpoint::hit("seal-after-record", &format!("{table}/{path}"));
            self.metrics
                .partitions_sealed
                .get_or_create(&crate::metrics::labels([("table", &Arc::from(table))]))
                .inc();
            self.publish(&m).await?;
            return Ok(Some(m));
        }
        Err(SealError::Contended {
            table: table.to_string(),
            path: path.to_string(),
            attempts: ATTEMPTS,
        })
    }

    /// Step 3: the catalog, `_SUCCESS`, then the manifest copy; skipped when the copy in the
    /// directory is of this generation or a later one.
    pub(crate) async fn publish(&self, m: &Manifest) -> Result<(), SealError> {
        let dir = self.under(&m.dir());
        let copy = Path::from(format!("{dir}/{MANIFEST}"));
        match self.store.get(&copy).await {
            Ok(got) => {
                let bytes = got
                    .bytes()
                    .await
                    .map_err(|source| self.store_error(&m.table, &m.path, copy.as_ref(), source))?;
                if serde_json::from_slice::<Manifest>(&bytes)
                    .is_ok_and(|c| c.generation >= m.generation)
                {
                    return Ok(());
                }
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(self.store_error(&m.table, &m.path, copy.as_ref(), source)),
        }
        if let Some(ct) = self.tables.get(&m.table).and_then(|t| t.catalog.as_ref()) {
            let base = ct.location.trim_end_matches('/');
            let sealed = SealedPartition {
                path: m.path.clone(),
                location: match &m.location {
                    Some(dir) => format!(
                        "{}/{dir}/",
                        base.strip_suffix(&format!("/{}", m.table)).unwrap_or(base)
                    ),
                    None => format!("{base}/{}/", m.path),
                },
                generation: m.generation,
                records: m.records,
                bytes: m.bytes,
                files: m.files.len(),
                watermark: m.watermark.clone(),
                manifest_key: copy.to_string(),
                manifest: serde_json::to_value(m).expect("a manifest serializes"),
            };
            self.catalog
                .seal(ct, &sealed)
                .await
                .map_err(|source| SealError::Catalog {
                    table: m.table.clone(),
                    path: m.path.clone(),
                    source,
                })?;
        }
        crate::failpoint::hit("seal-after-catalog", &format!("{}/{}", m.table, m.path));
        let success = format!("{dir}/{SUCCESS}");
        self.put(&success, Vec::new(), PutMode::Overwrite)
            .await
            .map_err(|source| self.store_error(&m.table, &m.path, &success, source))?;
        crate::failpoint::hit("seal-before-copy", &format!("{}/{}", m.table, m.path));
        let body = serde_json::to_vec_pretty(m).expect("a manifest serializes");
        self.put(copy.as_ref(), body, PutMode::Overwrite)
            .await
            .map_err(|source| self.store_error(&m.table, &m.path, copy.as_ref(), source))
    }

    /// The newest seal record of a partition.
    pub(crate) async fn newest(
        &self,
        table: &str,
        path: &str,
    ) -> Result<Option<Manifest>, SealError> {
        let dir = Path::from(self.under(&format!("{SEALS_DIR}/{table}/{path}")));
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|source| self.store_error(table, path, dir.as_ref(), source))?;
        let Some(newest) = listed
            .iter()
            .filter_map(|m| {
                let g: u32 = m.location.filename()?.strip_suffix(".json")?.parse().ok()?;
                Some((g, &m.location))
            })
            .max_by_key(|(g, _)| *g)
        else {
            return Ok(None);
        };
        let bytes = async { self.store.get(newest.1).await?.bytes().await }
            .await
            .map_err(|source| self.store_error(table, path, newest.1.as_ref(), source))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| SealError::Corrupt {
                key: newest.1.to_string(),
                source,
            })
    }

    /// Creates `m`'s seal record (create-only); `false` when its generation exists already
    /// (another instance wrote it first).
    pub(crate) async fn create(&self, m: &Manifest) -> Result<bool, SealError> {
        let (table, path) = (&m.table, &m.path);
        let key = self.record_key(table, path, m.generation);
        let body = serde_json::to_vec_pretty(m).expect("a manifest serializes");
        match self.put(&key, body.clone(), PutMode::Create).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                self.put(&key, body, PutMode::Overwrite)
                    .await
                    .map_err(|source| self.store_error(table, path, &key, source))?;
                Ok(true)
            }
            Err(source) => Err(self.store_error(table, path, &key, source)),
        }
    }

    fn record_key(&self, table: &str, path: &str, generation: u32) -> String {
        self.under(&format!("{SEALS_DIR}/{table}/{path}/{generation:06}.json"))
    }

    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        mode: PutMode,
    ) -> Result<(), object_store::Error> {
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.store
            .put_opts(&Path::from(key), PutPayload::from(body), opts)
            .await
            .map(|_| ())
    }

    fn store_error(
        &self,
        table: &str,
        path: &str,
        key: &str,
        source: object_store::Error,
    ) -> SealError {
        SealError::Store {
            table: table.to_string(),
            path: path.to_string(),
            key: key.to_string(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
