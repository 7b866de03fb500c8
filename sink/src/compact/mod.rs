//! Compaction: a sealed partition's many small files rewritten into few large ones, without a
//! reader ever seeing a record twice or missing one.
//!
//! A compaction of table `t`'s partition `p` (`[tables.compact]`, a catalog that holds partition
//! locations: Glue or the Hive Metastore):
//!
//! 1. joins the files its newest seal lists without decoding them (gzip NDJSON: their members
//!    concatenated, a multi-member gzip file every gzip reader reads whole; Parquet: their row
//!    groups' column chunks copied as bytes, see [`parquet`]) into objects of about
//!    `target_size`, under a directory of its own, `{t}/{p}/_c{number}-{token}/` (a name
//!    starting with `_`, which readers of the partition's old directory skip);
//! 2. creates its record `_lakesink/compactions/{t}/{p}/{number}.json`, create-only: which files
//!    it replaced and which it wrote. Of two compactors only one creates it; the other deletes
//!    what it wrote. Until the record exists nothing points at the new objects;
//! 3. moves the catalog's partition to the new directory in one call (`UpdatePartition`,
//!    `alter_partition`): a query reads the old files or the new ones, never both;
//! 4. seals the partition again (the next generation, its files the compacted ones, its
//!    manifest copy and `_SUCCESS` in the new directory);
//! 5. after `grace` (queries that started before step 3 may still read the old files), deletes
//!    the replaced files and the old directory's manifest copy and `_SUCCESS`, and marks the
//!    record done (`{number}.deleted`).
//!
//! A crash before step 2 leaves objects nothing points at (`verify` names them orphans; the
//! next compaction writes under another token). After step 2, every run first finishes the
//! newest compaction: steps 3 and 4 are repeated when the newest seal does not name its
//! directory, and step 5 once `grace` has passed. A file that lands in the partition after a
//! compaction (a late record) is outside its directory: the next run compacts again, the
//! compacted files and the late one together. The sealer never lists a replaced file again (a
//! replay that rewrote one brings it back to the old directory, not into a seal). See
//! `docs/DESIGN.md`.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, CatalogTable};
use crate::config::{CompactPlan, Plan};
mod lease;
mod parquet;
mod stream;
pub use parquet::JoinError;

pub use crate::seal::compactions::{
    index, records, replaced, table_records, Compaction, COMPACTIONS_DIR,
};
use crate::seal::manifest::{Manifest, ManifestFile, MANIFEST, SUCCESS};
use crate::seal::{SealError, Sealer};
use crate::storage::under_root as under;

/// Parts of a compacted object held in memory at once (each [`PART`] bytes).
const PART: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("compaction of {table}/{path}: {key}: {source}")]
    Store {
        table: String,
        path: String,
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("joining Parquet files: {0}")]
    Join(#[from] JoinError),
    #[error("compaction of {table}/{path}: moving the catalog's partition: {source}")]
    Catalog {
        table: String,
        path: String,
        #[source]
        source: CatalogError,
    },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("no table named {0} compacts (a [tables.compact] section)")]
    NoSuchTable(String),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("opening the catalog: {0}")]
    Open(#[source] CatalogError),
}

/// What `lakesink compact` did to one partition.
#[derive(Debug, Clone, Serialize)]
pub struct Done {
    pub table: String,
    pub path: String,
    /// `compacted`, `would compact` (`--dry-run`), `finished` (a crashed compaction's catalog
    /// move and seal repeated), `deleted` (replaced files after `grace`).
    pub action: &'static str,
    pub files_before: usize,
    pub files_after: usize,
    pub bytes: u64,
    pub records: u64,
}

/// What to compact.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub table: Option<String>,
    /// Only partitions whose time span ends after `from` and at or before `to`.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    pub dry_run: bool,
}

/// A table that compacts.
struct Table {
    name: String,
    catalog: CatalogTable,
    plan: CompactPlan,
    /// How inputs of another schema are encoded again (Parquet tables).
    parquet: Option<Arc<crate::encode::parquet::ParquetOptions>>,
}

