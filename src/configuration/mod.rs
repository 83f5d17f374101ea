//! Layered, strict configuration.
//!
//! Layers, later ones overriding earlier ones:
//! 1. the defaults compiled into the binary (a copy of `config/default.toml`, so the binary runs
//!    anywhere);
//! 2. `{config_dir}/default.toml` (normally that same file);
//! 3. `{config_dir}/{HOOKSTREAM_ENV}.toml`, when `HOOKSTREAM_ENV` is set;
//! 4. environment variables `HOOKSTREAM__SECTION__KEY` (e.g. `HOOKSTREAM__KAFKA__BROKERS`).
//!
//! Then every `${VAR}` in a string value is replaced by that environment variable's value
//! ([`interpolate`]), so that no secret needs to be written in a file; an unset one stops startup.
//!
//! A key that does not exist — a typo in a file or in a variable's name — stops startup with a
//! message naming it and the nearest valid key ([`strict`]), and so does an invalid value
//! ([`validate`]), a layer that was asked for but is missing, and a `HOOKSTREAM_…` variable one
//! underscore short of one that is read ([`layers`]).
//!
//! Length: the settings' types and their documented defaults in one place (what `config check`
//! prints, key by key), and the tests of loading them; the strict checks live in `strict`.

mod changes;
mod effective;
mod interpolate;
mod layers;
mod strict;
mod validate;

pub use changes::{changed_keys, reloadable, ProviderChanges};
pub use effective::{effective_toml, shows_option, without_userinfo, REDACTED};
pub use interpolate::Reference;
pub use layers::ConfigDir;

use crate::providers::configured::definition::{FieldsDefinition, SignatureDefinition};
use crate::providers::configured::Definition;
use crate::providers::{self, Provider, Registry};
use crate::signature::Secret;
pub use crate::telemetry::LogSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const DEFAULTS: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub kafka: KafkaSettings,
    pub dedupe: DedupeSettings,
    /// Keyed by provider name; a provider without secrets is disabled.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderSettings>,
    pub schema_registry: SchemaRegistrySettings,
    pub dead_letter: DeadLetterSettings,
    pub spool: SpoolSettings,
    pub log: LogSettings,
}

/// `[spool]`: the durable local spool, for senders that do not retry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SpoolSettings {
    /// Off: a webhook the broker does not acknowledge in time is answered 503, as without it.
    #[serde(deserialize_with = "crate::boolean::deserialize")]
    pub enabled: bool,
    /// Where the spool lives: persistent storage (a lost disk loses its spool). Relative paths
    /// resolve against the working directory.
    pub dir: std::path::PathBuf,
    /// The most the spool's files may hold; full, webhooks are answered 503 again.
    pub max_bytes: u64,
    /// How long a webhook waits for the broker's acknowledgement before it is spooled instead
    /// (below `kafka.ack_timeout`, and well below the 10 s GitHub waits for an answer).
    #[serde(with = "crate::duration")]
    pub after: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSettings {
    pub host: String,
    /// The public port: `/webhooks/*` and `/healthz`.
    pub port: u16,
    /// The admin port: `/metrics`, `/healthz`, `/readyz`, `/rejections`. Never published: traffic figures are
    /// nobody's business outside the cluster.
    pub admin_port: u16,
    /// Largest request body accepted; larger ones get 413 before they are buffered.
    pub max_body_bytes: usize,
    /// `Retry-After` sent with every 503, so providers back off rather than hammer a sick broker.
    #[serde(with = "crate::duration")]
    pub retry_after: Duration,
    /// How long shutdown waits for in-flight requests, and then again for the producer to flush.
    #[serde(with = "crate::duration")]
    pub shutdown_timeout: Duration,
    /// After SIGTERM, how long `/readyz` answers 503 while requests are still served, so load
    /// balancers stop sending before the listener closes.
    #[serde(with = "crate::duration")]
    pub shutdown_delay: Duration,
    /// How often readiness checks the broker (and writes a canary while writes fail).
    #[serde(with = "crate::duration")]
    pub readiness_interval: Duration,
    /// Longest wait for a request's headers; a slower client gets 408 and is disconnected.
    #[serde(with = "crate::duration")]
    pub header_timeout: Duration,
    /// Longest wait for a whole body once the headers arrived; a slower client gets
    /// `408 request_timeout` and is disconnected, so slow clients cannot pile up.
    #[serde(with = "crate::duration")]
    pub body_timeout: Duration,
    /// How long an idle connection is kept for its next request (`0s`: closed after each
    /// response). Longer than load balancers keep idle upstream connections (AWS ALB and nginx:
    /// 60 s), so that none of them sends a request on a connection hookstream is closing — the
    /// provider would be answered 502 by the balancer.
    #[serde(with = "crate::duration")]
    pub keep_alive: Duration,
    /// Open connections served; one more is answered `503 overloaded` and closed. Bounds the
    /// memory that connections cost.
    pub max_connections: usize,
    /// Webhook requests processed at once; one more is answered `503 overloaded` at once
    /// instead of waiting in an unbounded queue.
    pub max_in_flight: usize,
    /// TLS on the public port, for deployments without a terminating proxy.
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first); empty means plain HTTP.
    pub cert_file: String,
    /// PEM private key of the leaf certificate.
    pub key_file: String,
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.trim().is_empty() || !self.key_file.trim().is_empty()
    }
}

