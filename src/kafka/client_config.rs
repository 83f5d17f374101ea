//! The one place librdkafka configuration is assembled.

use crate::configuration::KafkaSettings;
use rdkafka::ClientConfig;

/// How often librdkafka reports statistics (queue depth, broker RTT) to the metrics.
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// Producer (and admin) configuration: the operator's pass-through options first, then the
/// settings hookstream's guarantees rely on, which therefore always win.
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in &settings.options {
        config.set(key, value);
    }
    let ack_timeout_ms = settings.ack_timeout.as_millis().clamp(1, i32::MAX as u128);
    config
        .set("bootstrap.servers", &settings.brokers)
        .set(
            "client.id",
            concat!("hookstream/", env!("CARGO_PKG_VERSION")),
        )
        // A 2xx means "durably written": wait for all in-sync replicas, never duplicate on retry.
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Give up on a message when the HTTP caller gives up on it, so a 503 is never followed by
        // a silent late write.
        .set("message.timeout.ms", ack_timeout_ms.to_string())
        .set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn guarantees_override_pass_through_options() {
        let settings = KafkaSettings {
            brokers: "b:9092".into(),
            topic_prefix: "webhooks".into(),
            ack_timeout: Duration::from_millis(1500),
            topic_partitions: 1,
            topic_replication_factor: 1,
            options: BTreeMap::from([
                ("acks".to_string(), "1".to_string()),
                ("enable.idempotence".to_string(), "false".to_string()),
                ("compression.type".to_string(), "lz4".to_string()),
            ]),
        };
        let c = producer_config(&settings);
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("message.timeout.ms"), Some("1500"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:9092"));
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
