//! librdkafka clients and what Kafka says about a group's offsets, for the consumer, the
//! dead-letter producer and the tools that read the group from outside (`status`, `verify`, the
//! daemon's watermarks). A leaf: it knows the config and nothing of the pipeline.

mod auth;
mod config;
pub mod msk_iam;
mod offsets;

pub use auth::{consumer, KafkaAuth};
pub use config::{client_config, producer_config};
pub use offsets::{read_offsets, OffsetReader, OffsetsError, PartitionOffsets};
