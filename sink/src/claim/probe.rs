//! What `lakesink check` and the daemon's start ask of the store (does it refuse a second
//! create-only write?), and the names a writer signs its claims and files with.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

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

/// A token of this process, random at its start (8 hex digits): what names a file on a store
/// that does not fence writers ([`crate::claim::Claims::unfenced`]).
pub fn writer_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| format!("{:08x}", rand::random::<u32>()))
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
