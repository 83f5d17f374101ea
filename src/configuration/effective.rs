//! The effective configuration as TOML (`hookstream config check`), every secret redacted; and
//! the keys whose values a configuration error may show ([`shows_value_of`]).

use super::Settings;
use secrecy::{ExposeSecret, SecretString};
use serde::Serializer;
use std::collections::BTreeMap;

/// What a secret that is set is shown as. An empty one is shown empty: it says "unset".
pub const REDACTED: &str = "<redacted>";

/// The settings as TOML, as `serve` would use them, with secrets redacted.
pub fn effective_toml(settings: &Settings) -> Result<String, String> {
    toml::to_string_pretty(settings).map_err(|e| format!("cannot show the configuration: {e}"))
}

pub(super) fn redacted<S: Serializer>(secret: &SecretString, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(if secret.expose_secret().is_empty() {
        ""
    } else {
        REDACTED
    })
}

/// librdkafka options, shown only when known to be harmless ([`SHOWN_OPTIONS`]); every other
/// value is redacted, whatever its name. A URL's userinfo is removed.
pub(super) fn redacted_options<S: Serializer>(
    options: &BTreeMap<String, String>,
    out: S,
) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, String> = options
        .iter()
        .map(|(key, value)| {
            let value = if shows_option(key) {
                without_userinfo(value)
            } else {
                REDACTED.to_string()
            };
            (key.as_str(), value)
        })
        .collect();
    out.collect_map(shown)
}

/// librdkafka properties whose values are printed: an allowlist, so that a credential under a
/// name nobody thought of (a passphrase, an assertion, a token) is redacted too.
pub const SHOWN_OPTIONS: &[&str] = &[
    "api.version.request",
    "batch.num.messages",
    "batch.size",
    "bootstrap.servers",
    "broker.address.family",
    "broker.address.ttl",
    "client.id",
    "client.rack",
    "compression.codec",
    "compression.level",
    "compression.type",
    "connections.max.idle.ms",
    "debug",
    "enable.ssl.certificate.verification",
    "linger.ms",
    "log.connection.close",
    "message.max.bytes",
    "metadata.max.age.ms",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "retry.backoff.max.ms",
    "retry.backoff.ms",
    "sasl.kerberos.service.name",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.token.endpoint.url",
    "security.protocol",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.receive.buffer.bytes",
    "socket.send.buffer.bytes",
    "socket.timeout.ms",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.endpoint.identification.algorithm",
    "ssl.key.location",
    "sticky.partitioning.linger.ms",
    "topic.metadata.refresh.interval.ms",
];

/// Whether the value of the librdkafka property `option` may be printed ([`SHOWN_OPTIONS`]; a
/// URL without its userinfo): every other one is a secret, whatever its name.
pub fn shows_option(option: &str) -> bool {
    SHOWN_OPTIONS.contains(&option)
}

/// The keys whose values are not secret, so that a configuration error may show them: those the
/// effective configuration prints as they are. An allowlist: every other key — a secret, a URL
/// that may hold a password, a table (which may hold either) — has its value described by its
/// kind, never shown, whatever variable or file set it.
const SHOWN_KEYS: &[&str] = &[
    "server.host",
    "server.port",
    "server.admin_port",
    "server.max_body_bytes",
    "server.retry_after",
    "server.shutdown_timeout",
    "server.shutdown_delay",
    "server.readiness_interval",
    "server.header_timeout",
    "server.body_timeout",
    "server.keep_alive",
    "server.max_connections",
    "server.max_in_flight",
    "server.tls.cert_file",
    "server.tls.key_file",
    "kafka.brokers",
    "kafka.topic_prefix",
    "kafka.ack_timeout",
    "kafka.topic_partitions",
    "kafka.topic_replication_factor",
    "kafka.max_topics_per_provider",
    "dedupe.backend",
    "dedupe.window",
    "dedupe.max_entries",
    "dedupe.redis.key_prefix",
    "dedupe.redis.on_unavailable",
    "dedupe.redis.timeout",
    "schema_registry.username",
    "schema_registry.request_timeout",
    "spool.enabled",
    "spool.dir",
    "spool.max_bytes",
    "spool.after",
    "dead_letter.enabled",
    "dead_letter.topic",
    "dead_letter.replay_group",
    "log.level",
    "log.format",
];

