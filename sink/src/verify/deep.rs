//! `--deep`: each object read back whole, its CRC-32 and its records counted, and both
//! compared with its claim.

use std::io::Read;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Checked, Kind, Required, VerifyError};
use crate::claim::ClaimedFile;

/// Objects read at once (each is held whole while it is checked).
pub(super) const READS: usize = 4;

/// What reading one object back found wrong: its kind and a sentence.
type Found<'a> = (&'a Required, Kind, String);

/// Reads `objects` back; returns what differs from their claims.
pub(super) async fn check<'a>(
    store: &Arc<dyn ObjectStore>,
    objects: &[(&'a Required, Vec<&'a ClaimedFile>)],
    checked: &mut Checked,
) -> Result<Vec<Found<'a>>, VerifyError> {
    let read = futures::stream::iter(objects.iter().map(|(r, versions)| {
        let store = store.clone();
        async move {
            let key = Path::from(r.key.as_str());
            let bytes = match store.get(&key).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            };
            let bytes = match bytes {
                Ok(b) => b,
                // Deleted since it was looked at: the size check already ran.
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(source) => {
                    return Err(VerifyError::Read {
                        key: r.key.clone(),
                        source,
                    })
                }
            };
            // Checksums and decoding run off the runtime's threads.
            let versions: Vec<ClaimedFile> = versions.iter().map(|f| (*f).clone()).collect();
            let r_key = r.key.clone();
            let judged = tokio::task::spawn_blocking(move || judge(&r_key, &versions, &bytes))
                .await
                .expect("the check does not panic");
            Ok(Some((*r, judged)))
        }
    }))
    .buffered(READS)
    .try_collect::<Vec<_>>()
    .await?;
    let mut found = Vec::new();
    for (r, judged) in read.into_iter().flatten() {
        checked.deep_objects += 1;
        checked.deep_bytes += judged.bytes;
        checked.deep_records += judged.records.unwrap_or(0);
        found.extend(judged.wrong.into_iter().map(|(k, d)| (r, k, d)));
    }
    Ok(found)
}

/// What one object held.
struct Judged {
    bytes: u64,
    records: Option<u64>,
    wrong: Vec<(Kind, String)>,
}

/// Judges an object's bytes against the versions of its facts of its size (the claim's, or
/// an amendment's).
fn judge(key: &str, versions: &[ClaimedFile], bytes: &[u8]) -> Judged {
    let mut wrong = Vec::new();
    let crc = crc32fast::hash(bytes);
    let f = match versions.iter().find(|f| f.crc32 == crc) {
        Some(f) => f,
        None => {
            let claimed: Vec<String> = versions
                .iter()
                .map(|f| format!("{:08x}", f.crc32))
                .collect();
            wrong.push((
                Kind::ChecksumMismatch,
                format!(
                    "CRC-32 {crc:08x} in the store, {} in the claim: the object was altered after it was written",
                    claimed.join(" or ")
                ),
            ));
            &versions[0]
        }
    };
    let records = match count_records(key, bytes) {
        Ok(n) => Some(n),
        Err(e) => {
            wrong.push((Kind::Unreadable, e));
            None
        }
    };
    if let Some(n) = records.filter(|n| *n != f.records) {
        wrong.push((
            Kind::RecordCountMismatch,
            format!("{n} records in the object, {} in the claim", f.records),
        ));
    }
    Judged {
        bytes: bytes.len() as u64,
        records,
        wrong,
    }
}

/// Records in an object: rows of a Parquet file (from its footer), lines of a gzip NDJSON file
/// (every gzip member).
pub(crate) fn count_records(key: &str, bytes: &[u8]) -> Result<u64, String> {
    if key.ends_with(".parquet") {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes))
            .map_err(|e| format!("not a Parquet file: {e}"))?;
        return Ok(reader.metadata().file_metadata().num_rows().max(0) as u64);
    }
    let mut gz = flate2::read::MultiGzDecoder::new(bytes);
    let mut buf = vec![0u8; 64 * 1024];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = gz
            .read(&mut buf)
            .map_err(|e| format!("not gzip, or cut short: {e}"))?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    // A last line without its newline is a record too.
    Ok(lines + u64::from(last != b'\n'))
}
