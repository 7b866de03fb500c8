//! `--against-kafka`: the records Kafka still holds, compared with the lake record by record,
//! so the audit does not trust the claims alone.
//!
//! Each committed segment's records are read from Kafka again (from the low watermark on, where
//! retention took the first ones) and routed as the writer routes them: to a partition path of
//! each table, or to its dead letters (a bad record, or `late_after_seal` by the watermark the
//! claim recorded). The claim names the object of each path; its lines are then compared with
//! the records routed there, in order, by CRC-32 (gzip NDJSON: the record's text with newlines
//! made spaces, as written). A Parquet file, and a table whose records are decoded (a schema
//! registry), is compared by its number of rows; a dead-letter file by the offsets of its
//! envelopes. A record Kafka holds that its object lacks is `missing_record`; a line the object
//! holds that Kafka does not is `extra_record`.
//!
//! Every audit also asks Kafka about the gaps between claims ([`pass_gaps_without_records`]):
//! offsets that hold no record there (transaction markers, compaction) are not gaps.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rdkafka::consumer::Consumer;
use rdkafka::Message;

use super::{Checked, Finding, Kind, Report, VerifyError};
use crate::claim::{Claim, ClaimedFile};
use crate::commit::Tp;
use crate::config::{LateAfterSeal, Plan, TablePlan};
use crate::route::{RecordRef, RouteError, TableRouter};

/// How long Kafka may take to return the next record of a range before the audit gives up.
const STALL: Duration = Duration::from_secs(30);

/// A committed segment to compare.
pub(super) struct Segment {
    pub(super) tp: Tp,
    pub(super) generation: u32,
    pub(super) claim: Claim,
}

/// One record read back from Kafka.
struct Record {
    offset: i64,
    millis: Option<i64>,
    value: Option<Vec<u8>>,
}

/// What one object should hold: per record, its offset and the CRC-32 of its line.
#[derive(Default)]
struct Expected {
    rows: Vec<(i64, u32)>,
}

