//! Encode stage: turns records into the bytes of one object.
//!
//! An [`Encoder`] takes records one by one and hands out finished output in chunks (so large
//! objects stream to the store as multipart parts while they are written) and a final tail.

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
/// since the settle before, its bytes as appended, and why (with the field path where the
/// format gives one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub record: Vec<u8>,
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
    /// Memory held besides the encoded bytes: records not yet compressed, the compressor's
    /// state and spare buffer capacity (an estimate).
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
    /// Bytes of the rows appended since the last [`Encoder::settle`].
    fn unsettled_bytes(&self) -> usize {
        0
    }
    /// The open rows the direct JSON path may parse a record of this file's schema into
    /// (then [`Encoder::commit_parsed`], or cut the row off again); `None` without a direct path.
    fn parsed_rows(&mut self) -> Option<&mut parquet::direct::JsonRows> {
        None
    }
    /// The last of [`Encoder::parsed_rows`] is a record of this file (`bytes`: its JSON's
    /// length).
    fn commit_parsed(&mut self, _bytes: usize) -> Result<(), EncodeError> {
        unreachable!("only an encoder with parsed rows takes parsed records")
    }
    /// Appends row `row` of `rows`, a record the direct JSON path parsed for this file's
    /// schema (`bytes`: its JSON's length). `false`: this encoder has no direct path, and the
    /// record must be appended as bytes.
    fn append_parsed(
        &mut self,
        _rows: &parquet::direct::JsonRows,
        _row: usize,
        _bytes: usize,
    ) -> Result<bool, EncodeError> {
        Ok(false)
    }
    /// Encodes the rows appended since the last call. Rows the format refuses are pushed to
    /// `rejected` and are not in the output.
    fn settle(&mut self, _rejected: &mut Vec<Rejected>) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Records are compressed in segments of at least this much input: deflate spends far more per
/// byte on many small inputs than on a few large ones, and each segment is primed with the input
/// before it (its [`window`]), so the segments compress nearly as well as one stream.
const SEGMENT: usize = 128 * 1024;

/// The largest segment, for a file that has taken 4 MiB of input or more.
const MAX_SEGMENT: usize = 1024 * 1024;

/// The segment size of a file that has compressed `done` bytes of input: a quarter of that,
/// between [`SEGMENT`] and [`MAX_SEGMENT`]. Each segment pays for priming the compressor with
/// the window and for a sync flush: in 128 KiB segments, CloudTrail-shaped JSON cost ~30 % more
/// than one stream at level 1 and ~10 % more at level 6. A file that keeps growing is a busy
/// one, and few files are busy at once (an open file holds up to a segment of input, charged to
/// the memory budget); thousands of small files stay at 128 KiB. Determined by the input alone,
/// so the same records still give the same bytes.
fn segment_size(done: u64) -> usize {
    ((done / 4) as usize).clamp(SEGMENT, MAX_SEGMENT)
}

/// The input kept from one segment to prime the next, by level. Priming inserts every byte of
/// it into deflate's hash chains, which is not free: on CloudTrail-shaped JSON in 128 KiB
/// segments, a 32 KiB window cost ~15 % of level 1's compression time and ~9 % of level 6's
/// against 8 and 16 KiB, for output 0.8 % and 0.5 % smaller (matches in such JSON are mostly
/// near: a record repeats its neighbours' keys and values). See `docs/DESIGN.md`.
fn window(level: u32) -> usize {
    if level <= 3 {
        8 * 1024
    } else {
        16 * 1024
    }
}

/// One gzip member of newline-delimited JSON: each record's bytes unchanged, one per line.
///
/// A record that was pretty-printed carries raw newlines, which in valid JSON can only be
/// whitespace between tokens; they are written as spaces so each record stays on one line.
///
/// The member's deflate stream is written in segments of 128 KiB to 1 MiB of input ([`segment_size`]), each compressed by
/// the worker thread's one compressor, reset and primed with the last 8–16 KiB of this file's
/// input (the [`window`]), and ended with a sync flush — the scheme pigz uses to compress one gzip
/// member in pieces. Between segments a file holds no compressor state (zlib's 300 KiB), only
/// its window, its pending records, its output and a CRC: thousands of open files cost their
/// bytes, and the one compressor stays in the core's cache. Readers see one ordinary gzip
/// member. The same records give the same bytes (segments end at the same records).
pub struct GzipNdjson {
    level: u32,
    /// The window (the last `window` bytes of input already compressed), then the records not
    /// compressed yet.
    input: Vec<u8>,
    window: usize,
    /// Compressed bytes not taken yet.
    out: Vec<u8>,
    taken: u64,
    /// CRC-32 and length (modulo 2^32, gzip's ISIZE) of the input compressed so far.
    crc: flate2::Crc,
    /// Input compressed so far (it sets the segment size).
    done: u64,
}

