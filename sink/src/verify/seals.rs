//! Sealed partitions: each manifest copy lists exactly the data objects in its directory, with
//! their sizes (objects of segments still in flight aside: a late record's object waits for
//! its commit, then its re-seal).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Checked, Finding, Kind, VerifyError};
use crate::seal::manifest::Manifest;

pub(super) async fn check(
    store: &Arc<dyn ObjectStore>,
    manifests: &[(String, String)],
    listed: &BTreeMap<String, (String, u64)>,
    in_flight: &HashSet<String>,
    findings: &mut Vec<Finding>,
    checked: &mut Checked,
) -> Result<(), VerifyError> {
    for (key, table) in manifests {
        checked.sealed_partitions += 1;
        let finding = |object: Option<&str>, detail: String| Finding {
            kind: Kind::ManifestMismatch,
            table: Some(table.clone()),
            topic: None,
            partition: None,
            generation: None,
            offsets: None,
            key: Some(object.unwrap_or(key).to_string()),
            detail,
        };
        let bytes = async { store.get(&Path::from(key.as_str())).await?.bytes().await }
            .await
            .map_err(|source| VerifyError::Read {
                key: key.clone(),
                source,
            })?;
        let m: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                findings.push(finding(None, format!("the manifest is unreadable: {e}")));
                continue;
            }
        };
        let dir = key.rsplit_once('/').map_or("", |(d, _)| d);
        for f in &m.files {
            match listed.get(&f.key) {
                None => findings.push(finding(
                    Some(&f.key),
                    format!("the manifest of {dir} (generation {}) lists it; the store has no such object", m.generation),
                )),
                Some((_, size)) if *size != f.bytes => findings.push(finding(
                    Some(&f.key),
                    format!("{size} bytes in the store, {} in the manifest of {dir} (generation {})", f.bytes, m.generation),
                )),
                Some(_) => {}
            }
        }
        let prefix = format!("{dir}/");
        for object in listed.range(prefix.clone()..).map(|(k, _)| k) {
            let Some(name) = object.strip_prefix(&prefix) else {
                break;
            };
            if name.contains('/') || in_flight.contains(object) || m.lists(object) {
                continue;
            }
            findings.push(finding(
                Some(object),
                format!("in the sealed directory {dir} but not in its manifest (generation {}): a late record not re-sealed yet, or a stray file", m.generation),
            ));
        }
    }
    Ok(())
}