/// Compares the committed `segments` (one Kafka partition's, in order) with what Kafka holds
/// from `low` on.
pub(super) async fn check(
    plan: &Plan,
    store: &Arc<dyn ObjectStore>,
    root: &str,
    tables: &[&TablePlan],
    low: i64,
    segments: &[Segment],
    report: &mut super::Report,
) -> Result<(), VerifyError> {
    let super::Report {
        findings, checked, ..
    } = report;
    let Some(first) = segments.first() else {
        return Ok(());
    };
    let tp = first.tp.clone();
    let from = first.claim.start.max(low);
    let to = segments.last().map_or(from, |s| s.claim.end);
    if from >= to {
        return Ok(());
    }
    let mut routers: Vec<(&TablePlan, TableRouter)> = Vec::new();
    for t in tables
        .iter()
        .filter(|t| t.topics.contains(&tp.topic.to_string()))
    {
        let mut r = TableRouter::new(&t.route_rules()).map_err(|source| VerifyError::Route {
            table: t.name.clone(),
            topic: tp.topic.to_string(),
            source,
        })?;
        r.limit_path(crate::writer::path_room_for(root, &t.name, &tp));
        routers.push((t, r));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Record, VerifyError>>(4096);
    let kafka = plan.kafka.clone();
    let reader_tp = tp.clone();
    let reader = tokio::task::spawn_blocking(move || read(&kafka, &reader_tp, from, to, &tx));
    let mut next = segments.iter().peekable();
    let mut path = String::new();
    let now = chrono::Utc::now().timestamp_micros();
    let mut current: Option<(&Segment, HashMap<String, Expected>, bool)> = None;
    while let Some(got) = rx.recv().await {
        let rec = got?;
        // The segment of this record: check the ones it has passed.
        while current
            .as_ref()
            .is_none_or(|(s, _, _)| rec.offset >= s.claim.end)
        {
            if let Some((s, expected, partial)) = current.take() {
                compare(store, s, expected, partial, findings, checked).await?;
            }
            let Some(s) = next.next() else { break };
            current = Some((s, HashMap::new(), s.claim.start < low));
        }
        let Some((s, expected, _)) = current.as_mut() else {
            break;
        };
        if rec.offset < s.claim.start {
            continue; // between two claims: a gap, named by the offset checks
        }
        checked.kafka_records += 1;
        for (t, router) in &mut routers {
            let r = RecordRef {
                topic: &tp.topic,
                partition: tp.partition,
                offset: rec.offset,
                kafka_millis: rec.millis,
                payload: rec.value.as_deref(),
            };
            let routed = router.route(&r, now, &mut path);
            let late = routed.as_ref().ok().and_then(|routed| {
                let w = *s.claim.late_before.get(&t.name)?;
                (t.late_after_seal == LateAfterSeal::DeadLetter
                    && crate::writer::late_after_seal(t, routed.event_micros, w))
                .then_some(())
            });
            let target = match (&routed, late) {
                (Ok(_), None) => s.claim.files.iter().find(|f| {
                    f.table.as_deref() == Some(&t.name) && f.path.as_deref() == Some(&path)
                }),
                _ => dead_letters(&s.claim, &t.name),
            };
            let Some(file) = target else {
                findings.push(missing(s, &t.name, rec.offset, match &routed {
                    Ok(_) => format!("Kafka holds it for {path}, and the segment's claim has no object there"),
                    Err(e) => format!("Kafka holds it ({}), and the segment's claim has no dead-letter file of the table", describe(e)),
                }));
                continue;
            };
            let value = rec.value.as_deref().unwrap_or_default();
            let crc = match (&routed, late) {
                (Ok(_), None) => line_crc(value),
                _ => 0, // dead letters are compared by offset
            };
            expected
                .entry(file.key.clone())
                .or_default()
                .rows
                .push((rec.offset, crc));
        }
    }
    if let Some((s, expected, partial)) = current.take() {
        compare(store, s, expected, partial, findings, checked).await?;
    }
    reader
        .await
        .map_err(|source| VerifyError::Task { source })?;
    Ok(())
}

fn describe(e: &RouteError) -> &'static str {
    e.reason()
}

/// The dead-letter file of `table` in a segment's claim (its key is below
/// `{prefix}/{table}/`).
fn dead_letters<'a>(c: &'a Claim, table: &str) -> Option<&'a ClaimedFile> {
    let needle = format!("/{table}/");
    c.files
        .iter()
        .find(|f| f.table.is_none() && f.key.contains(&needle))
}

fn missing(s: &Segment, table: &str, offset: i64, detail: String) -> Finding {
    Finding {
        kind: Kind::MissingRecord,
        table: Some(table.to_string()),
        topic: Some(s.tp.topic.to_string()),
        partition: Some(s.tp.partition),
        generation: Some(s.generation),
        offsets: Some((Some(offset), offset + 1)),
        key: None,
        detail,
    }
}

/// The CRC-32 of a record's line as the gzip NDJSON encoder writes it.
fn line_crc(value: &[u8]) -> u32 {
    if memchr::memchr2(b'\n', b'\r', value).is_none() {
        return crc32fast::hash(value);
    }
    let line: Vec<u8> = value
        .iter()
        .map(|b| if *b == b'\n' || *b == b'\r' { b' ' } else { *b })
        .collect();
    crc32fast::hash(&line)
}