/// Compacts the sealed partitions of a lake's tables.
pub struct Compactor {
    store: Arc<dyn ObjectStore>,
    root: String,
    /// `storage.url` without a trailing slash: locations for the catalog.
    url: String,
    sealer: Sealer,
    catalog: Arc<dyn Catalog>,
    tables: Vec<Table>,
    /// Partitions (table, path) with a compaction whose replaced files are not deleted yet:
    /// [`Compactor::run_sealed`] visits them again, besides the partitions sealed since.
    waiting: Mutex<BTreeSet<(String, String)>>,
    /// How long another compactor's lease keeps this one away ([`lease::LEASE`]).
    lease: std::time::Duration,
}

/// Step 5 of a compaction, as a pass found it.
enum Deletion {
    /// Deleted by this pass.
    Now,
    /// Deleted before.
    Before,
    /// `grace` has not passed yet.
    NotYet,
}

impl Compactor {
    pub fn new(
        plan: &Plan,
        lake: &crate::storage::Lake,
        catalog: Arc<dyn Catalog>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Compactor {
        let catalog_tables = crate::catalog::tables(plan, &lake.url);
        let tables = plan
            .tables
            .iter()
            .filter_map(|t| {
                Some(Table {
                    name: t.name.clone(),
                    catalog: catalog_tables.iter().find(|c| c.name == t.name)?.clone(),
                    plan: t.compact?,
                    parquet: t.parquet_options.clone(),
                })
            })
            .collect();
        Compactor {
            store: lake.store.clone(),
            root: lake.root.as_ref().trim_matches('/').to_string(),
            url: lake.url.trim_end_matches('/').to_string(),
            sealer: Sealer::new(
                plan,
                lake.store.clone(),
                lake.root.as_ref(),
                catalog.clone(),
                catalog_tables,
                metrics,
            ),
            catalog,
            tables,
            waiting: Mutex::new(BTreeSet::new()),
            lease: lease::LEASE,
        }
    }

    /// Whether any table compacts by itself (`auto = true`).
    pub fn auto(&self) -> bool {
        self.tables.iter().any(|t| t.plan.auto)
    }

    /// One pass over every sealed partition of the tables that compact (or of `options.table`).
    pub async fn run(&self, options: &Options) -> Result<Vec<Done>, CompactError> {
        if let Some(name) = &options.table {
            if !self.tables.iter().any(|t| &t.name == name) {
                return Err(CompactError::NoSuchTable(name.clone()));
            }
        }
        let mut done = Vec::new();
        for t in &self.tables {
            if options.table.as_ref().is_some_and(|n| n != &t.name) {
                continue;
            }
            for path in self.sealed_paths(&t.name).await? {
                done.extend(self.partition(t, &path, options).await?);
            }
        }
        Ok(done)
    }

    /// One pass over the partitions in `sealed` (table, path: sealed again since the last
    /// pass, as the daemon's sealer reports them) and those waiting for their grace to pass:
    /// what the daemon runs (`auto = true`) after one full [`Compactor::run`]. Only a seal
    /// brings a partition new files, so the others have nothing due; a full pass would read
    /// every partition's records each minute, more as the lake grows.
    pub async fn run_sealed(
        &self,
        sealed: &BTreeSet<(String, String)>,
    ) -> Result<Vec<Done>, CompactError> {
        let mut visit = self.waiting.lock().expect("waiting lock").clone();
        visit.extend(sealed.iter().cloned());
        let mut done = Vec::new();
        for (table, path) in visit {
            if let Some(t) = self.tables.iter().find(|t| t.name == table) {
                done.extend(self.partition(t, &path, &Options::default()).await?);
            }
        }
        Ok(done)
    }

    /// The paths of a table's sealed partitions (from the seal records).
    async fn sealed_paths(&self, table: &str) -> Result<Vec<String>, CompactError> {
        let prefix = under(
            &self.root,
            &format!("{}/{table}/", crate::seal::manifest::SEALS_DIR),
        );
        let dir = Path::from(prefix.trim_end_matches('/'));
        let listed: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|source| self.error(table, "", dir.as_ref(), source))?;
        let mut paths: Vec<String> = listed
            .iter()
            .filter_map(|m| {
                let rest = m.location.as_ref().strip_prefix(&prefix)?;
                Some(rest.rsplit_once('/')?.0.to_string())
            })
            .collect();
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Finishes the partition's newest compaction if a crash left it unfinished, deletes what
    /// its compactions replaced once `grace` has passed, and compacts the partition if it is
    /// due. Notes whether a deletion still waits for its grace.
    async fn partition(
        &self,
        t: &Table,
        path: &str,
        options: &Options,
    ) -> Result<Vec<Done>, CompactError> {
        let mut waiting = false;
        let done = self.partition_steps(t, path, options, &mut waiting).await?;
        let key = (t.name.clone(), path.to_string());
        let mut w = self.waiting.lock().expect("waiting lock");
        if waiting {
            w.insert(key);
        } else {
            w.remove(&key);
        }
        Ok(done)
    }

    async fn partition_steps(
        &self,
        t: &Table,
        path: &str,
        options: &Options,
        waiting: &mut bool,
    ) -> Result<Vec<Done>, CompactError> {
        let dry_run = options.dry_run;
        let mut done = Vec::new();
        let history = records(&self.store, &self.root, &t.name, path)
            .await
            .map_err(|source| self.error(&t.name, path, COMPACTIONS_DIR, source))?;
        let last = history.last();
        let Some(mut m) = self.sealer.newest(&t.name, path).await? else {
            return Ok(done);
        };
        let ends = chrono::DateTime::parse_from_rfc3339(&m.span_end).ok();
        let outside_window = ends.is_some_and(|end| {
            options.from.is_some_and(|from| end <= from) || options.to.is_some_and(|to| end > to)
        });
        if outside_window {
            return Ok(done);
        }
        if let Some(c) = last {
            let finished = m.location.as_deref() == Some(c.location.as_str())
                && !m.files.iter().any(|f| c.replaced.contains(&f.key));
            if !finished && !dry_run {
                m = self.switch(t, c).await?;
                done.push(self.done(c, "finished", c.replaced.len()));
            }
        }
        // Every compaction's replaced files, not only the newest's: a partition compacted
        // again within the grace of the one before still deletes what that one replaced.
        for c in history.iter().filter(|_| !dry_run) {
            self.delete_step(c, &mut done, waiting).await?;
        }
        // Files the catalog's location does not hold (a late record written before the
        // compaction was known, or while it ran) are due at once: readers miss them until
        // then. Late files written into the compaction's directory are read already; they are
        // joined with its files once there are `min_files` of them.
        let dir = format!("{}/", under(&self.root, &m.dir()));
        let outside = m.files.iter().filter(|f| !f.key.starts_with(&dir)).count();
        let due = match last {
            None => m.files.len() >= t.plan.min_files,
            Some(c) => {
                let added = m
                    .files
                    .iter()
                    .filter(|f| !c.files.iter().any(|o| o.key == f.key))
                    .count();
                outside > 0 || added >= t.plan.min_files
            }
        };
        if !due {
            return Ok(done);
        }
        if dry_run {
            done.push(Done {
                table: t.name.clone(),
                path: path.to_string(),
                action: "would compact",
                files_before: m.files.len(),
                files_after: m
                    .files
                    .iter()
                    .map(|f| f.bytes)
                    .sum::<u64>()
                    .div_ceil(t.plan.target_size)
                    .max(1) as usize,
                bytes: m.bytes,
                records: m.records,
            });
            return Ok(done);
        }
        let number = last.map_or(1, |c| c.number + 1);
        let location = format!(
            "{}/{path}/_c{number:06}-{}",
            t.name,
            crate::claim::writer_token()
        );
        let taken = lease::take(&self.store, &self.root, &t.name, path, number, self.lease)
            .await
            .map_err(|source| self.error(&t.name, path, "its lease", source))?;
        if taken == lease::Lease::Held {
            // Another compactor is at it: look again at the next pass.
            tracing::info!(table = %t.name, path, number, "another compactor holds this partition's lease");
            *waiting = true;
            return Ok(done);
        }
        let files = match self.write(t, path, &m, &location).await {
            Ok(files) => files,
            Err(e) => {
                lease::release(&self.store, &self.root, &t.name, path, number).await;
                return Err(e);
            }
        };
        let now = chrono::Utc::now();
        let c = Compaction {
            table: t.name.clone(),
            path: path.to_string(),
            number,
            seal_generation: m.generation,
            location,
            files,
            replaced: m.files.iter().map(|f| f.key.clone()).collect(),
            replaced_dir: m.dir(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            delete_after: (now
                + chrono::Duration::from_std(t.plan.grace).unwrap_or(chrono::Duration::zero()))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let key = under(
            &self.root,
            &format!("{COMPACTIONS_DIR}/{}/{path}/{number:06}.json", t.name),
        );
        let body = serde_json::to_vec_pretty(&c).expect("a compaction serializes");
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let recorded = self
            .store
            .put_opts(&Path::from(key.as_str()), PutPayload::from(body), opts)
            .await;
        lease::release(&self.store, &self.root, &t.name, path, number).await;
        match recorded {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                // Another compactor recorded this number first: what this one wrote is unused.
                for f in &c.files {
                    let _ = self.store.delete(&Path::from(f.key.as_str())).await;
                }
                return Ok(done);
            }
            Err(source) => return Err(self.error(&t.name, path, &key, source)),
        }
        tracing::info!(table = %t.name, path, number, files_before = c.replaced.len(), files_after = c.files.len(), location = %c.location, "partition compacted");
        crate::failpoint::hit("compact-after-record", &format!("{}/{path}", t.name));
        self.switch(t, &c).await?;
        done.push(self.done(&c, "compacted", c.replaced.len()));
        self.delete_step(&c, &mut done, waiting).await?;
        Ok(done)
    }

    fn done(&self, c: &Compaction, action: &'static str, before: usize) -> Done {
        Done {
            table: c.table.clone(),
            path: c.path.clone(),
            action,
            files_before: before,
            files_after: c.files.len(),
            bytes: c.files.iter().map(|f| f.bytes).sum(),
            records: c.files.iter().map(|f| f.records).sum(),
        }
    }

    /// Steps 3 and 4: the catalog's partition moved to the compaction's directory, and the
    /// partition sealed with the compacted files in place of the replaced ones. Returns the
    /// seal that names them.
    async fn switch(&self, t: &Table, c: &Compaction) -> Result<Manifest, CompactError> {
        // (`storage.url` holds the root already.)
        let location = format!("{}/{}/", self.url, c.location);
        self.catalog
            .relocate(&t.catalog, &c.path, &location)
            .await
            .map_err(|source| CompactError::Catalog {
                table: t.name.clone(),
                path: c.path.clone(),
                source,
            })?;
        crate::failpoint::hit("compact-after-relocate", &format!("{}/{}", t.name, c.path));
        for _ in 0..5 {
            let newest = self
                .sealer
                .newest(&t.name, &c.path)
                .await?
                .expect("a compacted partition is sealed");
            let replaced: HashSet<&str> = c.replaced.iter().map(String::as_str).collect();
            let settled = newest.location.as_deref() == Some(c.location.as_str())
                && !newest
                    .files
                    .iter()
                    .any(|f| replaced.contains(f.key.as_str()));
            if settled {
                self.sealer.publish(&newest).await?;
                return Ok(newest);
            }
            let mut files: Vec<ManifestFile> = newest
                .files
                .iter()
                .filter(|f| !replaced.contains(f.key.as_str()))
                .cloned()
                .collect();
            files.extend(c.files.iter().cloned());
            let next = newest.with_files(Some(c.location.clone()), files);
            if self.sealer.create(&next).await? {
                self.sealer.publish(&next).await?;
                return Ok(next);
            }
        }
        Err(CompactError::Seal(SealError::Contended {
            table: t.name.clone(),
            path: c.path.clone(),
            attempts: 5,
        }))
    }

    /// Step 5 for compaction `c`, as the pass reports it: a `deleted` in `done`, or the
    /// partition noted as `waiting` while the grace has not passed.
    async fn delete_step(
        &self,
        c: &Compaction,
        done: &mut Vec<Done>,
        waiting: &mut bool,
    ) -> Result<(), CompactError> {
        match self.delete_due(c).await? {
            Deletion::Now => done.push(self.done(c, "deleted", c.replaced.len())),
            Deletion::NotYet => *waiting = true,
            Deletion::Before => {}
        }
        Ok(())
    }

    /// Step 5, once `grace` has passed and unless done: deletes the replaced files and the old
    /// directory's manifest copy and `_SUCCESS`.
    async fn delete_due(&self, c: &Compaction) -> Result<Deletion, CompactError> {
        let due = chrono::DateTime::parse_from_rfc3339(&c.delete_after)
            .is_ok_and(|t| t <= chrono::Utc::now());
        if !due {
            return Ok(Deletion::NotYet);
        }
        let marker = under(
            &self.root,
            &format!(
                "{COMPACTIONS_DIR}/{}/{}/{:06}.deleted",
                c.table, c.path, c.number
            ),
        );
        match self.store.head(&Path::from(marker.as_str())).await {
            Ok(_) => return Ok(Deletion::Before),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(self.error(&c.table, &c.path, &marker, source)),
        }
        let mut keys: Vec<String> = c.replaced.clone();
        if c.replaced_dir != c.location {
            let old = under(&self.root, &c.replaced_dir);
            keys.push(format!("{old}/{MANIFEST}"));
            keys.push(format!("{old}/{SUCCESS}"));
        }
        // One first, for the crash tests; then the rest, 16 at a time. (Owned futures: a
        // stream of borrowing closures would make this future's `Send` undecidable for the
        // compiler's higher-ranked check.)
        if let Some(first) = keys.first() {
            match self.store.delete(&Path::from(first.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(self.error(&c.table, &c.path, first, source)),
            }
            crate::failpoint::hit("compact-mid-delete", &format!("{}/{}", c.table, c.path));
        }
        let deletes: Vec<_> = keys
            .into_iter()
            .map(|k| {
                let store = self.store.clone();
                async move {
                    match store.delete(&Path::from(k)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
            })
            .collect();
        let results: Vec<Result<(), object_store::Error>> = futures::stream::iter(deletes)
            .buffer_unordered(16)
            .collect()
            .await;
        for r in results {
            r.map_err(|source| self.error(&c.table, &c.path, "a replaced file", source))?;
        }
        self.store
            .put(&Path::from(marker.as_str()), PutPayload::from(Vec::new()))
            .await
            .map_err(|source| self.error(&c.table, &c.path, &marker, source))?;
        tracing::info!(table = %c.table, path = %c.path, number = c.number, files = c.replaced.len(), "replaced files deleted");
        Ok(Deletion::Now)
    }

    /// Step 1: the files of seal `m`, by key, concatenated into objects of about
    /// `target_size` under `location`.
    async fn write(
        &self,
        t: &Table,
        path: &str,
        m: &Manifest,
        location: &str,
    ) -> Result<Vec<ManifestFile>, CompactError> {
        let mut groups: Vec<Vec<&ManifestFile>> = Vec::new();
        let mut size = 0u64;
        for f in &m.files {
            if groups.is_empty() || (size > 0 && size + f.bytes > t.plan.target_size) {
                groups.push(Vec::new());
                size = 0;
            }
            groups.last_mut().expect("a group").push(f);
            size += f.bytes;
        }
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            if !group.iter().any(|f| f.key.ends_with(".parquet")) {
                let key = under(
                    &self.root,
                    &format!("{location}/part-{:05}.json.gz", out.len()),
                );
                out.push(self.concat_gzip(t, path, key, &group).await?);
                continue;
            }
            // Parquet: one output, or one per run of files whose schemas do not convert.
            let joined = stream::join(
                &self.store,
                stream::Group {
                    table: &t.name,
                    path,
                    files: &group,
                    prefix: under(&self.root, &format!("{location}/part-")),
                    first: out.len(),
                    options: t.parquet.clone(),
                },
            )
            .await?;
            out.extend(joined);
        }
        Ok(out)
    }

    /// One object, whole (a file is at most `rotate.max_bytes`).
    async fn fetch(&self, t: &Table, path: &str, key: &str) -> Result<bytes::Bytes, CompactError> {
        async { self.store.get(&Path::from(key)).await?.bytes().await }
            .await
            .map_err(|source| self.error(&t.name, path, key, source))
    }

    /// gzip NDJSON files concatenated into `key`, member after member (each read whole, one
    /// request, rather than as a stream of small chunks).
    async fn concat_gzip(
        &self,
        t: &Table,
        path: &str,
        key: String,
        group: &[&ManifestFile],
    ) -> Result<ManifestFile, CompactError> {
        let upload = self
            .store
            .put_multipart(&Path::from(key.as_str()))
            .await
            .map_err(|source| self.error(&t.name, path, &key, source))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut crc = crc32fast::Hasher::new();
        let mut bytes = 0u64;
        for f in group {
            let whole = self.fetch(t, path, &f.key).await?;
            w.wait_for_capacity(2)
                .await
                .map_err(|source| self.error(&t.name, path, &key, source))?;
            crc.update(&whole);
            bytes += whole.len() as u64;
            w.put(whole);
        }
        w.finish()
            .await
            .map_err(|source| self.error(&t.name, path, &key, source))?;
        Ok(facts(key, group, bytes, crc.finalize()))
    }

    fn error(
        &self,
        table: &str,
        path: &str,
        key: &str,
        source: object_store::Error,
    ) -> CompactError {
        CompactError::Store {
            table: table.to_string(),
            path: path.to_string(),
            key: key.to_string(),
            source,
        }
    }
}

/// What a compacted file records: the files it replaced summed, and its own size and CRC-32.
fn facts(key: String, group: &[&ManifestFile], bytes: u64, crc32: u32) -> ManifestFile {
    let times = |pick: fn(&ManifestFile) -> &Option<String>, newest: bool| {
        let mut v: Vec<&String> = group.iter().filter_map(|f| pick(f).as_ref()).collect();
        v.sort();
        if newest { v.last() } else { v.first() }.map(|s| (*s).clone())
    };
    ManifestFile {
        key,
        records: group.iter().map(|f| f.records).sum(),
        bytes,
        crc32,
        min_event_time: times(|f| &f.min_event_time, false),
        max_event_time: times(|f| &f.max_event_time, true),
        offsets: group
            .iter()
            .flat_map(|f| f.offsets.iter().cloned())
            .collect(),
    }
}

/// `lakesink compact`: one pass of a [`Compactor`] over the lake of `plan`.
pub async fn run(plan: &Plan, options: &Options) -> Result<Vec<Done>, CompactError> {
    let lake = crate::storage::open(&plan.storage)?;
    let catalog = crate::catalog::open(plan).map_err(CompactError::Open)?;
    let compactor = Compactor::new(
        plan,
        &lake,
        catalog,
        Arc::new(crate::metrics::Metrics::default()),
    );
    compactor.run(options).await
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_parquet;
