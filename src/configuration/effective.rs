//! The effective configuration as TOML (`hookstream config check`), every secret redacted.

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

/// librdkafka options, with the values of those that hold credentials redacted.
pub(super) fn redacted_options<S: Serializer>(
    options: &BTreeMap<String, String>,
    out: S,
) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, &str> = options
        .iter()
        .map(|(key, value)| {
            let value = if is_secret_option(key) {
                REDACTED
            } else {
                value.as_str()
            };
            (key.as_str(), value)
        })
        .collect();
    out.collect_map(shown)
}

/// librdkafka properties that carry credentials: passwords, client secrets, inline keys and
/// the OAUTHBEARER configuration.
fn is_secret_option(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".pem")
        || key == "sasl.oauthbearer.config"
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
        for (key, value) in [
            ("sasl.password", "sasl-password"),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY-----"),
            ("sasl.oauthbearer.client.secret", "oauth-secret"),
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
        ] {
            assert!(!text.contains(secret), "{secret} shown:\n{text}");
        }
        assert!(text.contains("compression.type\" = \"zstd\""), "{text}");
        assert!(text.contains("ack_timeout = \"5s\""), "{text}");
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
