//! Unknown configuration keys stop startup. serde would otherwise ignore them, so a typo like
//! `kafka.ack_timout = "2s"` (or `HOOKSTREAM__KAFKA__ACK_TIMOUT`) would silently leave the
//! default in force.
//!
//! Length: about half of it is the tests, one per strict value.

use super::effective::shows_value_of;
use super::{ConfigError, Settings, DEFAULTS};
use std::collections::BTreeSet;

/// Tables whose keys are free: librdkafka properties.
const OPEN_TABLES: &[&str] = &["kafka.options"];

/// The values each enumerated key takes, for the message when one is misspelt.
const ENUMS: &[(&str, &[&str])] = &[
    ("DedupeBackend", &["memory", "redis"]),
    ("OnUnavailable", &["write", "reject"]),
];

/// Deserializes `config`, refusing keys the settings do not have.
pub(super) fn deserialize(config: config::Config) -> Result<Settings, ConfigError> {
    let origins = config.clone();
    let mut unknown = Vec::new();
    let settings: Settings = serde_ignored::deserialize(config, |path| {
        unknown.push(path.to_string());
    })
    .map_err(|e| explain(e, &origins))?;
    match unknown.into_iter().next() {
        None => Ok(settings),
        Some(key) => Err(ConfigError::UnknownKey {
            from: origin_of(&origins, &key),
            nearest: nearest(&key, &candidates(&key)),
            key,
        }),
    }
}

/// A value that does not deserialize, said the way every other configuration error is: the key,
/// where it was set (a file, or the environment variable), and what is wrong, in words. The value
/// itself is shown only when the key is known not to be secret ([`shows_value_of`]); otherwise
/// only its kind is ([`described`]).
fn explain(error: config::ConfigError, origins: &config::Config) -> ConfigError {
    let Parts {
        key,
        origin,
        problem,
        expected,
    } = parts(error);
    let Some(key) = key else {
        return ConfigError::Layer(problem);
    };
    let from = origin
        .map(|o| source_name(&o, &key))
        .or_else(|| origin_of(origins, &key));
    if !shows_value_of(&key) {
        let problem = described(&key, from.as_deref(), expected, origins);
        return ConfigError::Invalid(key, problem);
    }
    let from = from.map(|o| format!(" (from {o})")).unwrap_or_default();
    ConfigError::Invalid(key, format!("{problem}{from}"))
}

/// What is wrong with the value set for `key`, a key whose value may be or hold a secret, without
/// the value: the kind of value that was set, and what the key takes (for a table, its keys and
/// how to set them).
fn described(
    key: &str,
    from: Option<&str>,
    expected: Option<&'static str>,
    origins: &config::Config,
) -> String {
    let set = origins
        .get::<config::Value>(key)
        .map_or("a value", |value| kind(&value.kind));
    let not_shown = match from {
        Some(from) => format!(" (from {from}; the value is not shown: it may hold a secret)"),
        None => " (the value is not shown: it may hold a secret)".to_string(),
    };
    let keys = keys_under(key);
    if !keys.is_empty() || OPEN_TABLES.contains(&key) {
        let how = if keys.is_empty() {
            String::new()
        } else {
            let one_by_one = match from {
                Some(variable) if variable.starts_with("HOOKSTREAM__") => {
                    format!(", each with a variable of its own: {variable}__<KEY>")
                }
                _ => format!(" under [{key}]"),
            };
            format!(
                ": set its keys one by one ({}){one_by_one}",
                keys.join(", ")
            )
        };
        return format!("is a table, but {set} was set{not_shown}{how}");
    }
    match expected {
        Some(expected) => format!("takes {expected}, but {set} was set{not_shown}"),
        None => format!("is not valid: {set} was set{not_shown}"),
    }
}

/// A value's kind, in words.
fn kind(value: &config::ValueKind) -> &'static str {
    match value {
        config::ValueKind::Nil => "nothing",
        config::ValueKind::Boolean(_) => "a boolean",
        config::ValueKind::I64(_)
        | config::ValueKind::I128(_)
        | config::ValueKind::U64(_)
        | config::ValueKind::U128(_) => "an integer",
        config::ValueKind::Float(_) => "a number",
        config::ValueKind::String(_) => "a string",
        config::ValueKind::Table(_) => "a table",
        config::ValueKind::Array(_) => "a list",
    }
}

/// The names of the keys of the table `table` (empty when it is not one); a built-in provider's
/// table has `secrets` alone.
fn keys_under(table: &str) -> Vec<String> {
    if let Some(name) = table.strip_prefix("providers.") {
        if crate::providers::built_in(name).is_some() {
            return vec!["secrets".to_string()];
        }
    }
    let prefix = format!("{table}.");
    let names: BTreeSet<String> = candidates(&format!("{table}.*"))
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .map(|rest| rest.split('.').next().unwrap_or(rest).to_string())
        .filter(|name| name != "*")
        .collect();
    names.into_iter().collect()
}

