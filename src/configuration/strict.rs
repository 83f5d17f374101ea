//! Unknown configuration keys stop startup. serde would otherwise ignore them, so a typo like
//! `kafka.ack_timout = "2s"` (or `HOOKSTREAM__KAFKA__ACK_TIMOUT`) would silently leave the
//! default in force.

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
/// where it was set (a file, or the environment variable), and what is wrong, in words.
fn explain(error: config::ConfigError, origins: &config::Config) -> ConfigError {
    let (key, origin, problem) = parts(error);
    let Some(key) = key else {
        return ConfigError::Layer(problem);
    };
    let from = origin
        .map(|o| source_name(&o, &key))
        .or_else(|| origin_of(origins, &key))
        .map(|o| format!(" (from {o})"))
        .unwrap_or_default();
    ConfigError::Invalid(key, format!("{problem}{from}"))
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

/// The key, the origin and the problem of a deserialization error, the innermost key winning.
fn parts(error: config::ConfigError) -> (Option<String>, Option<String>, String) {
    match error {
        config::ConfigError::At { error, origin, key } => {
            let (inner_key, inner_origin, problem) = parts(*error);
            (inner_key.or(key), inner_origin.or(origin), problem)
        }
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => (key, origin, format!("is {unexpected}, expected {expected}")),
        config::ConfigError::Message(message) => (None, None, reworded(&message)),
        other => (None, None, other.to_string()),
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
    let (parent, name) = key.rsplit_once('.')?;
    let value = config.get_table(parent).ok()?.remove(name)?;
    Some(source_name(value.origin()?, key))
}

/// A value's origin as a person names it: the environment variable that sets `key`, or the file.
fn source_name(origin: &str, key: &str) -> String {
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
