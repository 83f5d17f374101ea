//! Unknown configuration keys stop startup. serde would otherwise ignore them, so a typo like
//! `kafka.ack_timout = "2s"` (or `HOOKSTREAM__KAFKA__ACK_TIMOUT`) would silently leave the
//! default in force.

use super::{ConfigError, Settings, DEFAULTS};
use std::collections::BTreeSet;

/// Tables whose keys are free: librdkafka properties.
const OPEN_TABLES: &[&str] = &["kafka.options"];

/// Deserializes `config`, refusing keys the settings do not have.
pub(super) fn deserialize(config: config::Config) -> Result<Settings, ConfigError> {
    let origins = config.clone();
    let mut unknown = Vec::new();
    let settings: Settings = serde_ignored::deserialize(config, |path| {
        unknown.push(path.to_string());
    })?;
    match unknown.into_iter().next() {
        None => Ok(settings),
        Some(key) => Err(ConfigError::UnknownKey {
            from: origin(&origins, &key),
            nearest: nearest(&key, &candidates(&key)),
            key,
        }),
    }
}

/// Where `key` was set: the environment variable's name, or the file.
fn origin(config: &config::Config, key: &str) -> Option<String> {
    // Values read whole keep their origin; values deserialized from them do not.
    let (parent, name) = key.rsplit_once('.')?;
    let value = config.get_table(parent).ok()?.remove(name)?;
    match value.origin()? {
        "the environment" => Some(format!(
            "HOOKSTREAM__{}",
            key.replace('.', "__").to_uppercase()
        )),
        file => Some(file.to_string()),
    }
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
