//! The one place librdkafka configuration is assembled.

use crate::configuration::KafkaSettings;
use rdkafka::ClientConfig;
use std::time::Duration;

/// How often librdkafka reports statistics (queue depth, broker RTT) to the metrics.
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// librdkafka's `queue.buffering.max.kbytes` unless `kafka.options` sets it: bounded memory, so
/// a stalled broker fills the queue to this size, then writes are answered 503 queue_full at
/// once (librdkafka's default is 1 GiB).
const QUEUE_KBYTES: &str = "65536";

/// Largest share of `ack_timeout` kept back from librdkafka's `message.timeout.ms`.
const MAX_DELIVERY_RESERVE: Duration = Duration::from_millis(1500);

/// librdkafka's `message.timeout.ms` for a given `kafka.ack_timeout`.
///
/// librdkafka checks message timeouts about once a second, and a request may spend part of its
/// budget before enqueueing (creating its topic). Keeping 30 % of `ack_timeout` (at most 1.5 s)
/// back means librdkafka normally reports a message's fate before the request's deadline, so a
/// 503 is not followed by a late write of a message librdkafka was still retrying.
pub fn delivery_timeout(ack_timeout: Duration) -> Duration {
    ack_timeout - ack_timeout.mul_f64(0.3).min(MAX_DELIVERY_RESERVE)
}

/// Producer (and admin) configuration: hookstream's defaults first, then the operator's
/// pass-through options, then the settings hookstream's guarantees rely on, which always win
/// (configuration validation refuses them, and their aliases, in `kafka.options`).
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set(
            "client.id",
            concat!("hookstream/", env!("CARGO_PKG_VERSION")),
        )
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    config.set("queue.buffering.max.kbytes", QUEUE_KBYTES);
    // Every webhook waits for its batch to be sent: librdkafka's default 5 ms of batching delay
    // is most of a webhook's latency. 2 ms still makes batches of hundreds of records under load;
    // of 0.5, 1, 2, 3 and 5 ms it gave the lowest tail latency at 256 connections, with
    // throughput within run-to-run noise of the best.
    config.set("linger.ms", "2");
    for (key, value) in &settings.options {
        config.set(key, value);
    }
    let timeout_ms = delivery_timeout(settings.ack_timeout)
        .as_millis()
        .clamp(1, i32::MAX as u128);
    config
        .set("bootstrap.servers", &settings.brokers)
        // A 2xx means "durably written": wait for all in-sync replicas, never duplicate on retry.
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // librdkafka gives up on a message before the HTTP request's deadline (see
        // `delivery_timeout`), so a 503 is not followed by a silent late write.
        .set("message.timeout.ms", timeout_ms.to_string());
    config
}

/// librdkafka's `message.timeout.ms` of the patient producer (the spool's): a write already
/// answered 202 may take this long, retried by librdkafka's idempotent producer, so that a write
/// the broker receives before it freezes is decided by the broker, not guessed at.
pub const PATIENT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// The configuration of the patient producer: [`producer_config`] with
/// [`PATIENT_DELIVERY_TIMEOUT`].
pub fn patient_producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = producer_config(settings);
    config.set(
        "message.timeout.ms",
        PATIENT_DELIVERY_TIMEOUT.as_millis().to_string(),
    );
    config
}

/// How many bytes the producer queue holds (`queue.buffering.max.kbytes`).
pub fn producer_queue_bytes(settings: &KafkaSettings) -> usize {
    settings
        .options
        .get("queue.buffering.max.kbytes")
        .map_or(QUEUE_KBYTES, String::as_str)
        .trim()
        .parse::<usize>()
        .map_or(usize::MAX, |kbytes| kbytes.saturating_mul(1024))
}

/// Consumer configuration (`hookstream tail`, `dead-letters list|replay`): the operator's
/// pass-through options (security), then the keys these readers rely on. Offsets are committed
/// explicitly, never automatically.
pub fn consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in &settings.options {
        config.set(key, value);
    }
    config
        .set("bootstrap.servers", &settings.brokers)
        .set(
            "client.id",
            concat!("hookstream/", env!("CARGO_PKG_VERSION")),
        )
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Only what the producer committed: a reader never sees an aborted write.
        .set("isolation.level", "read_committed");
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn guarantees_override_pass_through_options() {
        let settings = KafkaSettings {
            brokers: "b:9092".into(),
            topic_prefix: "webhooks".into(),
            ack_timeout: Duration::from_millis(1500),
            topic_partitions: 1,
            topic_replication_factor: 1,
            max_topics_per_provider: 256,
            options: BTreeMap::from([
                ("acks".to_string(), "1".to_string()),
                ("enable.idempotence".to_string(), "false".to_string()),
                ("compression.type".to_string(), "lz4".to_string()),
            ]),
        };
        let c = producer_config(&settings);
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("message.timeout.ms"), Some("1050"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn librdkafka_gives_up_before_the_request_deadline() {
        assert_eq!(
            delivery_timeout(Duration::from_secs(5)),
            Duration::from_millis(3500)
        );
        assert_eq!(
            delivery_timeout(Duration::from_secs(15)),
            Duration::from_millis(13500)
        );
        assert_eq!(
            delivery_timeout(Duration::from_secs(1)),
            Duration::from_millis(700)
        );
    }

    #[test]
    fn the_producer_queue_is_bounded_unless_the_operator_says_otherwise() {
        let mut settings = KafkaSettings {
            brokers: "b:9092".into(),
            topic_prefix: "webhooks".into(),
            ack_timeout: Duration::from_secs(5),
            topic_partitions: 1,
            topic_replication_factor: 1,
            max_topics_per_provider: 256,
            options: BTreeMap::new(),
        };
        assert_eq!(
            producer_config(&settings).get("queue.buffering.max.kbytes"),
            Some("65536")
        );
        assert_eq!(producer_config(&settings).get("linger.ms"), Some("2"));
        settings
            .options
            .insert("queue.buffering.max.kbytes".into(), "1024".into());
        assert_eq!(
            producer_config(&settings).get("queue.buffering.max.kbytes"),
            Some("1024")
        );
    }

    #[test]
    fn managed_cluster_security_settings_are_supported() {
        // librdkafka refuses these at client creation when built without TLS support.
        let mut settings = KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            topic_prefix: "webhooks".into(),
            ack_timeout: Duration::from_secs(1),
            topic_partitions: 1,
            topic_replication_factor: 1,
            max_topics_per_provider: 256,
            options: BTreeMap::new(),
        };
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "user"),
            ("sasl.password", "password"),
        ] {
            settings.options.insert(key.into(), value.into());
        }
        let producer: Result<rdkafka::producer::FutureProducer, _> =
            producer_config(&settings).create();
        assert!(producer.is_ok(), "{:?}", producer.err());
    }
}
