//! The behaviours every catalog must show, run against each one (as object_store's
//! `integration` module does for its stores): the in-memory catalog in unit tests; AWS Glue
//! (moto), the Hive Metastore and the webhook in the end-to-end tests.
//!
//! 1. `load` of a table that may be created answers (with no partition where it can list);
//! 2. `register` of new partitions succeeds, and again for the same ones ("already exists" is
//!    success);
//! 3. a new client — a restarted daemon — lists them (where the catalog can list);
//! 4. a refusal is a [`CatalogError::Refused`] (the daemon stops), not a retry;
//! 5. an unreachable catalog is transient ([`CatalogError::is_transient`]: the daemon waits).
//!
//! Each check panics with the catalog's kind and what it did instead.

use std::sync::Arc;

use super::{Catalog, CatalogError, CatalogTable, FileFacts, NewPartition, SealedPartition};

/// A catalog under test.
pub struct Subject {
    /// A client, and a way to make another one (a restart).
    pub catalog: Arc<dyn Catalog>,
    pub reopen: Box<dyn Fn() -> Arc<dyn Catalog>>,
    /// A table the suite may create (`create = true`), not there yet, partitioned by
    /// `date` and `hour`.
    pub table: CatalogTable,
    /// Whether the catalog can list what it has (Glue, Hive: yes; a webhook: no).
    pub lists: bool,
    /// A client and table whose registration the catalog refuses.
    pub refusing: (Arc<dyn Catalog>, CatalogTable),
    /// A client that cannot reach the catalog.
    pub unreachable: Arc<dyn Catalog>,
}

/// A new partition `date=…/hour=…` of `t`, with one object.
pub fn partition(t: &CatalogTable, date: &str, hour: &str) -> NewPartition {
    let path = format!("date={date}/hour={hour}");
    NewPartition {
        table: t.name.clone(),
        location: format!("{}{path}/", t.location),
        files: vec![FileFacts {
            key: format!("{path}/t+0+{:020}.json.gz", 0),
            records: 1,
            bytes: 100,
            crc32: 0,
            min_event_micros: 0,
            max_event_micros: 0,
        }],
        path,
    }
}

/// Runs every behaviour against `s`.
pub async fn check(s: Subject) {
    let kind = s.catalog.kind();
    let t = &s.table;

    // 1. A table that may be created.
    let listed = s
        .catalog
        .load(t)
        .await
        .unwrap_or_else(|e| panic!("{kind}: load of a new table: {e}"));
    match (&listed, s.lists) {
        (Some(paths), true) => assert!(paths.is_empty(), "{kind}: a new table lists {paths:?}"),
        (None, false) => {}
        (other, lists) => panic!("{kind}: load answered {other:?}, lists = {lists}"),
    }

    // 2. Register, and again.
    let (a, b) = (
        partition(t, "2024-01-02", "01"),
        partition(t, "2024-01-02", "02"),
    );
    for round in ["", " again (already exists)"] {
        s.catalog
            .register(t, &[&a, &b])
            .await
            .unwrap_or_else(|e| panic!("{kind}: register{round}: {e}"));
    }

    // 3. A restarted daemon lists them.
    if s.lists {
        let mut paths = (s.reopen)()
            .load(t)
            .await
            .unwrap_or_else(|e| panic!("{kind}: load after a restart: {e}"))
            .unwrap_or_else(|| panic!("{kind}: lists nothing after a restart"));
        paths.sort();
        assert_eq!(
            paths,
            vec![a.path.clone(), b.path.clone()],
            "{kind}: after a restart"
        );
    }

    // 3b. A registered partition is sealed, and sealed again with the same generation (a
    // repair after a crash) or the next one.
    for generation in [1, 1, 2] {
        let sealed = SealedPartition {
            path: a.path.clone(),
            location: a.location.clone(),
            generation,
            records: 1,
            bytes: 100,
            files: 1,
            watermark: "2024-01-02T03:00:00Z".into(),
            manifest_key: format!("{}/_lakesink_manifest.json", a.path),
            manifest: serde_json::json!({"generation": generation}),
        };
        s.catalog
            .seal(t, &sealed)
            .await
            .unwrap_or_else(|e| panic!("{kind}: seal generation {generation}: {e}"));
    }

    // 4. A refusal stops; it is not retried.
    let (client, refused_table) = &s.refusing;
    let p = partition(refused_table, "2024-01-03", "00");
    let result = match client.load(refused_table).await {
        Ok(_) => client.register(refused_table, &[&p]).await,
        Err(e) => Err(e),
    };
    match result {
        Err(e @ CatalogError::Refused { .. }) => assert!(!e.is_transient(), "{kind}: {e}"),
        other => panic!("{kind}: expected a refusal, got {other:?}"),
    }

    // 5. Unreachable: transient.
    let c = &s.unreachable;
    let result = match c.load(t).await {
        Ok(_) => c.register(t, &[&a]).await,
        Err(e) => Err(e),
    };
    match result {
        Err(e) => assert!(
            e.is_transient(),
            "{kind}: unreachable must be transient: {e}"
        ),
        Ok(()) => panic!("{kind}: an unreachable catalog answered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::memory::MemoryCatalog;

    fn table(name: &str, create: bool) -> CatalogTable {
        let plan = crate::config::Plan::with_tables(&format!(
            "[[tables]]\nname = \"{name}\"\ntopics = [\"t\"]\n"
        ));
        let mut t = crate::catalog::tables(&plan, "memory://lake").remove(0);
        t.database = "logs".into();
        t.create = create;
        t
    }

    #[tokio::test]
    async fn the_memory_catalog_conforms() {
        let shared = MemoryCatalog::default();
        let down = MemoryCatalog::default();
        down.set_down(true);
        let again = shared.clone();
        check(Subject {
            catalog: Arc::new(shared.clone()),
            reopen: Box::new(move || Arc::new(again.clone())),
            table: table("cloudtrail", true),
            lists: true,
            refusing: (Arc::new(shared), table("missing", false)),
            unreachable: Arc::new(down),
        })
        .await;
    }

    #[tokio::test]
    async fn a_missing_table_that_may_not_be_created_is_told_apart() {
        let c = MemoryCatalog::default();
        let e = c.load(&table("missing", false)).await.unwrap_err();
        assert!(e.is_no_such_table() && !e.is_transient(), "{e}");
        c.set_down(true);
        let e = c.load(&table("missing", false)).await.unwrap_err();
        assert!(!e.is_no_such_table(), "{e}");
    }
}
