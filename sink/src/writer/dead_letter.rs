//! Dead letters: a bad record's envelope, written to the table's dead-letter file of its
//! segment (so its offset is committed only once the envelope is stored), or produced to a
//! dead-letter topic with the original key, value and headers.

use std::collections::HashMap;
use std::time::Instant;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::files::{append, open_file, Naming, OpenFile};
use super::{WriteError, WriterCtx};
use crate::batch::RecordIn;
use crate::commit::Tp;
use crate::config::{BadRecord, MissingTimestamp, TablePlan};
use crate::encode::GzipNdjson;
use crate::rotate::{CutReason, Deadline};
use crate::route::RouteError;

/// Produces dead letters to a Kafka topic: the original key, value and headers, plus headers
/// `lakesink.reason`, `lakesink.error`, `lakesink.table`, `lakesink.topic`,
/// `lakesink.partition`, `lakesink.offset` and `lakesink.timestamp` (the Kafka timestamp, ms).
pub struct DeadLetterProducer {
    pub producer: FutureProducer<crate::kafka::KafkaAuth>,
    pub topic: String,
}

impl DeadLetterProducer {
    fn send(
        &self,
        table: &TablePlan,
        tp: &Tp,
        rec: &RecordIn<'_>,
        error: &RouteError,
    ) -> Result<DeliveryFuture, WriteError> {
        let mut headers = OwnedHeaders::new();
        for (name, value) in rec
            .headers
            .map(crate::batch::decode_headers)
            .unwrap_or_default()
        {
            headers = headers.insert(Header {
                key: &name,
                value: value.as_deref(),
            });
        }
        let (partition, offset) = (tp.partition.to_string(), rec.offset.to_string());
        let timestamp = rec.kafka_millis.map(|m| m.to_string());
        let error_text = error.to_string();
        let ours: [(&str, Option<&str>); 7] = [
            ("lakesink.reason", Some(error.reason())),
            ("lakesink.error", Some(&error_text)),
            ("lakesink.table", Some(&table.name)),
            ("lakesink.topic", Some(&tp.topic)),
            ("lakesink.partition", Some(&partition)),
            ("lakesink.offset", Some(&offset)),
            ("lakesink.timestamp", timestamp.as_deref()),
        ];
        for (key, value) in ours {
            headers = headers.insert(Header {
                key,
                value: value.map(str::as_bytes),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(v) = rec.payload {
            record = record.payload(v);
        }
        if let Some(k) = rec.key {
            record = record.key(k);
        }
        if let Some(ts) = rec.kafka_millis.filter(|m| *m >= 0) {
            record = record.timestamp(ts);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err((source, _)) => {
                    return Err(WriteError::DeadLetter {
                        tp: tp.clone(),
                        source,
                    })
                }
            }
        }
    }
}

/// The parts of a writer that dead-lettering touches.
pub(super) struct DeadLetterFiles<'a> {
    pub(super) naming: Naming<'a>,
    pub(super) files: &'a mut HashMap<String, OpenFile>,
    pub(super) deliveries: &'a mut Vec<DeliveryFuture>,
    pub(super) held: &'a mut usize,
    pub(super) deadline: &'a mut Deadline,
    pub(super) tp: &'a Tp,
}

/// A bad record: to the dead-letter destination if the table's policy for its kind of problem
/// says so (`on_missing_timestamp` for event times, `on_bad_record` for the rest), else an
/// error naming it.
pub(super) fn bad_record(
    w: DeadLetterFiles<'_>,
    ctx: &WriterCtx,
    table: &TablePlan,
    rec: &RecordIn<'_>,
    source: RouteError,
    now: Instant,
) -> Result<Option<CutReason>, WriteError> {
    let to_dead_letter = if matches!(source, RouteError::LateAfterSeal { .. }) {
        true // only a table with late_after_seal = "dlq" refuses such records
    } else if source.is_timestamp_problem() {
        table.on_missing_timestamp == MissingTimestamp::DeadLetter
    } else {
        table.on_bad_record == BadRecord::DeadLetter
    };
    if !to_dead_letter {
        return Err(WriteError::BadRecord {
            table: table.name.clone(),
            tp: w.tp.clone(),
            offset: rec.offset,
            source,
        });
    }
    dead_letter(w, ctx, table, rec, &source, now)
}

/// Writes a bad record's envelope to the table's dead-letter file of this segment. The
/// envelope travels with the segment, so its offset is committed only once it is stored.
pub(super) fn dead_letter(
    w: DeadLetterFiles<'_>,
    ctx: &WriterCtx,
    table: &TablePlan,
    rec: &RecordIn<'_>,
    error: &RouteError,
    now: Instant,
) -> Result<Option<CutReason>, WriteError> {
    let kafka_time = rec
        .kafka_millis
        .filter(|m| *m >= 0)
        .and_then(chrono::DateTime::from_timestamp_millis);
    let date = kafka_time.map_or_else(
        || "unknown".to_string(),
        |t| t.format("%Y-%m-%d").to_string(),
    );
    let count = ctx.stats.dead_letter(&table.name, error.reason());
    let destination = match &ctx.dead_letter_producer {
        Some(p) => p.topic.as_str(),
        None => ctx.dead_letter_prefix.as_str(),
    };
    if count == 1 {
        tracing::warn!(table = %table.name, tp = %w.tp, offset = rec.offset, reason = error.reason(), error = %error, destination, "bad record dead-lettered (first of this table and reason; later ones are logged at debug)");
    } else {
        tracing::debug!(table = %table.name, tp = %w.tp, offset = rec.offset, reason = error.reason(), error = %error, destination, "bad record dead-lettered");
    }
    if let Some(p) = &ctx.dead_letter_producer {
        w.deliveries.push(p.send(table, w.tp, rec, error)?);
        return Ok(None);
    }
    let headers = rec.headers.map(|h| {
        crate::batch::decode_headers(h)
            .into_iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value_base64": value.as_deref().map(base64)}))
            .collect::<Vec<_>>()
    });
    let envelope = serde_json::json!({
        "table": table.name,
        "topic": &*w.tp.topic,
        "partition": w.tp.partition,
        "offset": rec.offset,
        "kafka_timestamp": kafka_time.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "reason": error.reason(),
        "error": error.to_string(),
        "value_bytes": rec.payload.map(<[u8]>::len),
        "value_base64": rec.payload.map(base64),
        "key_base64": rec.key.map(base64),
        "headers": headers,
    });
    let line = serde_json::to_vec(&envelope).expect("JSON");
    let path = format!("{}/date={date}", table.name);
    if !w.files.contains_key(&path) {
        let dir = format!("{}/{path}", ctx.dead_letter_prefix);
        let f = open_file(
            ctx,
            table,
            w.tp,
            &dir,
            None,
            rec.offset,
            w.naming,
            Box::new(GzipNdjson::new(6)),
        )?;
        w.deadline.file_opened(now, table.rotate.max_age);
        w.files.insert(path.clone(), f);
    }
    let f = w.files.get_mut(&path).expect("dead-letter file");
    append(ctx, table, f, &line, w.held)
}

/// Standard base64 with padding (RFC 4648), for dead-letter envelopes.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
