//! Offsets asked of and committed to Kafka: committed offsets, high watermarks, commits.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::commit::{CommitError, Tp};
use crate::config::KafkaPlan;

/// Committed offsets of the group of `kafka` for partitions `0..partitions` of `topic` (those
/// that have one), with the daemon's client properties (SASL, TLS). Blocking; for `check`,
/// tests and tools.
pub fn committed_offsets(
    kafka: &KafkaPlan,
    topic: &str,
    partitions: i32,
) -> Result<std::collections::BTreeMap<i32, i64>, KafkaError> {
    let c = crate::kafka::consumer(kafka, &super::client_config(kafka))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    Ok(offsets_of(
        &c.committed_offsets(tpl, Duration::from_secs(10))?,
    ))
}

/// The partitions of a list that carry a real offset, with that offset.
fn offsets_of(tpl: &TopicPartitionList) -> std::collections::BTreeMap<i32, i64> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// High watermarks (end offsets) of partitions `0..partitions` of `topic`. Blocking.
pub fn high_watermarks(
    kafka: &KafkaPlan,
    topic: &str,
    partitions: i32,
) -> Result<std::collections::BTreeMap<i32, i64>, KafkaError> {
    let c = crate::kafka::consumer(kafka, &super::client_config(kafka))?;
    (0..partitions)
        .map(|p| Ok((p, c.fetch_watermarks(topic, p, Duration::from_secs(10))?.1)))
        .collect()
}

/// The group's committed offset of one partition (`None`: nothing committed yet).
pub(super) fn committed_offset<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &Tp,
    timeout: Duration,
) -> Result<Option<i64>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.topic, tp.partition);
    let c = consumer.committed_offsets(tpl, timeout)?;
    Ok(offsets_of(&c).get(&tp.partition).copied())
}

/// The high watermark librdkafka saw in its last fetch response for a partition (no request).
pub(super) fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &Tp,
) -> Option<i64> {
    let topic = std::ffi::CString::new(tp.topic.as_bytes()).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the call only reads
    // librdkafka's cached offsets into the two locals.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            tp.partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &[(Tp, i64)],
) -> Result<(), CommitError> {
    let mut tpl = TopicPartitionList::new();
    for (tp, o) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*o))
            .map_err(|source| CommitError::Kafka {
                offsets: describe(offsets),
                source,
            })?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|source| CommitError::Kafka {
            offsets: describe(offsets),
            source,
        })
}

pub(super) fn describe(offsets: &[(Tp, i64)]) -> String {
    offsets
        .iter()
        .map(|(tp, o)| format!("{tp}@{o}"))
        .collect::<Vec<_>>()
        .join(", ")
}