/// Debug output redacts `options` as `config check` does (a SASL password is one of them).
#[derive(Clone, Deserialize, Serialize)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topic_prefix: String,
    /// The one deadline of a write: topic creation, enqueue and acknowledgement together.
    /// librdkafka's `message.timeout.ms` is derived from it, so a message's fate is known before
    /// its request is answered.
    #[serde(with = "crate::duration")]
    pub ack_timeout: Duration,
    /// Partitions and replication factor of topics hookstream creates.
    pub topic_partitions: i32,
    pub topic_replication_factor: i32,
    /// Most topics hookstream creates per provider: event names become topics, and a sender of
    /// free-form names must not create them without limit. Beyond it, new event names go to
    /// `{topic_prefix}.{provider}.OVERFLOW`, keeping their real `event_name`.
    pub max_topics_per_provider: usize,
    /// Extra librdkafka properties (security, compression, tuning). The ones hookstream's
    /// delivery guarantees rest on (acks, idempotence, timeouts) cannot be set here.
    #[serde(default, serialize_with = "effective::redacted_options")]
    pub options: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: BTreeMap<&str, String> = self
            .options
            .iter()
            .map(|(key, value)| {
                let shown = if shows_option(key) {
                    without_userinfo(value)
                } else {
                    effective::REDACTED.to_string()
                };
                (key.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("ack_timeout", &self.ack_timeout)
            .field("topic_partitions", &self.topic_partitions)
            .field("topic_replication_factor", &self.topic_replication_factor)
            .field("max_topics_per_provider", &self.max_topics_per_provider)
            .field("options", &options)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeadLetterSettings {
    /// Verified deliveries that cannot be normalized are kept in the dead-letter topic and
    /// answered 200; `false` answers them 400 (or 413) instead.
    #[serde(deserialize_with = "crate::boolean::deserialize")]
    pub enabled: bool,
    /// The dead-letter topic; empty means `{kafka.topic_prefix}.dead_letter`.
    topic: String,
    /// Consumer group of `hookstream dead-letters replay`.
    pub replay_group: String,
}

impl DeadLetterSettings {
    /// The dead-letter topic for `topic_prefix`.
    pub fn topic(&self, topic_prefix: &str) -> String {
        if self.topic.trim().is_empty() {
            format!("{topic_prefix}.dead_letter")
        } else {
            self.topic.trim().to_string()
        }
    }
}

/// The longest `dedupe.window` accepted.
pub const MAX_DEDUPE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DedupeSettings {
    /// Where written ids are remembered: this process only, or shared through Redis.
    pub backend: DedupeBackend,
    /// How long an accepted event id is remembered (at most [`MAX_DEDUPE_WINDOW`]).
    #[serde(with = "crate::duration")]
    pub window: Duration,
    /// Most ids remembered at once in this process (bounds memory; the oldest are forgotten
    /// first). With Redis, the size of the first-level cache in front of it.
    pub max_entries: usize,
    pub redis: RedisSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupeBackend {
    Memory,
    Redis,
}

/// What a delivery gets when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Written anyway: a duplicate is better than a loss.
    Write,
    /// `503 dedupe_unavailable`; the provider retries.
    Reject,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS). A secret: it may hold the
    /// password (shown without its userinfo).
    #[serde(serialize_with = "effective::secret_url")]
    pub url: SecretString,
    /// Used when not empty, instead of a password in the URL.
    #[serde(serialize_with = "effective::redacted")]
    pub password: SecretString,
    /// Prepended to every key, so several deployments can share one Redis.
    pub key_prefix: String,
    pub on_unavailable: OnUnavailable,
    /// Longest wait for one Redis call; within the request's `kafka.ack_timeout`.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SchemaRegistrySettings {
    /// Base URL of a Confluent-compatible Schema Registry; empty means single-object framing.
    /// Userinfo in it is used as basic auth when `username` is empty, and never shown.
    #[serde(serialize_with = "effective::url_without_userinfo")]
    pub url: String,
    /// Basic auth, used when `username` is not empty.
    pub username: String,
    #[serde(serialize_with = "effective::redacted")]
    password: SecretString,
    #[serde(with = "crate::duration")]
    pub request_timeout: Duration,
}

impl SchemaRegistrySettings {
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }

    pub fn basic_auth(&self) -> Option<(String, SecretString)> {
        (!self.username.is_empty()).then(|| (self.username.clone(), self.password.clone()))
    }

    pub fn set_password(&mut self, password: &str) {
        self.password = SecretString::from(password);
    }
}

/// `[providers.NAME]`: a built-in provider's secrets, or a provider defined in configuration
/// (a `preset`, or a `signature` and `fields`; see [`crate::providers::configured`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProviderSettings {
    /// Comma-separated signing secrets; any one matching is accepted (rotation).
    #[serde(default = "no_secrets", serialize_with = "effective::redacted")]
    secrets: SecretString,
    /// `standard-webhooks`, `github` or `stripe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub signature: SignatureDefinition,
    #[serde(default, skip_serializing_if = "is_default")]
    pub fields: FieldsDefinition,
    /// Event names answered `200 {"status":"ping"}` and never written.
    #[serde(
        default,
        deserialize_with = "crate::providers::configured::definition::list",
        skip_serializing_if = "Option::is_none"
    )]
    pub ping_events: Option<Vec<String>>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn no_secrets() -> SecretString {
    SecretString::from("")
}

