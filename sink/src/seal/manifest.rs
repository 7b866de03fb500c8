//! The manifest of a sealed partition: every object in its directory with its records, bytes,
//! event-time range, CRC-32 and the Kafka offsets that fed it.
//!
//! It is kept twice: the authoritative record `_lakesink/seals/{table}/{path}/{generation, 6
//! digits}.json`, written create-only (one per generation: a re-seal after late records is
//! the next generation), and a copy for readers of the directory,
//! `{table}/{path}/_lakesink_manifest.json`, beside an empty `_SUCCESS` for Hadoop-style
//! sensors. Athena, Hive, Spark, Trino and DuckDB globs skip names that start with `_`.

use serde::{Deserialize, Serialize};

use crate::claim::ClaimedFile;

/// The file name of the manifest copy in a partition's directory.
pub const MANIFEST: &str = "_lakesink_manifest.json";
/// The Hadoop success marker.
pub const SUCCESS: &str = "_SUCCESS";
/// Where the seal records live below the store root.
pub const SEALS_DIR: &str = "_lakesink/seals";

/// A sealed partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub table: String,
    /// The Hive path below the table (`date=2024-01-02/hour=01`).
    pub path: String,
    /// Where its files are and its copy goes, below the store root, when not `{table}/{path}`:
    /// the directory of a compaction (see [`crate::compact`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// 1 for the first seal; one more for each re-seal after late records.
    pub generation: u32,
    /// The end of the partition's time span and the table's watermark when it was sealed
    /// (RFC 3339).
    pub span_end: String,
    pub watermark: String,
    pub records: u64,
    pub bytes: u64,
    /// By key.
    pub files: Vec<ManifestFile>,
    /// Who sealed it (`host:pid`) and when (RFC 3339), for people.
    pub sealed_by: String,
    pub sealed_at: String,
}

/// One object of a sealed partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub key: String,
    pub records: u64,
    pub bytes: u64,
    pub crc32: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_event_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_event_time: Option<String>,
    /// The segments that fed it: Kafka offsets `[start, end)` of a topic partition.
    pub offsets: Vec<Offsets>,
}

/// A Kafka offset range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offsets {
    pub topic: String,
    pub partition: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    pub start: i64,
    pub end: i64,
}

fn is_zero(g: &u32) -> bool {
    *g == 0
}

fn rfc3339(micros: i64) -> String {
    crate::route::timestamp::micros_to_utc(micros)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl ManifestFile {
    /// A file of a committed segment `offsets`, as its claim records it.
    pub fn of(f: &ClaimedFile, offsets: Offsets) -> ManifestFile {
        ManifestFile {
            key: f.key.clone(),
            records: f.records,
            bytes: f.bytes,
            crc32: f.crc32,
            min_event_time: f.min_event_micros.map(rfc3339),
            max_event_time: f.max_event_micros.map(rfc3339),
            offsets: vec![offsets],
        }
    }
}

impl Manifest {
    /// The next generation of a partition's manifest: `before`'s files (if any) and `new`
    /// ones, by key (a file both list keeps its first entry).
    pub fn next(
        before: Option<&Manifest>,
        table: &str,
        path: &str,
        new: Vec<ManifestFile>,
        span_end: i64,
        watermark: i64,
    ) -> Manifest {
        let mut files: Vec<ManifestFile> = before.map(|m| m.files.clone()).unwrap_or_default();
        files.extend(new);
        files.sort_by(|a, b| a.key.cmp(&b.key));
        files.dedup_by(|a, b| a.key == b.key);
        Manifest {
            table: table.to_string(),
            path: path.to_string(),
            location: before.and_then(|m| m.location.clone()),
            generation: before.map_or(1, |m| m.generation + 1),
            span_end: rfc3339(span_end),
            watermark: rfc3339(watermark),
            records: files.iter().map(|f| f.records).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
            sealed_by: crate::claim::writer_id(),
            sealed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// The next generation with `files` (by key) under `location`, as a compaction seals a
    /// partition again: the span and watermark stay.
    pub fn with_files(&self, location: Option<String>, mut files: Vec<ManifestFile>) -> Manifest {
        files.sort_by(|a, b| a.key.cmp(&b.key));
        files.dedup_by(|a, b| a.key == b.key);
        Manifest {
            table: self.table.clone(),
            path: self.path.clone(),
            location,
            generation: self.generation + 1,
            span_end: self.span_end.clone(),
            watermark: self.watermark.clone(),
            records: files.iter().map(|f| f.records).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
            sealed_by: crate::claim::writer_id(),
            sealed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// The directory of its files and its copy, below the store root.
    pub fn dir(&self) -> String {
        self.location
            .clone()
            .unwrap_or_else(|| format!("{}/{}", self.table, self.path))
    }

    /// Whether it lists the object `key`.
    pub fn lists(&self, key: &str) -> bool {
        self.files
            .binary_search_by(|f| f.key.as_str().cmp(key))
            .is_ok()
    }
}
