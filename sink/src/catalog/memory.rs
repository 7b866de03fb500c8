//! A catalog in memory: the conformance suite's reference, and a stand-in for tests. It holds
//! tables and their partition paths, refuses what a real catalog refuses (a missing table that
//! may not be created), and can be made unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::{Catalog, CatalogError, CatalogTable, NewPartition, SealedPartition};

/// Partition paths by `(database, table)`.
type Tables = BTreeMap<(String, String), BTreeSet<String>>;
/// Seal generations by `(database, table, path)`.
type Seals = BTreeMap<(String, String, String), u32>;
/// Partition locations by `(database, table, path)`.
type Locations = BTreeMap<(String, String, String), String>;

/// Tables by `(database, table)`, each with its partition paths. Clones share them.
#[derive(Debug, Default, Clone)]
pub struct MemoryCatalog {
    tables: Arc<Mutex<Tables>>,
    sealed: Arc<Mutex<Seals>>,
    /// Partition locations set by `relocate`, by `(database, table, path)`.
    locations: Arc<Mutex<Locations>>,
    down: Arc<AtomicBool>,
}

impl MemoryCatalog {
    /// While `down`, every call fails as unreachable.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The locations partitions were moved to.
    pub fn locations(&self) -> Locations {
        self.locations.lock().expect("catalog lock").clone()
    }

    /// The seal generation each sealed partition was told of.
    pub fn seals(&self) -> Seals {
        self.sealed.lock().expect("catalog lock").clone()
    }

    /// The key of a registered partition of `t` (refused like a real catalog when it is
    /// not registered).
    fn registered(
        &self,
        t: &CatalogTable,
        path: &str,
    ) -> Result<(String, String, String), CatalogError> {
        self.reachable()?;
        let known = self
            .tables
            .lock()
            .expect("catalog lock")
            .get(&(t.database.clone(), t.table.clone()))
            .is_some_and(|paths| paths.contains(path));
        if !known {
            return Err(CatalogError::Refused {
                catalog: "memory",
                what: format!("partition {}.{} {path}", t.database, t.table),
                message: "no such partition".into(),
            });
        }
        Ok((t.database.clone(), t.table.clone(), path.to_string()))
    }

    fn reachable(&self) -> Result<(), CatalogError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(CatalogError::Unreachable {
                catalog: "memory",
                message: "made unreachable".into(),
            });
        }
        Ok(())
    }
}

impl Catalog for MemoryCatalog {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn load<'a>(
        &'a self,
        t: &'a CatalogTable,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, CatalogError>> {
        Box::pin(async move {
            self.reachable()?;
            let key = (t.database.clone(), t.table.clone());
            let get = || async {
                let tables = self.tables.lock().expect("catalog lock");
                Ok(tables
                    .get(&key)
                    .map(|paths| paths.iter().cloned().collect()))
            };
            let create = || async {
                let mut tables = self.tables.lock().expect("catalog lock");
                tables.entry(key.clone()).or_default();
                Ok(())
            };
            Ok(Some(
                super::table_or_create("memory", t, get, create).await?,
            ))
        })
    }

    fn register<'a>(
        &'a self,
        t: &'a CatalogTable,
        partitions: &'a [&'a NewPartition],
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            self.reachable()?;
            let mut tables = self.tables.lock().expect("catalog lock");
            let have = tables
                .get_mut(&(t.database.clone(), t.table.clone()))
                .ok_or_else(|| CatalogError::Refused {
                    catalog: "memory",
                    what: format!("table {}.{}", t.database, t.table),
                    message: "no such table".into(),
                })?;
            have.extend(partitions.iter().map(|p| p.path.clone()));
            Ok(())
        })
    }

    fn relocate<'a>(
        &'a self,
        t: &'a CatalogTable,
        path: &'a str,
        location: &'a str,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let key = self.registered(t, path)?;
            self.locations
                .lock()
                .expect("catalog lock")
                .insert(key, location.to_string());
            Ok(())
        })
    }

    fn seal<'a>(
        &'a self,
        t: &'a CatalogTable,
        s: &'a SealedPartition,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let key = self.registered(t, &s.path)?;
            let mut sealed = self.sealed.lock().expect("catalog lock");
            let g = sealed.entry(key).or_default();
            *g = (*g).max(s.generation);
            Ok(())
        })
    }
}