impl GzipNdjson {
    pub fn new(level: u32) -> GzipNdjson {
        GzipNdjson {
            level,
            input: Vec::new(),
            window: 0,
            out: Vec::new(),
            taken: 0,
            crc: flate2::Crc::new(),
            done: 0,
        }
    }

    /// Compresses the pending records as the next segment: with a sync flush, or the final
    /// block when `last`.
    fn segment(&mut self, last: bool) -> Result<(), EncodeError> {
        let pending = &self.input[self.window..];
        if self.taken == 0 && self.out.is_empty() {
            self.out.reserve(pending.len() / 3 + 64);
            self.out.extend_from_slice(&gzip_header(self.level));
        }
        self.crc.update(pending);
        self.done += pending.len() as u64;
        deflate_segment(
            self.level,
            &self.input[..self.window],
            pending,
            last,
            &mut self.out,
        )?;
        if last {
            self.out.extend_from_slice(&self.crc.sum().to_le_bytes());
            self.out.extend_from_slice(&self.crc.amount().to_le_bytes());
            self.input = Vec::new();
            self.window = 0;
            return Ok(());
        }
        // Keep the last window's bytes as the next segment's dictionary.
        let keep = self.input.len().min(window(self.level));
        let from = self.input.len() - keep;
        self.input.copy_within(from.., 0);
        self.input.truncate(keep);
        self.window = keep;
        Ok(())
    }
}

