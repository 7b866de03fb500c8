//! A compaction's lease: before writing anything, a compactor creates
//! `_lakesink/compactions/{table}/{path}/{number}.lease` (create-only), so two compactors (the
//! cron command beside a daemon with `auto = true`, or two daemons) do not compact one
//! partition at the same time. A lease older than [`LEASE`] is taken to belong to a compactor
//! that stopped before recording its compaction, and is ignored. Correctness never rests on
//! the lease: of two compactors that both write, only the one that creates the record
//! compacts; the lease only spares the other the work.

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::storage::under_root as under;

/// How long a lease keeps other compactors away.
pub(super) const LEASE: Duration = Duration::from_secs(15 * 60);

/// What [`take`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Lease {
    /// This compactor holds it (created now, or found stale).
    Taken,
    /// Another compactor took it less than the lease's time ago.
    Held,
}

fn key(root: &str, table: &str, path: &str, number: u32) -> Path {
    Path::from(under(
        root,
        &format!(
            "{}/{table}/{path}/{number:06}.lease",
            super::COMPACTIONS_DIR
        ),
    ))
}

/// Takes the lease of compaction `number` of a partition, unless another compactor holds it
/// (one taken less than `ttl` ago).
pub(super) async fn take(
    store: &Arc<dyn ObjectStore>,
    root: &str,
    table: &str,
    path: &str,
    number: u32,
    ttl: Duration,
) -> Result<Lease, object_store::Error> {
    let key = key(root, table, path, number);
    let body = serde_json::json!({
        "writer": crate::claim::writer_id(),
        "token": crate::claim::writer_token(),
        "taken_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let body = PutPayload::from(serde_json::to_vec(&body).expect("a lease serializes"));
    match store.put_opts(&key, body, opts).await {
        Ok(_) => Ok(Lease::Taken),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let held = store.head(&key).await?;
            let age = chrono::Utc::now() - held.last_modified;
            let stale = age.to_std().is_ok_and(|age| age >= ttl);
            if stale {
                tracing::warn!(table, path, number, taken = %held.last_modified, "a compaction's lease is stale (its compactor stopped before recording it): compacting");
                Ok(Lease::Taken)
            } else {
                Ok(Lease::Held)
            }
        }
        Err(e) => Err(e),
    }
}

/// Gives the lease back once the compaction is recorded (or abandoned). A lease left by a
/// crash is harmless: the next compaction has the next number.
pub(super) async fn release(
    store: &Arc<dyn ObjectStore>,
    root: &str,
    table: &str,
    path: &str,
    number: u32,
) {
    let _ = store.delete(&key(root, table, path, number)).await;
}