/// Whether a configuration error may show the value of `key`: a key of [`SHOWN_KEYS`], a key
/// defining a provider in configuration (`providers.NAME.preset`, `….signature.header`, …; never
/// `….secrets`), or a librdkafka option of [`SHOWN_OPTIONS`].
pub(super) fn shows_value_of(key: &str) -> bool {
    if SHOWN_KEYS.contains(&key) {
        return true;
    }
    if let Some(option) = key.strip_prefix("kafka.options.") {
        return shows_option(option.trim_matches('"'));
    }
    key.strip_prefix("providers.")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(_, key)| {
            crate::providers::configured::definition::keys()
                .iter()
                .any(|k| k == key)
        })
}

/// `url` without the userinfo of its authority (`https://user:pw@host/x` →
/// `https://<redacted>@host/x`): how every URL is printed or logged. Text that is not a URL is
/// returned as it is.
pub fn without_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_len].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &url[..authority_start], &rest[at..]),
        None => url.to_string(),
    }
}

/// A URL field, printed without its userinfo.
pub(super) fn url_without_userinfo<S: Serializer>(url: &str, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(&without_userinfo(url))
}

/// A URL that is a secret as a whole (it may hold a password): printed without its userinfo.
pub(super) fn secret_url<S: Serializer>(url: &SecretString, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(&without_userinfo(url.expose_secret()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_is_redacted_and_everything_else_shown() {
        let mut settings = super::super::get_configuration(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config"
        )))
        .expect("defaults");
        settings.providers.insert(
            "livesession".into(),
            super::super::ProviderSettings::with_secrets("provider-secret"),
        );
        settings.schema_registry.set_password("registry-password");
        settings.dedupe.redis.url = "redis://:redis-password@redis:6379".to_string().into();
        settings.schema_registry.url = "https://registry-user:url-password@registry:8081".into();
        for (key, value) in [
            ("sasl.password", "sasl-password"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            ("sasl.oauthbearer.client.secret", "oauth-secret"),
            (
                "sasl.oauthbearer.assertion.private.key.passphrase",
                "assertion-passphrase",
            ),
            ("ssl.keystore.password", "keystore-password"),
            ("compression.type", "zstd"),
        ] {
            settings.kafka.options.insert(key.into(), value.into());
        }
        let text = effective_toml(&settings).expect("TOML");
        for secret in [
            "provider-secret",
            "registry-password",
            "redis-password",
            "sasl-password",
            "PRIVATE KEY",
            "oauth-secret",
            "assertion-passphrase",
            "keystore-password",
            "url-password",
            "registry-user",
        ] {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
        assert!(text.contains("compression.type\" = \"zstd\""), "{text}");
        assert!(text.contains("ack_timeout = \"5s\""), "{text}");
        assert!(
            text.contains("url = \"https://<redacted>@registry:8081\""),
            "{text}"
        );
        assert!(
            text.contains("url = \"redis://<redacted>@redis:6379\""),
            "{text}"
        );
        assert!(
            text.contains("\"sasl.oauthbearer.assertion.private.key.passphrase\" = \"<redacted>\""),
            "{text}"
        );
        assert!(
            text.contains("[providers.livesession]\nsecrets = \"<redacted>\""),
            "{text}"
        );
        assert!(
            text.contains("[providers.seismic]\nsecrets = \"\""),
            "{text}"
        );
        // What is shown is a configuration hookstream reads back the same way.
        let parsed: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(parsed["server"]["admin_port"].as_integer(), Some(9090));
    }
}

#[cfg(test)]
mod url_tests {
    use super::without_userinfo;

    #[test]
    fn userinfo_is_removed_from_every_url_and_nothing_else_changes() {
        assert_eq!(
            without_userinfo("http://user:password@host:8081/path?q=a@b"),
            "http://<redacted>@host:8081/path?q=a@b"
        );
        assert_eq!(
            without_userinfo("redis://:p%40ss@redis:6379/0"),
            "redis://<redacted>@redis:6379/0"
        );
        assert_eq!(
            without_userinfo("https://registry:8081"),
            "https://registry:8081"
        );
        assert_eq!(without_userinfo("host:9092"), "host:9092");
        assert_eq!(without_userinfo(""), "");
    }
}