impl ProviderSettings {
    pub fn with_secrets(secrets: &str) -> Self {
        Self {
            secrets: SecretString::from(secrets),
            preset: None,
            signature: SignatureDefinition::default(),
            fields: FieldsDefinition::default(),
            ping_events: None,
        }
    }

    /// A provider from `preset` (`standard-webhooks`, `github`, `stripe`) with `secrets`.
    pub fn with_preset(preset: &str, secrets: &str) -> Self {
        Self {
            preset: Some(preset.to_string()),
            ..Self::with_secrets(secrets)
        }
    }

    /// The definition of a provider configured here (empty for a built-in's settings).
    pub fn definition(&self) -> Definition {
        Definition {
            preset: self.preset.clone(),
            signature: self.signature.clone(),
            fields: self.fields.clone(),
            ping_events: self.ping_events.clone(),
        }
    }

    fn secret_list(&self) -> &str {
        self.secrets.expose_secret()
    }
}

impl Settings {
    /// Every provider this configuration serves: the built-ins and those it defines.
    pub fn provider_registry(&self) -> Result<Registry, ConfigError> {
        self.provider_registry_after(&Registry::built_in())
    }

    /// Every provider this configuration serves, taking from `previous` those it defines exactly
    /// as `previous` did (a reload compiles only what changed).
    pub fn provider_registry_after(&self, previous: &Registry) -> Result<Registry, ConfigError> {
        let definitions: Vec<(&str, Definition)> = self
            .providers
            .iter()
            .filter(|(name, _)| providers::built_in(name).is_none())
            .map(|(name, p)| (name.as_str(), p.definition()))
            .collect();
        previous
            .reusing(definitions.iter().map(|(n, d)| (*n, d)))
            .map_err(|e| ConfigError::Invalid(e.key, e.problem))
    }

