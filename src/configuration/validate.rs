//! What serde cannot check, section by section; every error names the key at fault.

use super::{ConfigError, DedupeBackend, KafkaSettings, Settings};
use crate::naming::is_valid_topic_prefix;
use crate::providers;
use crate::providers::configured::Configured;
use secrecy::ExposeSecret;
use std::time::Duration;

/// librdkafka properties hookstream sets itself, with librdkafka's other names for them and
/// why they cannot be set in `kafka.options`.
const ENFORCED_OPTIONS: &[(&str, &[&str], &str)] = &[
    (
        "acks",
        &["request.required.acks"],
        "hookstream always writes with acks=all",
    ),
    (
        "enable.idempotence",
        &[],
        "hookstream's producer is always idempotent",
    ),
    (
        "message.timeout.ms",
        &["delivery.timeout.ms"],
        "it is derived from kafka.ack_timeout",
    ),
    (
        "bootstrap.servers",
        &["metadata.broker.list"],
        "set kafka.brokers instead",
    ),
];

type Checked = Result<(), ConfigError>;

fn invalid(key: impl Into<String>, why: impl Into<String>) -> Checked {
    Err(ConfigError::Invalid(key.into(), why.into()))
}

fn positive(key: &str, value: f64) -> Checked {
    if value > 0.0 {
        Ok(())
    } else {
        invalid(key, "must be greater than zero")
    }
}

impl Settings {
    /// Checks what serde cannot, naming the key at fault.
    pub fn validate(&self) -> Checked {
        self.validate_server()?;
        validate_kafka(&self.kafka)?;
        self.validate_rest()
    }

    fn validate_server(&self) -> Checked {
        let s = &self.server;
        positive("server.max_body_bytes", s.max_body_bytes as f64)?;
        // actix reads its clock every 500 ms: a shorter wait for a head cuts off every request,
        // and a keep-alive under a second is never enforced (its deadline has passed when it
        // is armed).
        if s.header_timeout < Duration::from_secs(1) {
            return invalid("server.header_timeout", "must be at least 1s");
        }
        positive("server.body_timeout", s.body_timeout.as_secs_f64())?;
        // Longer than any load balancer keeps an idle connection (AWS ALB: at most 4000 s).
        if !s.keep_alive.is_zero() && s.keep_alive < Duration::from_secs(1)
            || s.keep_alive > Duration::from_secs(24 * 3600)
        {
            return invalid(
                "server.keep_alive",
                "must be 0s (each connection closed after its response) or from 1s to 24h",
            );
        }
        positive("server.max_connections", s.max_connections as f64)?;
        positive("server.max_in_flight", s.max_in_flight as f64)?;
        if s.tls.enabled()
            && (s.tls.cert_file.trim().is_empty() || s.tls.key_file.trim().is_empty())
        {
            return invalid(
                "server.tls",
                "needs both cert_file and key_file (or neither, for plain HTTP)",
            );
        }
        Ok(())
    }

    fn validate_rest(&self) -> Checked {
        positive("dedupe.max_entries", self.dedupe.max_entries as f64)?;
        if self.dedupe.window.is_zero() || self.dedupe.window > super::MAX_DEDUPE_WINDOW {
            return invalid(
                "dedupe.window",
                "must be greater than zero and at most 30 days",
            );
        }
        self.validate_redis()?;
        let registry = &self.schema_registry;
        if registry.enabled()
            && !(registry.url.starts_with("http://") || registry.url.starts_with("https://"))
        {
            return invalid("schema_registry.url", "must start with http:// or https://");
        }
        if !is_valid_topic_prefix(&self.dead_letter.topic(&self.kafka.topic_prefix)) {
            return invalid(
                "dead_letter.topic",
                "must be 1-100 characters of [A-Za-z0-9._-]",
            );
        }
        if self.dead_letter.replay_group.trim().is_empty() {
            return invalid("dead_letter.replay_group", "must not be empty");
        }
        if self.spool.enabled {
            if self.spool.dir.as_os_str().is_empty() {
                return invalid("spool.dir", "must be set when spool.enabled = true");
            }
            if self.spool.max_bytes == 0 {
                return invalid("spool.max_bytes", "must be greater than zero");
            }
            positive("spool.after", self.spool.after.as_secs_f64())?;
            if self.spool.after >= self.kafka.ack_timeout {
                return invalid(
                    "spool.after",
                    "must be shorter than kafka.ack_timeout (a webhook waits that long for the broker before it is spooled)",
                );
            }
        }
        if let Err(why) = crate::telemetry::filter(&self.log.level) {
            return invalid("log.level", why);
        }
        if !matches!(self.log.format.as_str(), "json" | "pretty") {
            return invalid("log.format", "must be \"json\" or \"pretty\"");
        }
        self.validate_providers()
    }

