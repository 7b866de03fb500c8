//! Per partition of some topics: the group's committed offset and Kafka's low and high
//! watermarks, read with the daemon's own client properties (SASL, TLS), without joining the
//! group.

use std::time::Duration;

use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::config::KafkaPlan;

/// Why the offsets could not be read at all (a partition that answers badly says so in its
/// [`PartitionOffsets::error`] instead).
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("creating a Kafka client for {brokers}: {source}")]
    Create {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    /// `what`: the topic and the brokers asked.
    #[error("the metadata of {what}: {source}")]
    Metadata {
        what: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading offsets ended abnormally: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}

/// One partition's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed).
    pub committed: Option<i64>,
    /// Kafka's low and high watermarks (`None`: see `error`).
    pub low: Option<i64>,
    pub high: Option<i64>,
    /// What could not be read of this partition.
    pub error: Option<String>,
}

/// Per topic, its partitions' offsets, with a client made for this one read.
pub async fn read_offsets(
    kafka: &KafkaPlan,
    topics: Vec<String>,
) -> Result<Vec<(String, Vec<PartitionOffsets>)>, OffsetsError> {
    let kafka = kafka.clone();
    tokio::task::spawn_blocking(move || OffsetReader::new(&kafka)?.read_now(topics))
        .await
        .map_err(|source| OffsetsError::Task { source })?
}

/// A client that reads offsets again and again (the daemon's watermark, every 10 s): one
/// librdkafka client with its connections (and, with MSK IAM, its token), not a new one per
/// read.
#[derive(Clone)]
pub struct OffsetReader {
    kafka: Arc<KafkaPlan>,
    consumer: Arc<BaseConsumer<super::KafkaAuth>>,
}

impl OffsetReader {
    /// Makes the client (blocking: with MSK IAM it signs its first token).
    pub fn new(kafka: &KafkaPlan) -> Result<OffsetReader, OffsetsError> {
        let consumer = super::consumer(kafka, &super::client_config(kafka)).map_err(|source| {
            OffsetsError::Create {
                brokers: kafka.brokers.clone(),
                source,
            }
        })?;
        Ok(OffsetReader {
            kafka: Arc::new(kafka.clone()),
            consumer: Arc::new(consumer),
        })
    }

    /// Per topic, its partitions' offsets now.
    pub async fn read(
        &self,
        topics: Vec<String>,
    ) -> Result<Vec<(String, Vec<PartitionOffsets>)>, OffsetsError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.read_now(topics))
            .await
            .map_err(|source| OffsetsError::Task { source })?
    }

    fn read_now(
        &self,
        topics: Vec<String>,
    ) -> Result<Vec<(String, Vec<PartitionOffsets>)>, OffsetsError> {
        let (kafka, consumer) = (&*self.kafka, &*self.consumer);
        // What the client queued since the last read (its log lines, errors, a token refresh)
        // is served here; a client kept for hours must not pile them up. A poll serves such
        // events until its timeout (with none, it stops after the first one); it returns early
        // only with an error event, and then the rest is served by the next poll.
        let until = std::time::Instant::now() + Duration::from_millis(20);
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || consumer.poll(left).is_none() {
                break;
            }
        }
        let timeout = Duration::from_secs(10);
        let mut out = Vec::new();
        for topic in topics {
            let md = consumer
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|source| OffsetsError::Metadata {
                    what: format!("{topic} from {}", kafka.brokers),
                    source,
                })?;
            let n = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
            let mut tpl = rdkafka::TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition(&topic, p);
            }
            let committed = consumer.committed_offsets(tpl, timeout);
            let mut parts = Vec::new();
            for p in 0..n {
                let mut s = PartitionOffsets {
                    partition: p,
                    committed: None,
                    low: None,
                    high: None,
                    error: None,
                };
                match &committed {
                    Ok(tpl) => {
                        s.committed = tpl
                            .find_partition(&topic, p)
                            .and_then(|e| e.offset().to_raw())
                            .filter(|o| *o >= 0)
                    }
                    Err(e) => s.error = Some(format!("committed offsets: {e}")),
                }
                match consumer.fetch_watermarks(&topic, p, timeout) {
                    Ok((low, high)) => {
                        s.low = Some(low);
                        s.high = Some(high);
                    }
                    Err(e) => s.error = Some(format!("watermarks: {e}")),
                }
                parts.push(s);
            }
            out.push((topic, parts));
        }
        Ok(out)
    }
}
