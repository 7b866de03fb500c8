//! Encode stage: turns records into the bytes of one object.
//!
//! An [`Encoder`] takes records one by one and hands out finished output in chunks (so large
//! objects stream to the store as multipart parts while they are written) and a final tail.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

pub mod parquet;
pub use self::parquet::{ParquetEncoder, ParquetPlan};

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("compressing {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("writing Parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    #[error("decoding records into Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// A record the format refused when its rows were settled: its index among the rows appended
/// since the settle before, and why (with the field path where the format gives one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// Writes records into one object's bytes.
pub trait Encoder: Send {
    /// Appends one record (already validated by the route stage).
    fn append(&mut self, record: &[u8]) -> Result<(), EncodeError>;
    /// Encoded bytes produced so far, including those already taken.
    fn written(&self) -> u64;
    /// Encoded bytes held in memory now.
    fn buffered(&self) -> usize;
    /// Memory held besides the encoded bytes: records not yet compressed and the compressor's
    /// state (an estimate).
    fn overhead(&self) -> usize;
    /// Takes the encoded bytes held so far if there are at least `min` of them.
    fn take_ready(&mut self, min: usize) -> Option<Vec<u8>>;
    /// Ends the object and returns the bytes not taken yet. Rows not settled are settled
    /// first; the caller settles before finishing when it wants to hear of refused rows.
    fn finish(self: Box<Self>) -> Result<Vec<u8>, EncodeError>;
    /// Rows appended since the last [`Encoder::settle`]. Formats that check records against a
    /// schema (Parquet) check them in batches; others take every record at once and say 0.
    fn unsettled(&self) -> usize {
        0
    }
    /// Encodes the rows appended since the last call. Rows the format refuses are pushed to
    /// `rejected` and are not in the output.
    fn settle(&mut self, _rejected: &mut Vec<Rejected>) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Records are gathered into this much input before the compressor sees them: deflate spends
/// far more per byte on many small inputs than on a few large ones.
const INPUT_CHUNK: usize = 64 * 1024;

/// Estimated memory of one gzip compressor's state besides its output: zlib's window, hash
/// chains and pending buffer (about 256 KiB at levels 1–9), and slack.
pub const GZIP_STATE: usize = 320 * 1024;

/// One gzip member of newline-delimited JSON: each record's bytes unchanged, one per line.
///
/// A record that was pretty-printed carries raw newlines, which in valid JSON can only be
/// whitespace between tokens; they are written as spaces so each record stays on one line.
///
/// The compressor is created only when the first [`INPUT_CHUNK`] of records is complete (or at
/// `finish`): a file that stays small — most files when thousands of partition values are open —
/// costs its records' bytes, not a compressor's 300 KiB. The compressor sees the same writes
/// either way, so the bytes out are the same.
pub struct GzipNdjson {
    enc: Option<GzEncoder<Vec<u8>>>,
    level: u32,
    taken: u64,
    /// Records not yet handed to the compressor (up to [`INPUT_CHUNK`]).
    input: Vec<u8>,
}

impl GzipNdjson {
    pub fn new(level: u32) -> GzipNdjson {
        GzipNdjson {
            enc: None,
            level,
            taken: 0,
            input: Vec::new(),
        }
    }

    fn compressor(&mut self) -> &mut GzEncoder<Vec<u8>> {
        let level = self.level;
        // `GzEncoder` writes mtime 0 and no file name: the same records give the same bytes.
        self.enc.get_or_insert_with(|| {
            GzEncoder::new(Vec::with_capacity(64 * 1024), Compression::new(level))
        })
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> EncodeError {
    move |source| EncodeError::Io { what, source }
}

impl Encoder for GzipNdjson {
    fn append(&mut self, record: &[u8]) -> Result<(), EncodeError> {
        let start = self.input.len();
        if self.input.capacity() - start < record.len() + 1 {
            // Grow in steps (not to the full chunk at once: most files stay small).
            let want = (start + record.len() + 1)
                .max(2 * self.input.capacity())
                .max(2048);
            self.input
                .reserve_exact(want.min(INPUT_CHUNK + record.len() + 1) - start);
        }
        self.input.extend_from_slice(record);
        if memchr::memchr2(b'\n', b'\r', record).is_some() {
            for b in &mut self.input[start..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
        }
        self.input.push(b'\n');
        if self.input.len() >= INPUT_CHUNK {
            let input = std::mem::take(&mut self.input);
            self.compressor().write_all(&input).map_err(io("records"))?;
            self.input = input;
            self.input.clear();
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.taken + self.buffered() as u64
    }

    fn buffered(&self) -> usize {
        self.enc.as_ref().map_or(0, |e| e.get_ref().len())
    }

    fn overhead(&self) -> usize {
        self.input.capacity() + if self.enc.is_some() { GZIP_STATE } else { 0 }
    }

    fn take_ready(&mut self, min: usize) -> Option<Vec<u8>> {
        let out = self.enc.as_mut()?.get_mut();
        if out.len() < min {
            return None;
        }
        let cap = out.capacity();
        let chunk = std::mem::replace(out, Vec::with_capacity(cap));
        self.taken += chunk.len() as u64;
        Some(chunk)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, EncodeError> {
        let input = std::mem::take(&mut self.input);
        if self.enc.is_none() {
            return Ok(gzip_small(&input, self.level));
        }
        let enc = self.compressor();
        enc.write_all(&input).map_err(io("records"))?;
        let enc = self.enc.take().expect("compressor");
        let mut out = enc.finish().map_err(io("gzip trailer"))?;
        // The tail waits for the store (sometimes behind the partition's gate) and is charged
        // by its length: give back the spare capacity of the output buffer.
        out.shrink_to_fit();
        Ok(out)
    }
}

/// One gzip member of `input` (smaller than [`INPUT_CHUNK`]), compressed by this thread's
/// reusable compressor: thousands of small files then cost no compressor set-up each, and the
/// allocator sees no churn of 300 KiB states. The bytes are those `GzEncoder` writes (mtime 0,
/// no name, OS 255).
fn gzip_small(input: &[u8], level: u32) -> Vec<u8> {
    use flate2::{Compress, FlushCompress};
    thread_local! {
        static DEFLATE: std::cell::RefCell<Option<(u32, Compress)>> = const { std::cell::RefCell::new(None) };
    }
    let mut out = Vec::with_capacity(input.len() / 3 + 64);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    DEFLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = match &mut *slot {
            Some((l, c)) if *l == level => {
                c.reset();
                c
            }
            _ => {
                *slot = Some((level, Compress::new(Compression::new(level), false)));
                &mut slot.as_mut().expect("compressor").1
            }
        };
        let mut consumed = 0;
        loop {
            out.reserve(1024.max(input.len() / 4));
            let before = c.total_in();
            let status = c
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Finish)
                .expect("deflate of an in-memory buffer");
            consumed += (c.total_in() - before) as usize;
            if status == flate2::Status::StreamEnd {
                break;
            }
        }
    });
    let mut crc = flate2::Crc::new();
    crc.update(input);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    out.shrink_to_fit();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> String {
        let mut s = String::new();
        flate2::read::MultiGzDecoder::new(b)
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    #[test]
    fn one_record_per_line_even_when_pretty_printed() {
        let mut e: Box<dyn Encoder> = Box::new(GzipNdjson::new(6));
        e.append(br#"{"a":1}"#).unwrap();
        e.append(b"{\n  \"b\": \"x\\ny\"\r\n}").unwrap();
        let out = e.finish().unwrap();
        assert_eq!(gunzip(&out), "{\"a\":1}\n{   \"b\": \"x\\ny\"  }\n");
    }

    #[test]
    fn a_small_file_holds_no_compressor_and_gives_plain_gzip() {
        let mut e = GzipNdjson::new(6);
        e.append(br#"{"a":1}"#).unwrap();
        assert!(e.enc.is_none());
        assert!(e.overhead() <= 4096, "{}", e.overhead());
        let out = Box::new(e).finish().unwrap();
        // The same as gzip of the same bytes written in one go.
        let mut direct = GzEncoder::new(Vec::new(), Compression::new(6));
        direct.write_all(b"{\"a\":1}\n").unwrap();
        assert_eq!(out, direct.finish().unwrap());
    }

    #[test]
    fn chunks_concatenate_to_one_member_and_are_deterministic() {
        let run = || {
            let mut e: Box<dyn Encoder> = Box::new(GzipNdjson::new(1));
            let mut parts = Vec::new();
            for i in 0..20_000 {
                e.append(format!(r#"{{"i":{i},"pad":"{}"}}"#, i * 7919 % 10007).as_bytes())
                    .unwrap();
                if let Some(c) = e.take_ready(16 * 1024) {
                    parts.push(c);
                }
            }
            let w = e.written();
            parts.push(e.finish().unwrap());
            (parts.concat(), w, parts.len())
        };
        let (a, written, n) = run();
        let (b, _, _) = run();
        assert!(n > 2, "output was taken in several chunks");
        assert_eq!(a, b);
        assert!(written <= a.len() as u64);
        let text = gunzip(&a);
        assert_eq!(text.lines().count(), 20_000);
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    }
}