    /// What is valid but most likely not meant, as `serve` warns at startup and `config check`
    /// prints.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let any_secret = self
            .providers
            .values()
            .any(|p| !p.secret_list().trim().is_empty());
        if !any_secret {
            warnings.push(
                "no provider has a signing secret: every webhook route answers 404 provider_disabled".to_string(),
            );
        }
        warnings
    }

    /// The signing secrets of `provider`, parsed as its scheme reads them (empty when it is
    /// disabled). `Err` names the problem, never a secret.
    pub fn secrets_for(&self, provider: &dyn Provider) -> Result<Vec<Secret>, ConfigError> {
        let Some(settings) = self.providers.get(provider.name()) else {
            return Ok(Vec::new());
        };
        provider
            .signature()
            .parse_secrets(settings.secret_list())
            .map_err(|why| {
                ConfigError::Invalid(format!("providers.{}.secrets", provider.name()), why)
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{0}` {1}")]
    Invalid(String, String),
    #[error("configuration: {0}")]
    Layer(String),
    #[error("unknown configuration key `{key}`{}{}",
        .from.as_ref().map(|f| format!(" (from {f})")).unwrap_or_default(),
        .nearest.as_ref().map(|n| format!(": did you mean `{n}`?")).unwrap_or_default())]
    UnknownKey {
        key: String,
        /// The variable or file it came from.
        from: Option<String>,
        nearest: Option<String>,
    },
}

/// Valid settings, and the layers they were read from.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// The sources actually read, in order (`compiled-in defaults`, files, variables).
    pub sources: Vec<String>,
    /// The keys whose values took environment variables (`${VAR}`), and which.
    pub references: Vec<Reference>,
}

/// Reads the settings from the layers described in the module docs.
pub fn read(dir: &ConfigDir) -> Result<Loaded, ConfigError> {
    let env = std::env::var("HOOKSTREAM_ENV").ok();
    let layers::Files { files } = layers::files(dir, env.as_deref())?;
    let variables = layers::check_variables(
        std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
    )?;
    let mut sources = vec!["compiled-in defaults".to_string()];
    let mut builder = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
    for file in files {
        sources.push(file.display().to_string());
        builder = builder.add_source(config::File::from(file));
    }
    if variables > 0 {
        sources.push(format!("{variables} HOOKSTREAM__ variable(s)"));
    }
    let config = builder
        .add_source(
            config::Environment::with_prefix("HOOKSTREAM")
                .prefix_separator("__")
                .separator("__"),
        )
        .build()
        .map_err(layers::unreadable)?;
    let (config, references) = interpolate::interpolate(config, |name| std::env::var_os(name))?;
    let origins = config.clone();
    let settings = strict::deserialize(config)?;
    settings
        .validate()
        .map_err(|e| strict::with_origin(e, &origins))?;
    Ok(Loaded {
        settings,
        sources,
        references,
    })
}

/// Loads settings with `config_dir` holding the files.
pub fn get_configuration(config_dir: &Path) -> Result<Settings, ConfigError> {
    read(&ConfigDir::Given(config_dir.to_path_buf())).map(|loaded| loaded.settings)
}

/// The shipped `config/` directory's settings, for the tests of this module's parts.
#[cfg(test)]
fn shipped_defaults() -> Settings {
    get_configuration(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config"
    )))
    .expect("defaults")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Settings {
        get_configuration(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")))
            .expect("defaults load")
    }

    /// The compiled-in defaults with `overlay` (TOML) on top.
    fn with_overlay(overlay: &str) -> Settings {
        config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from_str(overlay, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("defaults plus overlay deserialize")
    }

    #[test]
    fn compiled_in_defaults_are_valid() {
        let s = defaults();
        assert_eq!(s.kafka.topic_prefix, "webhooks");
        assert_eq!(s.kafka.ack_timeout, Duration::from_secs(5));
        assert_eq!(s.dedupe.window, Duration::from_secs(24 * 3600));
        assert_eq!(s.server.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn the_shipped_default_file_is_the_compiled_in_one() {
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml"))
                .expect("config/default.toml exists");
        assert_eq!(shipped, DEFAULTS);
    }

    #[test]
    fn the_docker_environment_file_is_valid() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
        let text = std::fs::read_to_string(dir.join("docker.toml")).expect("config/docker.toml");
        let settings = with_overlay(&text);
        settings.validate().expect("docker.toml is valid");
        assert!(settings.schema_registry.enabled());
    }

    #[test]
    fn librdkafka_option_keys_keep_their_dots() {
        let overlay = r#"
            [kafka.options]
            "security.protocol" = "SASL_SSL"
            "sasl.mechanism" = "SCRAM-SHA-512"
        "#;
        let settings = with_overlay(overlay);
        assert_eq!(
            settings
                .kafka
                .options
                .get("security.protocol")
                .map(String::as_str),
            Some("SASL_SSL"),
            "{:?}",
            settings.kafka.options
        );
        assert_eq!(settings.kafka.options.len(), 2);
    }

    #[test]
    fn an_interpolated_secret_is_as_secret_as_its_key_and_never_printed() {
        let overlay = r#"
            [kafka]
            brokers = "${BROKERS}"
            [kafka.options]
            "sasl.password" = "${KAFKA_SASL_PASSWORD}"
            "sasl.mechanism" = "${MECHANISM}"
            [providers.github]
            preset = "github"
            secrets = "${GITHUB_WEBHOOK_SECRET}"
            [dedupe.redis]
            url = "redis://:${REDIS_PASSWORD}@redis:6379"
        "#;
        let config = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from_str(overlay, config::FileFormat::Toml))
            .build()
            .expect("TOML");
        let environment = [
            ("BROKERS", "broker-1:9092"),
            ("KAFKA_SASL_PASSWORD", "kafka-hunter2"),
            ("MECHANISM", "SCRAM-SHA-512"),
            ("GITHUB_WEBHOOK_SECRET", "github-hunter2"),
            ("REDIS_PASSWORD", "redis-hunter2"),
        ];
        let lookup = |name: &str| {
            environment
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| std::ffi::OsString::from(v))
        };
        let (config, references) = interpolate::interpolate(config, lookup).expect("resolved");
        let settings = strict::deserialize(config).expect("valid");
        settings.validate().expect("valid");
        assert_eq!(settings.kafka.options["sasl.password"], "kafka-hunter2");
        assert_eq!(
            settings
                .provider_registry()
                .ok()
                .and_then(|r| r
                    .find("github")
                    .map(|p| settings.secrets_for(p).map(|s| s.len())))
                .and_then(Result::ok),
            Some(1)
        );
        let shown = effective_toml(&settings).expect("TOML");
        let debug = format!("{settings:?}");
        for secret in ["kafka-hunter2", "github-hunter2", "redis-hunter2"] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
            assert!(!debug.contains(secret), "{secret} in Debug");
        }
        for shown_as in [
            "brokers = \"broker-1:9092\"",
            "\"sasl.mechanism\" = \"SCRAM-SHA-512\"",
            "\"sasl.password\" = \"<redacted>\"",
            "url = \"redis://<redacted>@redis:6379\"",
            "[providers.github]\nsecrets = \"<redacted>\"",
        ] {
            assert!(shown.contains(shown_as), "{shown_as}:\n{shown}");
        }
        let references: Vec<String> = references.iter().map(ToString::to_string).collect();
        assert!(
            references.contains(
                &"kafka.options.\"sasl.password\" from ${KAFKA_SASL_PASSWORD}".to_string()
            ),
            "{references:?}"
        );
    }

    #[test]
    fn the_dead_letter_topic_defaults_to_the_prefix() {
        let s = defaults();
        assert!(s.dead_letter.enabled);
        assert_eq!(s.dead_letter.topic("webhooks"), "webhooks.dead_letter");
        assert_eq!(s.dead_letter.replay_group, "hookstream-replay");
        let s = with_overlay("[dead_letter]\ntopic = \"ops.dlq\"");
        assert_eq!(s.dead_letter.topic("webhooks"), "ops.dlq");
    }

    #[test]
    fn validation_names_the_key() {
        let mut s = defaults();
        s.kafka.topic_prefix = "bad prefix".into();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("kafka.topic_prefix"), "{err}");

        let mut s = defaults();
        s.providers
            .insert("nosuch".into(), ProviderSettings::with_secrets("x"));
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("providers.nosuch"), "{err}");
    }

    #[test]
    fn keep_alive_is_75s_and_may_be_0s_or_from_1s_to_24h() {
        assert_eq!(defaults().server.keep_alive, Duration::from_secs(75));
        let s = with_overlay("[server]\nkeep_alive = \"0s\"");
        s.validate()
            .expect("0s closes each connection after its response");
        for refused in ["25h", "1ns", "999ms"] {
            let s = with_overlay(&format!("[server]\nkeep_alive = \"{refused}\""));
            let err = s.validate().unwrap_err().to_string();
            assert!(
                err.contains("server.keep_alive") && err.contains("from 1s to 24h"),
                "{refused}: {err}"
            );
        }
        with_overlay("[server]\nkeep_alive = \"1s\"")
            .validate()
            .expect("1s");
    }

    #[test]
    fn a_header_timeout_under_a_second_is_refused() {
        let err = with_overlay("[server]\nheader_timeout = \"1ms\"")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.header_timeout") && err.contains("at least 1s"),
            "{err}"
        );
    }

    #[test]
    fn an_ack_timeout_librdkafka_would_refuse_on_every_write_is_refused_at_startup() {
        let mut s = defaults();
        s.kafka.ack_timeout = Duration::from_secs(3600);
        s.validate()
            .expect("1h is librdkafka's longest admin request");
        s.kafka.ack_timeout = Duration::from_secs(3601);
        let err = s.validate().unwrap_err().to_string();
        assert!(
            err.contains("kafka.ack_timeout") && err.contains("1h"),
            "{err}"
        );
    }

    #[test]
    fn the_default_file_documents_every_key_of_a_configured_provider() {
        let section = &DEFAULTS[DEFAULTS.find("# Any other source").expect("documented")..];
        for key in crate::providers::configured::definition::keys() {
            let leaf = key.rsplit('.').next().unwrap_or_default();
            let documented = section
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|word| word == leaf);
            assert!(
                documented,
                "providers.NAME.{key} is not documented in config/default.toml"
            );
        }
        for preset in crate::providers::configured::PRESETS {
            assert!(section.contains(preset), "preset {preset}");
        }
    }

    #[test]
    fn a_preset_is_enabled_with_a_name_and_secrets_alone() {
        let s =
            with_overlay("[providers.acme-billing]\npreset = \"stripe\"\nsecrets = \"whsec_x\"");
        s.validate().expect("valid");
        let registry = s.provider_registry().expect("registry");
        let provider = registry.find("acme-billing").expect("configured");
        assert_eq!(s.secrets_for(provider).map(|v| v.len()).ok(), Some(1));
    }

    #[test]
    fn configured_providers_are_checked_naming_the_key() {
        let cases = [
            (
                "[providers.github]\npreset = \"github\"",
                "providers.github.secrets",
                "must be set",
            ),
            (
                "[providers.events]\npreset = \"standard-webhooks\"\nsecrets = \"whsec_%%%\"",
                "providers.events.secrets",
                "Standard Webhooks secret",
            ),
            (
                "[providers.seismic]\nsecrets = \"x\"\npreset = \"github\"",
                "providers.seismic",
                "built-in",
            ),
            (
                "[providers.acme]\nsecrets = \"x\"\n[providers.acme.signature]\nscheme = \"hmac\"\nheader = \"x-sig\"\n[providers.acme.fields]\nevent_name = \"type\"\nevent_id = \"/id\"",
                "providers.acme.fields.event_name",
                "JSON pointer",
            ),
        ];
        for (overlay, key, says) in cases {
            let err = with_overlay(overlay).validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains(says),
                "{overlay}: {err}"
            );
            assert!(!err.contains("%%%"), "a secret is never shown: {err}");
        }
    }

    #[test]
    fn secrets_are_comma_separated_and_redacted_in_debug() {
        let p = ProviderSettings::with_secrets("alpha, beta");
        assert_eq!(Secret::parse_list(p.secret_list()).len(), 2);
        let shown = format!("{p:?}");
        assert!(
            !shown.contains("alpha") && !shown.contains("beta"),
            "{shown}"
        );
    }
}