/// An invalid value's error, with where the value was set (a file, or the environment
/// variable) when the key names one value and the message does not say so already.
pub(super) fn with_origin(error: ConfigError, origins: &config::Config) -> ConfigError {
    match error {
        ConfigError::Invalid(key, problem) if !problem.contains("(from ") => {
            match origin_of(origins, &key) {
                Some(from) => ConfigError::Invalid(key, format!("{problem} (from {from})")),
                None => ConfigError::Invalid(key, problem),
            }
        }
        other => other,
    }
}

/// What a deserialization error says.
struct Parts {
    key: Option<String>,
    origin: Option<String>,
    /// In words, with the value when the error quotes it.
    problem: String,
    /// What the key takes, when the error says so apart from the value.
    expected: Option<&'static str>,
}

/// The key, the origin and the problem of a deserialization error, the innermost key winning.
fn parts(error: config::ConfigError) -> Parts {
    match error {
        config::ConfigError::At { error, origin, key } => {
            let inner = parts(*error);
            Parts {
                key: inner.key.or(key),
                origin: inner.origin.or(origin),
                ..inner
            }
        }
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => Parts {
            key,
            origin,
            problem: format!("is {unexpected}, expected {expected}"),
            expected: Some(expected),
        },
        config::ConfigError::Message(message) => Parts {
            key: None,
            origin: None,
            problem: reworded(&message),
            expected: None,
        },
        other => Parts {
            key: None,
            origin: None,
            problem: other.to_string(),
            expected: None,
        },
    }
}

/// serde's and `config`'s wording, where it is unclear: an unknown variant names the values there
/// are.
fn reworded(message: &str) -> String {
    let Some((name, value)) = message
        .strip_prefix("enum ")
        .and_then(|rest| rest.split_once(" does not have variant constructor "))
    else {
        return message.to_string();
    };
    let Some((_, values)) = ENUMS.iter().find(|(n, _)| *n == name) else {
        return format!("{value:?} is not a valid value");
    };
    let nearest = closest(value, values.iter().copied())
        .map(|v| format!(": did you mean \"{v}\"?"))
        .unwrap_or_default();
    format!(
        "{value:?} is not one of {}{nearest}",
        values
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Where `key` was set: the environment variable's name, or the file.
fn origin_of(config: &config::Config, key: &str) -> Option<String> {
    // Values read whole keep their origin; values deserialized from them do not.
    let Some((parent, name)) = key.rsplit_once('.') else {
        // A section has no parent table to read it from; the environment, the last layer, set
        // it if its variable is set.
        let variable = source_name("the environment", key);
        return std::env::var_os(&variable).map(|_| variable);
    };
    let value = config.get_table(parent).ok()?.remove(name)?;
    Some(source_name(value.origin()?, key))
}

/// A value's origin as a person names it: the environment variable that sets `key`, or the file.
pub(super) fn source_name(origin: &str, key: &str) -> String {
    match origin {
        "the environment" => format!("HOOKSTREAM__{}", key.replace('.', "__").to_uppercase()),
        file => file.to_string(),
    }
}

/// The one of `candidates` within two edits of `word`, the closest first, for "did you mean".
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, c)| c)
}

/// The keys `key` may have been meant as: every key there is, and, under `providers.NAME`, every
/// key a provider table may have (a provider defined in configuration has a name of its own).
fn candidates(key: &str) -> BTreeSet<String> {
    let mut keys = known_keys();
    let mut parts = key.splitn(3, '.');
    if let (Some("providers"), Some(name)) = (parts.next(), parts.next()) {
        keys.insert(format!("providers.{name}.secrets"));
        keys.extend(
            crate::providers::configured::definition::keys()
                .into_iter()
                .map(|k| format!("providers.{name}.{k}")),
        );
    }
    keys
}

/// Every key there is: the compiled-in defaults name them all.
pub(super) fn known_keys() -> BTreeSet<String> {
    let defaults = config::Config::builder()
        .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize::<config::Map<String, config::Value>>())
        .unwrap_or_default();
    let mut keys = BTreeSet::new();
    collect("", defaults, &mut keys);
    keys
}

fn collect(prefix: &str, table: config::Map<String, config::Value>, keys: &mut BTreeSet<String>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match value.into_table() {
            Ok(table) if !OPEN_TABLES.contains(&key.as_str()) => collect(&key, table, keys),
            _ => {
                keys.insert(key);
            }
        }
    }
}