/// Compares one segment's objects with the records Kafka routed to them.
async fn compare(
    store: &Arc<dyn ObjectStore>,
    s: &Segment,
    expected: HashMap<String, Expected>,
    partial: bool,
    findings: &mut Vec<Finding>,
    checked: &mut Checked,
) -> Result<(), VerifyError> {
    for (key, want) in expected {
        let file = s.claim.files.iter().find(|f| f.key == key);
        let table = file.and_then(|f| f.table.clone());
        let finding = |kind, offsets: (Option<i64>, i64), detail: String| Finding {
            kind,
            table: table.clone(),
            topic: Some(s.tp.topic.to_string()),
            partition: Some(s.tp.partition),
            generation: Some(s.generation),
            offsets: Some(offsets),
            key: Some(key.clone()),
            detail,
        };
        let bytes = match store.get(&Path::from(key.as_str())).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            // Named by the object checks already.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(source) => return Err(VerifyError::Read { key, source }),
        };
        checked.kafka_objects += 1;
        let dead_letter = table.is_none();
        if key.ends_with(".parquet") {
            let rows = super::deep::count_records(&key, &bytes).unwrap_or(0);
            let n = want.rows.len() as u64;
            if rows < n || (rows > n && !partial) {
                findings.push(finding(
                    if rows < n {
                        Kind::MissingRecord
                    } else {
                        Kind::ExtraRecord
                    },
                    (
                        want.rows.first().map(|r| r.0),
                        want.rows.last().map_or(0, |r| r.0 + 1),
                    ),
                    format!("{rows} rows in the object, {n} records in Kafka for it"),
                ));
            }
            continue;
        }
        let mut got: Vec<u32> = Vec::new();
        let mut offsets: Vec<i64> = Vec::new();
        let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
        for line in reader.split(b'\n') {
            let Ok(line) = line else {
                break; // unreadable: named by --deep
            };
            if dead_letter {
                let offset = serde_json::from_slice::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["offset"].as_i64());
                offsets.push(offset.unwrap_or(-1));
            } else {
                got.push(crc32fast::hash(&line));
            }
        }
        if dead_letter {
            let want: Vec<i64> = want.rows.iter().map(|r| r.0).collect();
            for o in want.iter().filter(|o| !offsets.contains(o)) {
                findings.push(finding(
                    Kind::MissingRecord,
                    (Some(*o), o + 1),
                    "Kafka holds this bad record; the dead-letter file has no envelope of it"
                        .into(),
                ));
            }
            continue;
        }
        // Multisets: each record Kafka routed here must be a line of the object, once.
        let mut counts: BTreeMap<u32, i64> = BTreeMap::new();
        for c in &got {
            *counts.entry(*c).or_default() += 1;
        }
        for (offset, crc) in &want.rows {
            let n = counts.entry(*crc).or_default();
            if *n > 0 {
                *n -= 1;
            } else {
                findings.push(finding(
                    Kind::MissingRecord,
                    (Some(*offset), offset + 1),
                    "Kafka holds this record; its object does not".into(),
                ));
            }
        }
        let extra: i64 = counts.values().filter(|n| **n > 0).sum();
        if extra > 0 && !partial {
            findings.push(finding(
                Kind::ExtraRecord,
                (Some(s.claim.start), s.claim.end),
                format!("{extra} line(s) in the object that Kafka does not hold at these offsets (a duplicate, or a record from elsewhere)"),
            ));
        }
    }
    Ok(())
}

