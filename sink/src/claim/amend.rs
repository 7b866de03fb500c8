//! Amendments: the other facts of a replayed segment's objects (a Parquet file whose row groups
//! fell elsewhere), recorded beside the claim, which is never replaced.

use object_store::path::Path;
use object_store::PutMode;
use serde::{Deserialize, Serialize};

use super::{path, retrying, Claim, ClaimError, ClaimedFile, Claims};
use crate::commit::Tp;
use futures::TryStreamExt;

/// Other facts of a replayed segment's objects (see [`Claims::amend`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Amendment {
    files: Vec<ClaimedFile>,
}

impl Claims {
    /// Records the facts of the objects a replay of `claim`'s segment completes (`keys`) where
    /// they differ from what the stored claim says: a replay that cuts where the claim says
    /// writes the same records, but a Parquet file may place its row groups differently, so
    /// its bytes and checksum differ. The amendment,
    /// `{start, 20 digits}.f{CRC-32 of its body, 8 hex digits}.json` beside the claim, is
    /// written create-only before the objects are completed; the claim itself is never
    /// replaced. `lakesink verify` accepts an object that matches the claim or an amendment.
    pub async fn amend(&self, tp: &Tp, claim: &Claim, keys: &[String]) -> Result<(), ClaimError> {
        let stored = self
            .read(&self.key(tp, claim.generation, claim.start))
            .await?;
        if stored.files.is_empty() {
            return Ok(()); // an older claim without facts: checked for existence only
        }
        let files: Vec<ClaimedFile> = claim
            .files
            .iter()
            .filter(|f| keys.contains(&f.key) && !stored.files.contains(f))
            .cloned()
            .collect();
        if files.is_empty() {
            return Ok(());
        }
        let body = serde_json::to_vec(&Amendment { files }).expect("an amendment serializes");
        let key = path(format!(
            "{}/{:020}.f{:08x}.json",
            self.dir(tp, claim.generation),
            claim.start,
            crc32fast::hash(&body)
        ));
        let mode = if self.unfenced() {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        match self.put(&key, &body, mode).await {
            // The same facts, recorded by another replay of the segment.
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(object_store::Error::NotImplemented { .. }) => self
                .put(&key, &body, PutMode::Overwrite)
                .await
                .map_err(|source| ClaimError::Store {
                    key: key.to_string(),
                    source,
                }),
            Err(source) => Err(ClaimError::Store {
                key: key.to_string(),
                source,
            }),
        }
    }

    /// The amendments of `tp`'s claims in `generation` (see [`Claims::amend`]): per segment
    /// start, the other facts recorded for its objects.
    pub async fn amendments(
        &self,
        tp: &Tp,
        generation: u32,
    ) -> Result<Vec<(i64, ClaimedFile)>, ClaimError> {
        let dir = path(self.dir(tp, generation));
        let (store, dir_ref) = (&self.store, &dir);
        let keys: Vec<(i64, Path)> = retrying(&dir, move || async move {
            let mut listing = store.list(Some(dir_ref));
            let mut keys = Vec::new();
            while let Some(m) = listing.try_next().await? {
                let start = m
                    .location
                    .filename()
                    .and_then(|n| n.strip_suffix(".json")?.split_once(".f"))
                    .and_then(|(start, _)| start.parse().ok());
                if let Some(start) = start {
                    keys.push((start, m.location));
                }
            }
            Ok(keys)
        })
        .await
        .map_err(|source| ClaimError::Store {
            key: dir.to_string(),
            source,
        })?;
        let mut out = Vec::new();
        for (start, key) in keys {
            let bytes = self.get(&key).await?;
            let a: Amendment =
                serde_json::from_slice(&bytes).map_err(|source| ClaimError::Corrupt {
                    key: key.to_string(),
                    source,
                })?;
            out.extend(a.files.into_iter().map(|f| (start, f)));
        }
        Ok(out)
    }
}
