//! The one place librdkafka configuration is assembled, and checked.
//!
//! Length: about half of it is the tests, one per enforced or derived property.

use crate::configuration::{self, ConfigError, KafkaSettings, REDACTED};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, ProducerContext};
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

/// More than the configuration warnings librdkafka may log while a client is created.
const LOGGED_AT_CREATION: usize = 64;

/// Whether librdkafka accepts the producer configuration `serve` would create its clients with —
/// every property of `kafka.options` known to it, every value valid, the files they name (CA,
/// certificate, key) loadable — without connecting to anything: a producer is created from it
/// with no bootstrap server, so no broker is contacted, and dropped.
///
/// `Ok` holds librdkafka's configuration warnings (a consumer property set for the producer, a
/// deprecated property). `Err` names the key at fault and says librdkafka's reason; a value is
/// shown only when the key is known not to be secret ([`configuration::shows_option`]).
pub fn check_producer_config(settings: &KafkaSettings) -> Result<Vec<String>, ConfigError> {
    let mut config = producer_config(settings);
    config.remove("bootstrap.servers");
    // Configuration warnings are logged while the client is created; the level the process
    // logs at (none, for `config check`) must not hide them.
    config.set_log_level(RDKafkaLogLevel::Warning);
    let context = Checking::default();
    let warnings = context.warnings.clone();
    let producer: BaseProducer<Checking> = config
        .create_with_context(context)
        .map_err(|error| refused(settings, error))?;
    // The warnings wait in the client's queue; each poll serves one, without waiting.
    for _ in 0..LOGGED_AT_CREATION {
        producer.poll(Duration::ZERO);
    }
    drop(producer);
    let warnings = std::mem::take(&mut *warnings.lock());
    Ok(warnings
        .into_iter()
        .map(|warning| format!("librdkafka: {}", scrubbed(settings, &warning)))
        .collect())
}

/// librdkafka's refusal, as a configuration error naming the key.
fn refused(settings: &KafkaSettings, error: KafkaError) -> ConfigError {
    let (key, why) = match error {
        KafkaError::ClientConfig(_, description, key, _) => (Some(key), description),
        KafkaError::ClientCreation(why) => (None, why),
        other => (None, other.to_string()),
    };
    let why = scrubbed(settings, why.trim_end_matches('.'));
    let key = match key {
        Some(key) if settings.options.contains_key(&key) => format!("kafka.options.\"{key}\""),
        Some(key) if key == "message.timeout.ms" => "kafka.ack_timeout".to_string(),
        _ => mentioned_option(settings, &why).map_or("kafka.options".to_string(), |key| {
            format!("kafka.options.\"{key}\"")
        }),
    };
    let missing = missing_file(settings, &key);
    ConfigError::Invalid(key, format!("is refused by librdkafka: {why}{missing}"))
}

/// For an option naming a file that is shown (`ssl.ca.location`, …), and names one that does
/// not exist: that, which librdkafka's message may not say in words.
fn missing_file(settings: &KafkaSettings, key: &str) -> String {
    let Some(option) = key
        .strip_prefix("kafka.options.\"")
        .and_then(|k| k.strip_suffix('"'))
    else {
        return String::new();
    };
    match settings.options.get(option) {
        Some(path)
            if option.ends_with(".location")
                && configuration::shows_option(option)
                && !std::path::Path::new(path).exists() =>
        {
            format!(" ({path} does not exist)")
        }
        _ => String::new(),
    }
}

/// The longest of the `kafka.options` keys `message` names, as the option at fault.
fn mentioned_option<'a>(settings: &'a KafkaSettings, message: &str) -> Option<&'a str> {
    settings
        .options
        .keys()
        .filter(|key| names(message, key))
        .max_by_key(|key| key.len())
        .map(String::as_str)
}

/// Whether `message` names the property `name` (`ssl.key` is not named by `ssl.key.location`).
fn names(message: &str, name: &str) -> bool {
    let in_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    message.match_indices(name).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let mut after = message[at + name.len()..].chars();
        let next = after.next();
        let continues = match next {
            Some('.') => after.next().is_some_and(in_name),
            Some(c) => in_name(c),
            None => false,
        };
        !before.is_some_and(|c| in_name(c) || c == '.') && !continues
    })
}

/// `message` without any value of `kafka.options` that is not known to be harmless, nor the
/// userinfo of a URL: librdkafka quotes values in its messages ("Invalid value … for
/// configuration property …"). A value is replaced where it stands alone, not inside a longer
/// word or number (a `5` set for one property leaves `x509` as it is).
fn scrubbed(settings: &KafkaSettings, message: &str) -> String {
    let mut values: Vec<(&str, String)> = settings
        .options
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .filter_map(|(key, value)| {
            if !configuration::shows_option(key) {
                Some((value.as_str(), REDACTED.to_string()))
            } else {
                let shown = configuration::without_userinfo(value);
                (shown != *value).then_some((value.as_str(), shown))
            }
        })
        .collect();
    // The longest first, so that a value holding another is replaced whole.
    values.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
    let mut message = message.to_string();
    for (value, shown) in values {
        message = replaced_where_alone(&message, value, &shown);
    }
    message
}