/// Drops the gaps of the newest generation that Kafka holds no record in: a claim starts at
/// its first record, so a transaction marker between two segments leaves an offset no claim
/// covers, and the commit passes the markers after the last one. Kafka is asked whether the
/// offsets hold a record, where it still holds them all (a gap below its low watermark stays
/// a finding).
pub(super) async fn pass_gaps_without_records(
    plan: &Plan,
    report: &mut Report,
) -> Result<(), VerifyError> {
    // A gap Kafka can answer for: with a start, in the partition's newest generation.
    let range = |f: &Finding| match (&f.kind, &f.topic, f.partition, f.offsets, f.generation) {
        (Kind::Gap, Some(topic), Some(partition), Some((Some(from), to)), Some(g))
            if report.newest.get(&(topic.clone(), partition)) == Some(&g) =>
        {
            Some((Tp::new(topic, partition), from, to))
        }
        _ => None,
    };
    let mut topics: Vec<String> = report
        .findings
        .iter()
        .filter_map(|f| range(f).map(|(tp, _, _)| tp.topic.to_string()))
        .collect();
    if topics.is_empty() {
        return Ok(());
    }
    topics.sort();
    topics.dedup();
    let mut low: HashMap<(String, i32), i64> = HashMap::new();
    for (topic, parts) in crate::kafka::read_offsets(&plan.kafka, topics).await? {
        for p in parts {
            if let Some(l) = p.low {
                low.insert((topic.clone(), p.partition), l);
            }
        }
    }
    let mut kept = Vec::with_capacity(report.findings.len());
    for f in std::mem::take(&mut report.findings) {
        if let Some((tp, from, to)) = range(&f) {
            let held = low
                .get(&(tp.topic.to_string(), tp.partition))
                .is_some_and(|l| *l <= from);
            if held && !holds_a_record(&plan.kafka, &tp, from, to).await? {
                report.checked.offsets_without_records += (to - from) as u64;
                continue;
            }
        }
        kept.push(f);
    }
    report.findings = kept;
    report.ok = report.findings.is_empty();
    Ok(())
}

/// Whether Kafka hands out a record at offsets `[from, to)` of `tp` (read up to the first).
async fn holds_a_record(
    kafka: &crate::config::KafkaPlan,
    tp: &Tp,
    from: i64,
    to: i64,
) -> Result<bool, VerifyError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Record, VerifyError>>(1);
    let (kafka, reader_tp) = (kafka.clone(), tp.clone());
    let reader = tokio::task::spawn_blocking(move || read(&kafka, &reader_tp, from, to, &tx));
    let first = rx.recv().await;
    drop(rx);
    reader
        .await
        .map_err(|source| VerifyError::Task { source })?;
    match first {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(e)) => Err(e),
    }
}

/// Reads `tp` from `from` to `to` (exclusive) into `tx`.
fn read(
    kafka: &crate::config::KafkaPlan,
    tp: &Tp,
    from: i64,
    to: i64,
    tx: &tokio::sync::mpsc::Sender<Result<Record, VerifyError>>,
) {
    let fail = |e: VerifyError| {
        let _ = tx.blocking_send(Err(e));
    };
    let kafka_error = |step: &'static str| {
        move |source| VerifyError::Kafka {
            tp: tp.clone(),
            step,
            source,
        }
    };
    let mut cfg = crate::consume::client_config(kafka);
    cfg.set("enable.auto.commit", "false");
    let consumer = match crate::kafka::consumer(kafka, &cfg) {
        Ok(c) => c,
        Err(e) => return fail(kafka_error("creating a consumer")(e)),
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    if let Err(e) = tpl.add_partition_offset(&tp.topic, tp.partition, rdkafka::Offset::Offset(from))
    {
        return fail(kafka_error("naming the partition")(e));
    }
    if let Err(e) = consumer.assign(&tpl) {
        return fail(kafka_error("assigning the partition")(e));
    }
    let mut last = std::time::Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                last = std::time::Instant::now();
                if m.offset() >= to {
                    return;
                }
                let rec = Record {
                    offset: m.offset(),
                    millis: m.timestamp().to_millis(),
                    value: m.payload().map(<[u8]>::to_vec),
                };
                if tx.blocking_send(Ok(rec)).is_err() {
                    return;
                }
                if m.offset() + 1 >= to {
                    return;
                }
            }
            Some(Err(e)) => return fail(kafka_error("polling")(e)),
            // The range may end in offsets that hold no record (transaction markers,
            // compaction): the position says when it is read.
            None if consumer
                .position()
                .ok()
                .and_then(|p| p.find_partition(&tp.topic, tp.partition)?.offset().to_raw())
                .is_some_and(|p| p >= to) =>
            {
                return;
            }
            None if last.elapsed() > STALL => {
                return fail(VerifyError::KafkaStalled {
                    tp: tp.clone(),
                    secs: STALL.as_secs(),
                    to,
                })
            }
            None => {}
        }
    }
}
