//! Encode stage: turns records into the bytes of one object.
//!
//! An [`Encoder`] takes records one by one and hands out finished output in chunks (so large
//! objects stream to the store as multipart parts while they are written) and a final tail.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("compressing {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Writes records into one object's bytes.
pub trait Encoder: Send {
    /// Appends one record (already validated by the route stage).
    fn append(&mut self, record: &[u8]) -> Result<(), EncodeError>;
    /// Encoded bytes produced so far, including those already taken.
    fn written(&self) -> u64;
    /// Encoded bytes held in memory now.
    fn buffered(&self) -> usize;
    /// Takes the encoded bytes held so far if there are at least `min` of them.
    fn take_ready(&mut self, min: usize) -> Option<Vec<u8>>;
    /// Ends the object and returns the bytes not taken yet.
    fn finish(self: Box<Self>) -> Result<Vec<u8>, EncodeError>;
}

/// Records are gathered into this much input before the compressor sees them: deflate spends
/// far more per byte on many small inputs than on a few large ones.
const INPUT_CHUNK: usize = 64 * 1024;

/// Estimated memory of one open gzip encoder besides its output: zlib's window, hash chains and
/// pending buffer (about 256 KiB at levels 1–9), the input chunk, and slack.
pub const GZIP_ENCODER_OVERHEAD: usize = 320 * 1024 + INPUT_CHUNK;

/// One gzip member of newline-delimited JSON: each record's bytes unchanged, one per line.
///
/// A record that was pretty-printed carries raw newlines, which in valid JSON can only be
/// whitespace between tokens; they are written as spaces so each record stays on one line.
pub struct GzipNdjson {
    enc: GzEncoder<Vec<u8>>,
    taken: u64,
    /// Records not yet handed to the compressor (up to [`INPUT_CHUNK`]).
    input: Vec<u8>,
}

impl GzipNdjson {
    pub fn new(level: u32) -> GzipNdjson {
        // `GzBuilder` writes mtime 0 and no file name: the same records give the same bytes.
        GzipNdjson {
            enc: GzEncoder::new(Vec::with_capacity(64 * 1024), Compression::new(level)),
            taken: 0,
            input: Vec::with_capacity(INPUT_CHUNK + 4096),
        }
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> EncodeError {
    move |source| EncodeError::Io { what, source }
}

impl Encoder for GzipNdjson {
    fn append(&mut self, record: &[u8]) -> Result<(), EncodeError> {
        let start = self.input.len();
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
            self.enc.write_all(&self.input).map_err(io("records"))?;
            self.input.clear();
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.taken + self.enc.get_ref().len() as u64
    }

    fn buffered(&self) -> usize {
        self.enc.get_ref().len()
    }

    fn take_ready(&mut self, min: usize) -> Option<Vec<u8>> {
        let out = self.enc.get_mut();
        if out.len() < min {
            return None;
        }
        let cap = out.capacity();
        let chunk = std::mem::replace(out, Vec::with_capacity(cap));
        self.taken += chunk.len() as u64;
        Some(chunk)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, EncodeError> {
        self.enc.write_all(&self.input).map_err(io("records"))?;
        self.enc.finish().map_err(io("gzip trailer"))
    }
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
