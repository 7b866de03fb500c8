//! What `lakesink verify` found: the findings, what was looked at, and the text report.

use std::fmt::Write;

use serde::Serialize;

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct Finding {
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// The Kafka offsets concerned, `[from, to)` (`from` absent: unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offsets: Option<(Option<i64>, i64)>,
    /// The object concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub detail: String,
}

/// Kinds of findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Offsets between two claims, or between the last claim and the committed offset, that no
    /// claim covers: records that may be missing from the lake.
    Gap,
    /// Two claims covering the same offsets.
    Overlap,
    /// A committed claim lists an object the store does not have.
    MissingObject,
    /// An object's size differs from its claim's.
    SizeMismatch,
    /// `--deep`: an object's bytes differ from its claim's CRC-32.
    ChecksumMismatch,
    /// `--deep`: an object holds another number of records than its claim says.
    RecordCountMismatch,
    /// `--deep`: an object that cannot be decoded.
    Unreadable,
    /// An object in a table's directories that no claim lists.
    Orphan,
    /// A sealed partition's manifest does not match the objects in its directory.
    ManifestMismatch,
    /// `--against-kafka`: a record Kafka holds at committed offsets that is not in its object.
    MissingRecord,
    /// `--against-kafka`: lines in an object that Kafka does not hold at its offsets.
    ExtraRecord,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gap => "gap",
            Kind::Overlap => "overlap",
            Kind::MissingObject => "missing_object",
            Kind::SizeMismatch => "size_mismatch",
            Kind::ChecksumMismatch => "checksum_mismatch",
            Kind::RecordCountMismatch => "record_count_mismatch",
            Kind::Unreadable => "unreadable",
            Kind::Orphan => "orphan",
            Kind::ManifestMismatch => "manifest_mismatch",
            Kind::MissingRecord => "missing_record",
            Kind::ExtraRecord => "extra_record",
        }
    }
}

/// What was looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checked {
    pub tables: usize,
    pub kafka_partitions: usize,
    pub claims: usize,
    /// Offsets the claims cover.
    pub offsets: u64,
    /// Objects listed by committed claims and checked, and their bytes.
    pub objects: usize,
    pub bytes: u64,
    /// Objects of claims past the committed offset (in flight: not required yet).
    pub in_flight: usize,
    /// Objects listed by claims written before sizes were recorded (existence only).
    pub without_facts: usize,
    /// Objects found in the tables' directories.
    pub listed: usize,
    /// Sealed partitions whose manifests were compared with their directories.
    pub sealed_partitions: usize,
    /// Files compactions wrote (checked like claimed ones), and claimed files a compaction
    /// replaced and deleted.
    pub compacted: usize,
    pub compacted_away: usize,
    /// `--deep`: objects read back, their bytes and records.
    pub deep_objects: usize,
    pub deep_bytes: u64,
    pub deep_records: u64,
    /// `--against-kafka`: records read back from Kafka, and objects compared with them.
    pub kafka_records: u64,
    pub kafka_objects: usize,
    /// Offsets between claims (or past the last one, up to the committed offset) that Kafka
    /// holds no record at: transaction markers, records compacted away. Not gaps.
    pub offsets_without_records: u64,
}

/// The audit's result: `ok` only when nothing is wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub storage: String,
    pub group: String,
    pub deep: bool,
    pub checked: Checked,
    pub findings: Vec<Finding>,
    /// The newest generation of each Kafka partition with claims: Kafka's offsets are its.
    #[serde(skip)]
    pub newest: std::collections::BTreeMap<(String, i32), u32>,
}

impl Report {
    /// The text report: one line per finding, then the counts.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let _ = write!(out, "FAULT {:<21}", f.kind.as_str());
            if let Some(t) = &f.table {
                let _ = write!(out, " table={t}");
            }
            if let (Some(t), Some(p)) = (&f.topic, f.partition) {
                let _ = write!(out, " topic={t} partition={p}");
            }
            if let Some(g) = f.generation.filter(|g| *g > 0) {
                let _ = write!(out, " generation={g}");
            }
            if let Some((from, to)) = f.offsets {
                match from {
                    Some(from) => {
                        let _ = write!(out, " offsets={from}..{to}");
                    }
                    None => {
                        let _ = write!(out, " offsets=..{to}");
                    }
                }
            }
            if let Some(k) = &f.key {
                let _ = write!(out, " key={k}");
            }
            let _ = writeln!(out, ": {}", f.detail);
        }
        let c = &self.checked;
        let _ = write!(
            out,
            "verify {}: {} table(s), {} Kafka partition(s), {} claim(s) covering {} offsets, {} object(s) ({} bytes) checked, {} in flight, {} in the tables' directories, {} sealed partition(s)",
            self.storage, c.tables, c.kafka_partitions, c.claims, c.offsets, c.objects, c.bytes, c.in_flight, c.listed, c.sealed_partitions
        );
        if c.without_facts > 0 {
            let _ = write!(
                out,
                ", {} from claims without sizes (existence only)",
                c.without_facts
            );
        }
        if self.deep {
            let _ = write!(
                out,
                "; deep: {} object(s), {} bytes, {} records read back",
                c.deep_objects, c.deep_bytes, c.deep_records
            );
        }
        if c.kafka_records > 0 {
            let _ = write!(
                out,
                "; against Kafka: {} records compared with {} object(s)",
                c.kafka_records, c.kafka_objects
            );
        }
        if c.offsets_without_records > 0 {
            let _ = write!(
                out,
                "; {} offset(s) outside the claims hold no record in Kafka (transaction markers, compaction)",
                c.offsets_without_records
            );
        }
        let _ = writeln!(out);
        if self.ok {
            let _ = writeln!(out, "OK: nothing missing, nothing extra");
        } else {
            let _ = writeln!(out, "FAILED: {} finding(s)", self.findings.len());
        }
        out
    }
}
