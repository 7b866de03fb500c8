//! The librdkafka configuration of the consumer and of the dead-letter producer.

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

use crate::config::KafkaPlan;

/// The dead-letter producer's config: the same brokers and connection settings (security,
/// SASL, TLS, sockets) as the consumer, idempotent, acknowledged by all in-sync replicas.
pub fn producer_config(kafka: &KafkaPlan) -> ClientConfig {
    const CONNECTION: &[&str] = &[
        "security.",
        "sasl.",
        "ssl.",
        "socket.",
        "broker.",
        "client.",
        "reconnect.",
        "metadata.",
        "api.",
        "debug",
    ];
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "lakesink-dead-letters");
    msk_iam_settings(kafka, &mut cfg);
    for (k, v) in &kafka.properties {
        if CONNECTION.iter().any(|p| k.starts_with(p)) {
            cfg.set(k, v);
        }
    }
    cfg.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    cfg
}

/// AWS MSK IAM is SASL/OAUTHBEARER over TLS, with the token from [`super::KafkaAuth`]. A user's
/// `security.protocol` still wins (the config refuses another `sasl.mechanism`).
fn msk_iam_settings(kafka: &KafkaPlan, cfg: &mut ClientConfig) {
    if kafka.msk_iam.is_some() {
        cfg.set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "OAUTHBEARER");
    }
}

/// The consumer's librdkafka configuration: Lakesink's settings, then the user's, then the
/// settings the commit-after-upload protocol needs, which the user cannot change.
pub fn client_config(kafka: &KafkaPlan) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group_id)
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        // When the workers are busy the prefetch queue fills; librdkafka then backs each
        // partition off for `fetch.queue.backoff.ms` (1 s by default), which halved throughput
        // in the benchmark. Resume fetching promptly instead.
        .set("fetch.queue.backoff.ms", "20")
        .set("client.id", "lakesink")
        // librdkafka's debug contexts (`"debug" = "fetch,cgrp"`) are logged when asked for.
        .set_log_level(if kafka.properties.contains_key("debug") {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        });
    // The prefetch is reserved from the memory budget (see `Prefetch`); a user's values in
    // `[kafka.properties]` come next and were reserved as they are.
    if let Some(p) = kafka.prefetch {
        let fetch = p.fetch_max_bytes.max(1000);
        cfg.set(
            "queued.max.messages.kbytes",
            (p.queue_bytes >> 10).max(1).to_string(),
        )
        .set("fetch.max.bytes", fetch.to_string())
        .set("max.partition.fetch.bytes", fetch.min(1 << 20).to_string());
        // librdkafka refuses a fetch.max.bytes below message.max.bytes (1,000,000 by default),
        // which bounds only the requests a consumer sends.
        if fetch < 1_000_000 {
            cfg.set("message.max.bytes", fetch.to_string());
        }
    }
    msk_iam_settings(kafka, &mut cfg);
    for (k, v) in &kafka.properties {
        cfg.set(k, v);
    }
    // Offsets move only when the ledger says so.
    cfg.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Records of aborted transactions must never reach the lake (librdkafka's default too;
        // the config refuses another value).
        .set("isolation.level", "read_committed");
    cfg
}

#[cfg(test)]
mod tests {
    use crate::config::{KafkaPlan, Prefetch};

    fn with(prefetch: Prefetch) -> rdkafka::ClientConfig {
        let mut plan = KafkaPlan::plain("127.0.0.1:9092", "g");
        plan.prefetch = Some(prefetch);
        super::client_config(&plan)
    }

    #[test]
    fn the_client_is_configured_with_the_prefetch_the_budget_gives() {
        let none = std::collections::BTreeMap::new();
        // A 48 MiB budget: message.max.bytes follows a fetch below librdkafka's default.
        let cfg = with(Prefetch::for_budget(48 << 20, &none).unwrap());
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("3072"));
        assert_eq!(cfg.get("fetch.max.bytes"), Some("786432"));
        assert_eq!(cfg.get("max.partition.fetch.bytes"), Some("786432"));
        assert_eq!(cfg.get("message.max.bytes"), Some("786432"));
        let cfg = with(Prefetch::for_budget(1 << 30, &none).unwrap());
        assert_eq!(cfg.get("max.partition.fetch.bytes"), Some("1048576"));
        assert_eq!(cfg.get("message.max.bytes"), None);
        // A user's own value wins (it was reserved as it is).
        let mut plan = KafkaPlan::plain("127.0.0.1:9092", "g");
        plan.properties
            .insert("queued.max.messages.kbytes".into(), "10240".into());
        plan.prefetch = Some(Prefetch::for_budget(256 << 20, &plan.properties).unwrap());
        assert_eq!(
            super::client_config(&plan).get("queued.max.messages.kbytes"),
            Some("10240")
        );
        // A user's message.max.bytes above the fetch Lakesink would choose raises the fetch:
        // librdkafka refuses a fetch.max.bytes below it, and would not start.
        let mut plan = KafkaPlan::plain("127.0.0.1:9092", "g");
        plan.properties
            .insert("message.max.bytes".into(), "2000000".into());
        plan.prefetch = Some(Prefetch::for_budget(48 << 20, &plan.properties).unwrap());
        let cfg = super::client_config(&plan);
        assert_eq!(cfg.get("fetch.max.bytes"), Some("2000000"));
        assert_eq!(cfg.get("message.max.bytes"), Some("2000000"));
        let consumer: Result<rdkafka::consumer::BaseConsumer, _> = cfg.create();
        assert!(consumer.is_ok(), "librdkafka refuses: {:?}", consumer.err());
        // One too large for the budget is a configuration error, not a client that fails later.
        plan.properties
            .insert("message.max.bytes".into(), "8000000".into());
        let err = Prefetch::for_budget(48 << 20, &plan.properties).unwrap_err();
        assert!(err.contains("message.max.bytes"), "{err}");
        // A user's fetch below their message.max.bytes is theirs to mend, said at load.
        plan.properties
            .insert("message.max.bytes".into(), "2000000".into());
        plan.properties
            .insert("fetch.max.bytes".into(), "1000000".into());
        let err = Prefetch::for_budget(1 << 30, &plan.properties).unwrap_err();
        assert!(
            err.contains("fetch.max.bytes") && err.contains("below"),
            "{err}"
        );
    }
}
