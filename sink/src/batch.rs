//! The batch: what the consumer thread hands a worker, and the contract between the two.
//!
//! The consumer copies each record of a partition once into a [`Batch`] (its value, key and
//! headers into one buffer, their ranges in [`RecMeta`]); the worker lends them to the
//! partition's writer as [`RecordIn`]s. Headers travel in the small encoding of
//! [`encode_headers`]: only dead letters read them.

use crate::commit::Tp;

/// One record inside a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct RecMeta {
    pub offset: i64,
    pub kafka_millis: Option<i64>,
    /// Byte range of the value in the batch's data, if it has one.
    pub value: Option<(u32, u32)>,
    /// Byte range of the key, if it has one.
    pub key: Option<(u32, u32)>,
    /// Byte range of the headers (see [`encode_headers`]), if it has any.
    pub headers: Option<(u32, u32)>,
}

/// Appends Kafka headers to `out` as `[u32 name length][name][i32 value length, -1 for
/// null][value]…`, the form [`decode_headers`] reads. Only dead letters use them.
pub(crate) fn encode_headers<'a>(
    headers: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    out: &mut Vec<u8>,
) {
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&(-1i32).to_le_bytes()),
        }
    }
}

/// The headers [`encode_headers`] wrote.
pub(crate) fn decode_headers(mut b: &[u8]) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
        let name = String::from_utf8_lossy(&b[4..4 + n]).into_owned();
        b = &b[4 + n..];
        let len = i32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        b = &b[4..];
        if len < 0 {
            out.push((name, None));
        } else {
            out.push((name, Some(b[..len as usize].to_vec())));
            b = &b[len as usize..];
        }
    }
    out
}

/// Consecutive records of one partition, copied out of the consumer's buffers once.
#[derive(Debug)]
pub struct Batch {
    pub tp: Tp,
    pub epoch: u64,
    pub data: Vec<u8>,
    pub recs: Vec<RecMeta>,
    /// With the partition's first batch: the listing of its segment claims, already started.
    pub claims: Option<crate::claim::Prefetch>,
    /// The buffers' capacity, charged to the memory budget until the batch is dropped (after
    /// its worker has written its records).
    pub charge: Option<crate::memory::Charge>,
}

impl Batch {
    /// Charges the buffers' capacity now, if the batch carries a charge.
    pub fn recharge(&mut self) {
        let n = self.data.capacity() + self.recs.capacity() * std::mem::size_of::<RecMeta>();
        if let Some(c) = &mut self.charge {
            c.set(n);
        }
    }

    /// The batch's records, as a writer reads them.
    pub fn records(&self) -> Vec<RecordIn<'_>> {
        let range = |r: Option<(u32, u32)>| r.map(|(s, e)| &self.data[s as usize..e as usize]);
        self.recs
            .iter()
            .map(|m| RecordIn {
                offset: m.offset,
                kafka_millis: m.kafka_millis,
                payload: range(m.value),
                key: range(m.key),
                headers: range(m.headers),
            })
            .collect()
    }
}

/// One record handed to a writer.
#[derive(Debug, Clone, Copy)]
pub struct RecordIn<'a> {
    pub offset: i64,
    pub kafka_millis: Option<i64>,
    pub payload: Option<&'a [u8]>,
    /// Only dead letters use the key and the headers (encoded by
    /// [`encode_headers`]).
    pub key: Option<&'a [u8]>,
    pub headers: Option<&'a [u8]>,
}