/// The gzip header `GzEncoder` writes: no name, mtime 0 (the same records give the same bytes),
/// XFL from the level, OS 255.
fn gzip_header(level: u32) -> [u8; 10] {
    let xfl = if level >= 9 {
        2
    } else if level <= 1 {
        4
    } else {
        0
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// Appends the raw deflate of `input`, primed with `dictionary`, to `out`, ended with a sync
/// flush (byte-aligned, not final) or, if `last`, the final block. Uses this thread's
/// compressor: one per worker thread and level, reset for every segment.
fn deflate_segment(
    level: u32,
    dictionary: &[u8],
    input: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    use flate2::{Compress, FlushCompress, Status};
    thread_local! {
        static DEFLATE: std::cell::RefCell<Vec<(u32, Compress)>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let failed = |e: flate2::CompressError| EncodeError::Io {
        what: "records",
        source: std::io::Error::other(e),
    };
    DEFLATE.with(|cell| {
        let mut cache = cell.borrow_mut();
        let i = match cache.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                cache.push((level, Compress::new(Compression::new(level), false)));
                cache.len() - 1
            }
        };
        let c = &mut cache[i].1;
        c.reset();
        if !dictionary.is_empty() {
            c.set_dictionary(dictionary).map_err(failed)?;
        }
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        let start = c.total_in();
        loop {
            let consumed = (c.total_in() - start) as usize;
            // JSON deflates 4–10:1; what does not fit takes another round.
            // Grown by half, not doubled: a file's output is held until it is cut, and
            // doubling left a third of it spare on average (~200 MB at a 1 GiB budget).
            let need = (input.len() - consumed) / 3 + 4096;
            if out.capacity() - out.len() < need {
                out.reserve_exact(need.max(out.capacity() / 2));
            }
            let status = c
                .compress_vec(&input[consumed..], out, flush)
                .map_err(failed)?;
            let done = c.total_in() - start == input.len() as u64;
            // A flush is complete once deflate left room in the output.
            if status == Status::StreamEnd || (done && !last && out.len() < out.capacity()) {
                return Ok(());
            }
        }
    })
}

impl Encoder for GzipNdjson {
    fn append(&mut self, record: &[u8]) -> Result<(), EncodeError> {
        let start = self.input.len();
        if self.input.capacity() - start < record.len() + 1 {
            // Grow in steps (not to the full segment at once: most files stay small).
            let want = (start + record.len() + 1)
                .max(2 * self.input.capacity())
                .max(2048);
            let segment = segment_size(self.done);
            self.input
                .reserve_exact(want.min(window(self.level) + segment + record.len() + 1) - start);
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
        if self.input.len() - self.window >= segment_size(self.done) {
            self.segment(false)?;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.taken + self.buffered() as u64
    }

    fn buffered(&self) -> usize {
        self.out.len()
    }

    fn overhead(&self) -> usize {
        // The output's spare capacity is memory too: charged, so the budget bounds RSS.
        self.input.capacity() + (self.out.capacity() - self.out.len())
    }

    fn take_ready(&mut self, min: usize) -> Option<Vec<u8>> {
        if self.out.is_empty() || self.out.len() < min {
            return None;
        }
        let cap = self.out.capacity();
        let chunk = std::mem::replace(&mut self.out, Vec::with_capacity(cap));
        self.taken += chunk.len() as u64;
        Some(chunk)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<u8>, EncodeError> {
        self.segment(true)?;
        let mut out = std::mem::take(&mut self.out);
        // The tail waits for the store (sometimes behind the partition's gate) and is charged
        // by its length: give back the spare capacity of the output buffer.
        out.shrink_to_fit();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::{Read, Write};

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

    fn gzip_whole(text: &[u8], level: u32) -> Vec<u8> {
        let mut direct = GzEncoder::new(Vec::new(), Compression::new(level));
        direct.write_all(text).unwrap();
        direct.finish().unwrap()
    }

    /// CloudTrail-like lines, different enough that deflate has work to do.
    fn lines(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"eventTime":"2024-01-02T03:{:02}:{:02}Z","eventName":"Get{}","user":"u{}","requestID":"{:x}"}}"#,
                    i / 60 % 60,
                    i % 60,
                    i % 47,
                    i * 7919 % 301,
                    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                )
            })
            .collect()
    }

    #[test]
    fn a_small_file_holds_only_its_records_and_gives_plain_gzip() {
        for level in [1, 6, 9] {
            let mut e = GzipNdjson::new(level);
            e.append(br#"{"a":1}"#).unwrap();
            assert!(e.overhead() <= 4096, "{}", e.overhead());
            let out = Box::new(e).finish().unwrap();
            // The same bytes as gzip of the same text written in one go.
            assert_eq!(out, gzip_whole(b"{\"a\":1}\n", level), "level {level}");
        }
        let empty: Box<dyn Encoder> = Box::new(GzipNdjson::new(6));
        assert_eq!(gunzip(&empty.finish().unwrap()), "");
    }

    #[test]
    fn segments_grow_with_the_file_from_128_kib_to_1_mib() {
        assert_eq!(segment_size(0), SEGMENT);
        assert_eq!(segment_size(512 << 10), SEGMENT);
        assert_eq!(segment_size(1 << 20), 256 << 10);
        assert_eq!(segment_size(2 << 20), 512 << 10);
        assert_eq!(segment_size(4 << 20), MAX_SEGMENT);
        assert_eq!(segment_size(1 << 40), MAX_SEGMENT);
    }

    #[test]
    fn segments_make_one_member_as_small_as_one_stream() {
        let rows = lines(40_000);
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        assert!(text.len() > 10 * SEGMENT, "{} bytes", text.len());
        for level in [1, 6] {
            let mut e: Box<dyn Encoder> = Box::new(GzipNdjson::new(level));
            for r in &rows {
                e.append(r.as_bytes()).unwrap();
            }
            let out = e.finish().unwrap();
            // One member: the single-member decoder reads it to the end.
            let mut one = String::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_string(&mut one)
                .unwrap();
            assert_eq!(one, text);
            // Each segment is primed with the window before it: no loss against one stream
            // (unprimed 128 KiB segments would be several per cent larger).
            let whole = gzip_whole(text.as_bytes(), level).len();
            assert!(
                out.len() as f64 <= whole as f64 * 1.01,
                "level {level}: {} bytes in segments, {whole} in one stream",
                out.len()
            );
        }
    }

    #[test]
    fn files_sharing_the_thread_compressor_give_the_bytes_each_gives_alone() {
        let rows = lines(6_000);
        let alone = |level| {
            let mut e: Box<dyn Encoder> = Box::new(GzipNdjson::new(level));
            for r in &rows {
                e.append(r.as_bytes()).unwrap();
            }
            e.finish().unwrap()
        };
        let (a1, a6) = (alone(1), alone(6));
        let mut e1: Box<dyn Encoder> = Box::new(GzipNdjson::new(1));
        let mut e6: Box<dyn Encoder> = Box::new(GzipNdjson::new(6));
        let mut e1b: Box<dyn Encoder> = Box::new(GzipNdjson::new(1));
        for r in &rows {
            e1.append(r.as_bytes()).unwrap();
            e6.append(r.as_bytes()).unwrap();
            e1b.append(r.as_bytes()).unwrap();
        }
        assert_eq!(e1.finish().unwrap(), a1);
        assert_eq!(e6.finish().unwrap(), a6);
        assert_eq!(e1b.finish().unwrap(), a1);
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
