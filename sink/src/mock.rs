//! The embedded broker: librdkafka's in-process mock cluster, reachable over TCP by any Kafka
//! client. Used by `lakesink demo`, the benchmark and the in-process tests.
//!
//! Mind its limit: it keeps only the newest ~5 MiB (and 100,000 batches) of each partition and
//! silently drops older data, so producers must not run far ahead of the consumer.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, Producer};

/// An in-process Kafka cluster that lives as long as this value.
pub struct EmbeddedBroker {
    /// The client that owns the mock cluster.
    owner: BaseProducer,
    bootstrap: String,
}

impl EmbeddedBroker {
    /// Starts a mock cluster of `brokers` brokers.
    pub fn start(brokers: u32) -> KafkaResult<EmbeddedBroker> {
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", brokers.to_string())
            .set("log_level", "3")
            .create()?;
        let mock = owner
            .client()
            .mock_cluster()
            .ok_or(rdkafka::error::KafkaError::MockCluster(
                rdkafka::types::RDKafkaErrorCode::Fail,
            ))?;
        let bootstrap = mock.bootstrap_servers();
        drop(mock);
        // The first group join waits 3 s by default (group.initial.rebalance.delay.ms); a
        // demo and tests do not need to.
        // SAFETY: the handle is valid while `owner` lives, and the call only enqueues a
        // request to the mock cluster's own thread.
        unsafe {
            let h = rdkafka_sys::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
            if !h.is_null() {
                rdkafka_sys::rd_kafka_mock_group_initial_rebalance_delay_ms(h, 0);
            }
        }
        Ok(EmbeddedBroker { owner, bootstrap })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// The librdkafka handle that owns the mock cluster (valid while `self` lives): for the
    /// benchmark's broker, which raises the mock's retention through it.
    pub fn native_client(&self) -> *mut rdkafka_sys::RDKafka {
        self.owner.client().native_ptr()
    }

    /// Makes the next `errors.len()` requests of one kind (`api`) fail with these errors, one
    /// each, in order: librdkafka's mock error injection, for tests of failure handling.
    pub fn fail_requests(
        &self,
        api: rdkafka_sys::types::RDKafkaApiKey,
        errors: &[rdkafka_sys::types::RDKafkaRespErr],
    ) -> KafkaResult<()> {
        let mock =
            self.owner
                .client()
                .mock_cluster()
                .ok_or(rdkafka::error::KafkaError::MockCluster(
                    rdkafka::types::RDKafkaErrorCode::Fail,
                ))?;
        mock.request_errors(api, errors);
        Ok(())
    }

    /// Creates a topic (the admin API's CreateTopics times out on the mock; this does not).
    pub fn create_topic(&self, name: &str, partitions: i32) -> KafkaResult<()> {
        let mock =
            self.owner
                .client()
                .mock_cluster()
                .ok_or(rdkafka::error::KafkaError::MockCluster(
                    rdkafka::types::RDKafkaErrorCode::Fail,
                ))?;
        mock.create_topic(name, partitions, 1)
    }
}