/// The known key most like `key`, when one is reasonably close.
fn nearest(key: &str, known: &BTreeSet<String>) -> Option<String> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k.clone())
}

/// Levenshtein distance, in characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(overlay: &str) -> Result<Settings, ConfigError> {
        let config = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(config::File::from_str(overlay, config::FileFormat::Toml))
            .build()?;
        deserialize(config)
    }

    /// The compiled-in defaults with `variables` as the environment.
    fn load_variables(variables: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let variables = variables
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let config = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("HOOKSTREAM")
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(variables)),
            )
            .build()?;
        deserialize(config)
    }

    #[test]
    fn a_secret_set_on_its_tables_variable_is_never_shown() {
        for (variable, secret, key, says) in [
            (
                "HOOKSTREAM__DEDUPE__REDIS",
                "redis://:hunter2-pw@host:6379",
                "`dedupe.redis`",
                "is a table, but a string was set (from HOOKSTREAM__DEDUPE__REDIS; the value is not shown: it may hold a secret): set its keys one by one (key_prefix, on_unavailable, password, timeout, url), each with a variable of its own: HOOKSTREAM__DEDUPE__REDIS__<KEY>",
            ),
            (
                "HOOKSTREAM__PROVIDERS__LIVESESSION",
                "hunter2-secret",
                "`providers.livesession`",
                "is a table, but a string was set (from HOOKSTREAM__PROVIDERS__LIVESESSION; the value is not shown: it may hold a secret): set its keys one by one (secrets), each with a variable of its own: HOOKSTREAM__PROVIDERS__LIVESESSION__<KEY>",
            ),
            (
                "HOOKSTREAM__PROVIDERS__ACME",
                "hunter2-secret",
                "`providers.acme`",
                "set its keys one by one (fields, ping_events, preset, secrets, signature)",
            ),
            ("HOOKSTREAM__PROVIDERS", "hunter2-secret", "`providers`", "is a table, but a string was set"),
            ("HOOKSTREAM__SCHEMA_REGISTRY", "hunter2-pw", "`schema_registry`", "is a table"),
            ("HOOKSTREAM__KAFKA__OPTIONS", "sasl.password=hunter2", "`kafka.options`", "is a table, but a string was set"),
            ("HOOKSTREAM__DEDUPE", "hunter2", "`dedupe`", "is a table"),
        ] {
            let err = load_variables(&[(variable, secret)]).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{variable}: {err}");
            assert!(
                err.contains(&format!("configuration key {key} ")) && err.contains(says),
                "{variable}: {err}"
            );
        }
    }

    #[test]
    fn a_secret_of_the_wrong_kind_in_a_file_is_never_shown() {
        for (overlay, says) in [
            (
                "[providers]\nlivesession = \"hunter2-secret\"",
                "configuration key `providers.livesession` is a table, but a string was set (the value is not shown: it may hold a secret): set its keys one by one (secrets) under [providers.livesession]",
            ),
            (
                "[dedupe]\nredis = \"redis://:hunter2@redis:6379\"",
                "configuration key `dedupe.redis` is a table, but a string was set",
            ),
            (
                "[dedupe.redis]\nurl = [\"redis://:hunter2@redis:6379\"]",
                "configuration key `dedupe.redis.url` takes a string, but a list was set (the value is not shown: it may hold a secret)",
            ),
            (
                "[providers.livesession]\nsecrets = { a = \"hunter2\" }",
                "configuration key `providers.livesession.secrets` takes a string, but a table was set",
            ),
        ] {
            let err = load(overlay).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{overlay}: {err}");
            assert!(err.contains(says), "{overlay}: {err}");
        }
    }

    #[test]
    fn a_value_known_not_to_be_secret_is_still_shown() {
        let err = load_variables(&[("HOOKSTREAM__SERVER__PORT", "http")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`server.port` is string \"http\"")
                && err.contains("(from HOOKSTREAM__SERVER__PORT)"),
            "{err}"
        );
        let err = load("[providers.acme]\npreset = 7\nsecrets = \"x\"\n[providers.acme.signature]\nscheme = [1]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`providers.acme.signature.scheme`"), "{err}");
    }

    #[test]
    fn every_key_is_known_to_be_shown_or_secret() {
        // A key added to the configuration is shown in errors only once it is listed as not
        // secret; this names the secrets, so that a new key is a decision, not an accident.
        let secrets = [
            "dedupe.redis.url",
            "dedupe.redis.password",
            "schema_registry.url",
            "schema_registry.password",
            "kafka.options",
            "providers.livesession.secrets",
            "providers.lasoexperience.secrets",
            "providers.seismic.secrets",
            "providers.acme.secrets",
        ];
        let mut keys = known_keys();
        keys.extend(candidates("providers.acme.x"));
        for key in keys {
            assert_ne!(
                shows_value_of(&key),
                secrets.contains(&key.as_str()),
                "{key} is neither shown nor listed as a secret"
            );
        }
        for table in [
            "dedupe",
            "dedupe.redis",
            "providers",
            "providers.acme",
            "providers.acme.fields",
            "kafka",
        ] {
            assert!(!shows_value_of(table), "{table}");
        }
        assert!(shows_value_of("kafka.options.compression.type"));
        assert!(!shows_value_of("kafka.options.sasl.password"));
    }

    #[test]
    fn a_misspelled_key_of_a_configured_provider_is_refused_with_the_nearest_one() {
        let err = load("[providers.acme]\npreset = \"stripe\"\nsecrets = \"x\"\n[providers.acme.fields]\nsubjet = \"/a\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`providers.acme.fields.subjet`")
                && err.contains("did you mean `providers.acme.fields.subject`?"),
            "{err}"
        );
        let err = load("[providers.acme.signature]\nalgoritm = \"sha1\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did you mean `providers.acme.signature.algorithm`?"),
            "{err}"
        );
    }

    #[test]
    fn a_misspelled_key_is_refused_with_the_nearest_valid_one() {
        let err = load("[kafka]\nack_timout = \"2s\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`kafka.ack_timout`"), "{err}");
        assert!(err.contains("did you mean `kafka.ack_timeout`?"), "{err}");
        let err = load("[providers.livesession]\nsecret = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did you mean `providers.livesession.secrets`?"),
            "{err}"
        );
    }

    #[test]
    fn dedupe_keys_are_checked_like_the_rest() {
        let err = load("[dedupe.redis]\non_unavailabe = \"reject\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did you mean `dedupe.redis.on_unavailable`?"),
            "{err}"
        );
        let err = load("[dedupe]\nbackend = \"postgres\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("backend"), "{err}");
        let err = load("[dedupe]\nbackend = \"reddis\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`dedupe.backend`")
                && err.contains(
                    "\"reddis\" is not one of \"memory\", \"redis\": did you mean \"redis\"?"
                ),
            "{err}"
        );
        let err = load("[kafka]\nack_timeout = 5").unwrap_err().to_string();
        assert!(
            err.contains("`kafka.ack_timeout`") && err.contains("e.g. \"5s\""),
            "{err}"
        );
        assert!(load("[dedupe]\nbackend = \"redis\"").is_ok());
    }

    #[test]
    fn every_boolean_takes_true_or_false_only_from_a_variable_or_a_file() {
        let err = load_variables(&[("HOOKSTREAM__SPOOL__ENABLED", "yes")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`spool.enabled` \"yes\" is not a boolean: write true or false")
                && err.contains("(from HOOKSTREAM__SPOOL__ENABLED)"),
            "{err}"
        );
        let err = load_variables(&[("HOOKSTREAM__DEAD_LETTER__ENABLED", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`dead_letter.enabled` \"0\""), "{err}");
        let err = load("[dead_letter]\nenabled = 1").unwrap_err().to_string();
        assert!(
            err.contains("`dead_letter.enabled` 1 is not a boolean"),
            "{err}"
        );
        let err = load("[providers.acme]\npreset = \"stripe\"\nsecrets = \"x\"\n[providers.acme.fields]\nevent_id_from_body_digest = \"on\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "`providers.acme.fields.event_id_from_body_digest` \"on\" is not a boolean"
            ),
            "{err}"
        );
        let settings = load_variables(&[
            ("HOOKSTREAM__SPOOL__ENABLED", "true"),
            ("HOOKSTREAM__DEAD_LETTER__ENABLED", "false"),
        ])
        .expect("true and false are booleans");
        assert!(settings.spool.enabled && !settings.dead_letter.enabled);
        assert!(
            load("[spool]\nenabled = true")
                .expect("valid")
                .spool
                .enabled
        );
    }

    #[test]
    fn an_unknown_section_is_refused_too() {
        let err = load("[kafak]\nbrokers = \"b:9092\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`kafak`"), "{err}");
    }

    #[test]
    fn librdkafka_options_are_free_form() {
        let settings = load("[kafka.options]\n\"compression.type\" = \"lz4\"").expect("loads");
        assert_eq!(settings.kafka.options["compression.type"], "lz4");
    }

    #[test]
    fn every_default_is_a_known_key() {
        let known = known_keys();
        assert!(known.contains("kafka.ack_timeout"));
        assert!(known.contains("providers.seismic.secrets"));
        assert!(!known.iter().any(|k| k.starts_with("kafka.options.")));
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("ack_timout", "ack_timeout"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