    fn validate_redis(&self) -> Checked {
        let redis = &self.dedupe.redis;
        if self.dedupe.backend == DedupeBackend::Redis {
            let url = redis.url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return invalid(
                    "dedupe.redis.url",
                    "must start with redis:// or rediss:// when dedupe.backend = \"redis\"",
                );
            }
        }
        positive("dedupe.redis.timeout", redis.timeout.as_secs_f64())?;
        if redis.timeout >= self.kafka.ack_timeout {
            return invalid(
                "dedupe.redis.timeout",
                "must be shorter than kafka.ack_timeout (a Redis call happens within a write's deadline)",
            );
        }
        Ok(())
    }

    /// Built-ins take secrets alone; every other provider is defined here, compiles, and has
    /// secrets its scheme can read.
    fn validate_providers(&self) -> Checked {
        for (name, settings) in &self.providers {
            if providers::built_in(name).is_some() && !settings.definition().is_empty() {
                return invalid(
                    format!("providers.{name}"),
                    "is a built-in provider, defined in code: only its `secrets` can be set",
                );
            }
            // A name a letter or two from a built-in's, with nothing that defines a provider of
            // its own: a misspelt built-in.
            if providers::built_in(name).is_none() && settings.definition().is_empty() {
                let nearest =
                    super::strict::closest(name, providers::BUILT_IN.iter().map(|p| p.name()));
                if let Some(built_in) = nearest {
                    return invalid(
                        format!("providers.{name}"),
                        format!("is not a provider: did you mean `{built_in}`? (a provider of your own needs a `preset`, or a `signature` and `fields`)"),
                    );
                }
            }
        }
        for provider in providers::BUILT_IN {
            self.secrets_for(*provider)?;
        }
        // Compiled to be checked, then dropped: a registry keeps what it compiles for the life of
        // the process, and a configuration reloaded while serving is validated each time.
        for (name, settings) in &self.providers {
            if providers::built_in(name).is_some() {
                continue;
            }
            let provider = Configured::compile(name, &settings.definition())
                .map_err(|e| ConfigError::Invalid(e.key, e.problem))?;
            if self.secrets_for(&provider)?.is_empty() {
                return invalid(
                    format!("providers.{name}.secrets"),
                    "must be set: a provider defined in configuration needs its signing secret(s)",
                );
            }
        }
        Ok(())
    }
}

fn validate_kafka(kafka: &KafkaSettings) -> Checked {
    if kafka.brokers.trim().is_empty() {
        return invalid("kafka.brokers", "must list at least one host:port");
    }
    if !is_valid_topic_prefix(&kafka.topic_prefix) {
        return invalid(
            "kafka.topic_prefix",
            "must be 1-100 characters of [A-Za-z0-9._-]",
        );
    }
    positive("kafka.ack_timeout", kafka.ack_timeout.as_secs_f64())?;
    if kafka.ack_timeout > Duration::from_secs(3600) {
        // The deadline of the admin requests that create topics; librdkafka takes at most 1 h.
        return invalid(
            "kafka.ack_timeout",
            "must be at most 1h (a webhook's request waits that long at most)",
        );
    }
    positive("kafka.topic_partitions", f64::from(kafka.topic_partitions))?;
    positive(
        "kafka.max_topics_per_provider",
        kafka.max_topics_per_provider as f64,
    )?;
    positive(
        "kafka.topic_replication_factor",
        f64::from(kafka.topic_replication_factor),
    )?;
    for option in kafka.options.keys() {
        for (name, aliases, why) in ENFORCED_OPTIONS {
            let key = format!("kafka.options.\"{option}\"");
            if option == name {
                return invalid(key, format!("is set by hookstream itself: {why}"));
            }
            if aliases.contains(&option.as_str()) {
                return invalid(
                    key,
                    format!(
                        "is librdkafka's alias of `{name}`, which hookstream sets itself: {why}"
                    ),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::shipped_defaults as defaults;

    #[test]
    fn enforced_librdkafka_keys_and_their_aliases_are_refused_naming_both() {
        for (option, named) in [
            ("request.required.acks", "`acks`"),
            ("acks", "acks=all"),
            ("delivery.timeout.ms", "`message.timeout.ms`"),
            ("enable.idempotence", "idempotent"),
            ("metadata.broker.list", "`bootstrap.servers`"),
        ] {
            let mut s = defaults();
            s.kafka.options.insert(option.into(), "1".into());
            let err = s.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("kafka.options.\"{option}\"")),
                "{err}"
            );
            assert!(err.contains(named), "{err}");
        }
        let mut s = defaults();
        s.kafka
            .options
            .insert("compression.type".into(), "zstd".into());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn the_redis_backend_needs_a_redis_url_and_a_timeout_within_the_write_deadline() {
        let mut s = defaults();
        s.dedupe.backend = DedupeBackend::Redis;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("dedupe.redis.url"), "{err}");
        s.dedupe.redis.url = "http://user:secret-pw@host".to_string().into();
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("dedupe.redis.url") && !err.contains("secret-pw"),
            "{err}"
        );
        s.dedupe.redis.url = "rediss://user:secret-pw@host:6380/1".to_string().into();
        assert!(s.validate().is_ok());
        s.dedupe.redis.timeout = s.kafka.ack_timeout;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("dedupe.redis.timeout"), "{err}");
    }

    #[test]
    fn an_invalid_log_filter_is_refused() {
        let mut s = defaults();
        s.log.level = "hookstream=loud".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("log.level"), "{err}");
    }

    #[test]
    fn zero_bounds_are_refused() {
        let mut s = defaults();
        s.server.max_in_flight = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("server.max_in_flight"));
        let mut s = defaults();
        s.dedupe.window = super::super::MAX_DEDUPE_WINDOW * 2;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("dedupe.window"));
    }
}