/// `text` with every occurrence of `value` that is not part of a longer word replaced by
/// `shown`.
fn replaced_where_alone(text: &str, value: &str, shown: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(value) {
        let preceding = rest[..at].chars().next_back().or(before);
        let following = rest[at + value.len()..].chars().next();
        let alone = !preceding.is_some_and(char::is_alphanumeric)
            && !following.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..at]);
        out.push_str(if alone { shown } else { value });
        before = value.chars().next_back();
        rest = &rest[at + value.len()..];
    }
    out.push_str(rest);
    out
}

/// The context of the producer [`check_producer_config`] creates: keeps librdkafka's
/// configuration warnings, logs nothing.
#[derive(Default)]
struct Checking {
    warnings: std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
}

impl ClientContext for Checking {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let warning = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if warning && fac == "CONFWARN" {
            self.warnings.lock().push(message.to_string());
        }
    }

    fn error(&self, _: KafkaError, _: &str) {}
}

impl ProducerContext for Checking {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
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

    fn with_options(options: &[(&str, &str)]) -> KafkaSettings {
        KafkaSettings {
            brokers: "10.255.255.1:9092".into(),
            topic_prefix: "webhooks".into(),
            ack_timeout: Duration::from_secs(5),
            topic_partitions: 1,
            topic_replication_factor: 1,
            max_topics_per_provider: 256,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn librdkafka_checks_the_options_without_connecting() {
        // An address nothing answers on: were the check to connect, it would not be this quick
        // (and the CI machine has no route there).
        let started = std::time::Instant::now();
        let warnings = check_producer_config(&with_options(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "user"),
            ("sasl.password", "hunter2"),
            ("compression.type", "lz4"),
        ]))
        .expect("accepted");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_unknown_property_is_refused_naming_the_key_with_librdkafkas_message() {
        let err = check_producer_config(&with_options(&[("security_protocol", "SASL_SSL")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "configuration key `kafka.options.\"security_protocol\"` is refused by librdkafka: No such configuration property: \"security_protocol\""
        );
    }

    #[test]
    fn an_invalid_value_is_named_and_shown_only_when_it_is_not_secret() {
        let err = check_producer_config(&with_options(&[("security.protocol", "SASL_SSLX")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`kafka.options.\"security.protocol\"`")
                && err.contains("Invalid value \"SASL_SSLX\""),
            "{err}"
        );
        // A property whose value is not known to be harmless: its value is never shown.
        let err = check_producer_config(&with_options(&[("client.dns.lookup", "hunter2")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "configuration key `kafka.options.\"client.dns.lookup\"` is refused by librdkafka: Invalid value \"<redacted>\" for configuration property \"client.dns.lookup\""
        );
        assert_eq!(
            scrubbed(
                &with_options(&[("ssl.key.password", "hunter2"), ("fetch.min.bytes", "5")]),
                "Invalid value \"hunter2\" for x509 at 5 ms"
            ),
            "Invalid value \"<redacted>\" for x509 at <redacted> ms"
        );
        assert_eq!(
            scrubbed(
                &with_options(&[(
                    "sasl.oauthbearer.token.endpoint.url",
                    "https://id:pw@idp.example.com/token"
                )]),
                "cannot reach https://id:pw@idp.example.com/token"
            ),
            "cannot reach https://<redacted>@idp.example.com/token"
        );
    }

    #[test]
    fn a_property_is_named_by_its_whole_name_only() {
        assert!(names("ssl.key.location failed: x", "ssl.key.location"));
        assert!(!names("ssl.key.location failed: x", "ssl.key"));
        assert!(!names("ssl.key.location failed: x", "key.location"));
        assert!(names("`sasl.username` must be set", "sasl.username"));
        assert!(names("cannot use ssl.ca.location.", "ssl.ca.location"));
        assert!(!names("ssl.ca.locations", "ssl.ca.location"));
    }

    #[test]
    fn a_file_that_cannot_be_loaded_is_named() {
        let err = check_producer_config(&with_options(&[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", "/nonexistent/ca.crt"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "configuration key `kafka.options.\"ssl.ca.location\"` is refused by librdkafka: "
            ) && err.ends_with("(/nonexistent/ca.crt does not exist)"),
            "{err}"
        );
    }

    #[test]
    fn a_combination_librdkafka_refuses_at_creation_is_refused() {
        // Idempotence (always on) allows at most 5 requests in flight.
        let err = check_producer_config(&with_options(&[(
            "max.in.flight.requests.per.connection",
            "10",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("configuration key `kafka.options` is refused by librdkafka: ")
                && err.contains("enable.idempotence"),
            "{err}"
        );
    }

    #[test]
    fn librdkafkas_configuration_warnings_are_kept() {
        let warnings =
            check_producer_config(&with_options(&[("fetch.min.bytes", "5")])).expect("accepted");
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("librdkafka: ") && w.contains("fetch.min.bytes")),
            "{warnings:?}"
        );
    }
}
