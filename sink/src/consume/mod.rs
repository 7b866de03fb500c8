//! Consume stage: the rdkafka consumer-group member. One thread polls, copies each record once
//! into a per-partition batch for the worker that owns the partition, commits what the ledger
//! says is safe, and handles rebalances.
//!
//! Rebalances: on revocation the callback flushes the revoked partitions' records to their
//! workers, has them cut and upload their open segments, commits the safe offsets, and only then
//! returns, so the revocation completes after the commit — or, past the drain timeout, without
//! committing what was not uploaded. The ledger forgets a revoked partition, so nothing about it
//! is ever committed after another member took it over.
//!
//! - `offsets`: committed offsets, watermarks and commits, asked of Kafka;
//! - `partitions`: the assigned partitions, their batches, and the rebalance callbacks;
//! - `poll`: the poll loop, its pauses, commits and drain.

mod offsets;
mod partitions;
mod poll;
#[cfg(test)]
mod tests;

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::commit::CommitError;

pub use crate::kafka::{client_config, producer_config};
pub use offsets::{committed_offsets, high_watermarks};
pub use partitions::{Shared, SinkContext};
pub use poll::{Control, Ending, PollLoop};

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("creating the Kafka consumer for {brokers}: {source}")]
    Create {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka metadata from {brokers}: {source}")]
    Metadata {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("topic `{topic}` does not exist on {brokers}")]
    NoTopic { topic: String, brokers: String },
    #[error("seeking {target} to read it again failed: {source}")]
    Seek {
        /// The partition and the offset, e.g. `topic[3] to Offset(42)`.
        target: String,
        #[source]
        source: KafkaError,
    },
    #[error("the Kafka client failed: {source}")]
    Fatal {
        #[source]
        source: KafkaError,
    },
    #[error("offsets cannot be committed, and retrying will not help (check the group's ACLs: Describe and Read on the group, Read on the topics): {source}")]
    CommitRefused {
        #[source]
        source: CommitError,
    },
    #[error("offsets could not be committed for {failing:?} (pipeline.commit_timeout); the last error: {source}")]
    CommitTimedOut {
        failing: Duration,
        #[source]
        source: CommitError,
    },
}
