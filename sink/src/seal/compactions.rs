//! The records of compactions (see [`crate::compact`]): which files a compaction of a
//! partition replaced, and which it wrote. Kept here, beside the seals, because the sealer must
//! never list a replaced file again, and `lakesink verify` must know both.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::manifest::ManifestFile;
use crate::storage::under_root as under;

/// Where the compaction records live below the store root.
pub const COMPACTIONS_DIR: &str = "_lakesink/compactions";

/// One compaction of a partition, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    pub table: String,
    pub path: String,
    /// 1 for the partition's first compaction.
    pub number: u32,
    /// The seal generation whose files it compacted.
    pub seal_generation: u32,
    /// The directory of its files, below the store root.
    pub location: String,
    /// The files it wrote, with the offsets of every file each replaced.
    pub files: Vec<ManifestFile>,
    /// The keys of the files it replaced, and the directory of their manifest copy.
    pub replaced: Vec<String>,
    pub replaced_dir: String,
    pub created_at: String,
    /// When the replaced files may be deleted (RFC 3339).
    pub delete_after: String,
}

/// The compaction records of a partition, by number.
pub async fn records(
    store: &Arc<dyn ObjectStore>,
    root: &str,
    table: &str,
    path: &str,
) -> Result<Vec<Compaction>, object_store::Error> {
    let dir = Path::from(under(root, &format!("{COMPACTIONS_DIR}/{table}/{path}")));
    read_records(store, &dir).await
}

/// Every compaction record of a table.
pub async fn table_records(
    store: &Arc<dyn ObjectStore>,
    root: &str,
    table: &str,
) -> Result<Vec<Compaction>, object_store::Error> {
    let dir = Path::from(under(root, &format!("{COMPACTIONS_DIR}/{table}")));
    read_records(store, &dir).await
}

async fn read_records(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
) -> Result<Vec<Compaction>, object_store::Error> {
    let listed: Vec<object_store::ObjectMeta> = store.list(Some(dir)).try_collect().await?;
    let mut out = Vec::new();
    for m in listed
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".json"))
    {
        let bytes = store.get(&m.location).await?.bytes().await?;
        match serde_json::from_slice::<Compaction>(&bytes) {
            Ok(c) => out.push(c),
            Err(e) => {
                return Err(object_store::Error::Generic {
                    store: "compactions",
                    source: format!("{} is unreadable: {e}", m.location).into(),
                })
            }
        }
    }
    out.sort_by(|a, b| (&a.path, a.number).cmp(&(&b.path, b.number)));
    Ok(out)
}

/// The directory a partition's new files go to, below the store root: its newest compaction's
/// (where the catalog points, or will once a crashed compaction is finished), or `None` for a
/// partition never compacted (its own directory).
pub async fn location(
    store: &Arc<dyn ObjectStore>,
    root: &str,
    table: &str,
    path: &str,
) -> Result<Option<String>, object_store::Error> {
    Ok(records(store, root, table, path)
        .await?
        .pop()
        .map(|c| c.location))
}

/// Bytes a compaction's directory adds below a partition's: `/_c{6 digits}-{8 hex digits}`.
pub const DIR_BYTES: usize = "/_c000001-0123abcd".len();

/// The partition directory of an object's directory: itself, or its parent when it is a
/// compaction's directory (`…/_c000001-0123abcd`, see [`crate::compact`]), where late files of
/// a compacted partition go.
pub fn partition_dir(dir: &str) -> &str {
    match dir.rsplit_once('/') {
        Some((parent, last)) if is_compaction_dir(last) => parent,
        _ => dir,
    }
}

/// Whether a path component names a compaction's directory: `_c`, 6 digits, `-`, 8 hex digits.
fn is_compaction_dir(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == DIR_BYTES - 1
        && name.starts_with("_c")
        && b[2..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..].iter().all(u8::is_ascii_hexdigit)
}

/// The keys of every file a compaction of the partition replaced.
pub async fn replaced(
    store: &Arc<dyn ObjectStore>,
    root: &str,
    table: &str,
    path: &str,
) -> Result<HashSet<String>, object_store::Error> {
    Ok(records(store, root, table, path)
        .await?
        .into_iter()
        .flat_map(|c| c.replaced)
        .collect())
}

/// Per key, the compaction files of a table's records, and the keys they replaced: what
/// `lakesink verify` needs to understand a compacted partition.
pub fn index(records: &[Compaction]) -> (BTreeMap<String, ManifestFile>, HashSet<String>) {
    let mut written = BTreeMap::new();
    let mut replaced = HashSet::new();
    for c in records {
        for f in &c.files {
            written.insert(f.key.clone(), f.clone());
        }
        replaced.extend(c.replaced.iter().cloned());
    }
    (written, replaced)
}
