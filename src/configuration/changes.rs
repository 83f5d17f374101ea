//! What differs between two configurations, key by key: what `serve` takes from a configuration
//! reloaded while it runs (the providers and `log.level`), and what waits for a restart. Keys are
//! named, values never: secrets are compared, not shown.

use super::Settings;
use secrecy::ExposeSecret;
use std::collections::{BTreeMap, BTreeSet};

/// Whether a running `serve` takes `key` from a reloaded configuration: every `providers.*` key,
/// and `log.level`. Every other key is read once, at startup.
pub fn reloadable(key: &str) -> bool {
    key == "log.level" || key == "providers" || key.starts_with("providers.")
}

/// Every key whose value differs between `old` and `new` (present in one only included), sorted.
/// Secrets are compared by value: they are serialized redacted.
pub fn changed_keys(old: &Settings, new: &Settings) -> Vec<String> {
    let mut changed = differing(&leaves(old), &leaves(new));
    changed.extend(differing(&secrets(old), &secrets(new)));
    changed.into_iter().collect()
}

/// The keys of either map whose values differ (or that only one has).
fn differing<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> BTreeSet<String> {
    a.keys()
        .chain(b.keys())
        .filter(|key| a.get(*key) != b.get(*key))
        .cloned()
        .collect()
}

/// The providers one configuration adds, removes and changes (secrets or definition) from
/// another, by name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ProviderChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl ProviderChanges {
    pub fn between(old: &Settings, new: &Settings) -> Self {
        let touched: BTreeSet<String> = changed_keys(old, new)
            .iter()
            .filter_map(|key| key.strip_prefix("providers."))
            .filter_map(|rest| rest.split('.').next())
            .map(str::to_string)
            .collect();
        let mut changes = Self::default();
        for name in touched {
            match (
                old.providers.contains_key(&name),
                new.providers.contains_key(&name),
            ) {
                (false, _) => changes.added.push(name),
                (_, false) => changes.removed.push(name),
                _ => changes.changed.push(name),
            }
        }
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Every value of the effective configuration by its dotted key, as `config check` prints it
/// (secrets redacted: [`secrets`] compares them), but for `kafka.options`, whose names hold dots.
fn leaves(settings: &Settings) -> BTreeMap<String, toml::Value> {
    let mut leaves = BTreeMap::new();
    // Settings are plain data: they always serialize (`config check` prints them so).
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(settings) {
        flatten("", table, &mut leaves);
    }
    leaves.retain(|key, _| !key.starts_with("kafka.options."));
    leaves
}

fn flatten(prefix: &str, table: toml::Table, into: &mut BTreeMap<String, toml::Value>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(table) => flatten(&path, table, into),
            value => {
                into.insert(path, value);
            }
        }
    }
}

/// The values serialized redacted or shortened, by key: compared, never shown.
fn secrets(settings: &Settings) -> BTreeMap<String, &str> {
    let mut secrets = BTreeMap::from([
        (
            "dedupe.redis.url".to_string(),
            settings.dedupe.redis.url.expose_secret(),
        ),
        (
            "dedupe.redis.password".to_string(),
            settings.dedupe.redis.password.expose_secret(),
        ),
        (
            "schema_registry.url".to_string(),
            settings.schema_registry.url.as_str(),
        ),
        (
            "schema_registry.password".to_string(),
            settings.schema_registry.password.expose_secret(),
        ),
    ]);
    for (option, value) in &settings.kafka.options {
        secrets.insert(format!("kafka.options.\"{option}\""), value.as_str());
    }
    for (name, provider) in &settings.providers {
        secrets.insert(format!("providers.{name}.secrets"), provider.secret_list());
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::shipped_defaults as defaults;

    #[test]
    fn changed_keys_are_named_secrets_included_values_never() {
        let old = defaults();
        assert_eq!(changed_keys(&old, &old), Vec::<String>::new());
        let mut new = old.clone();
        new.server.max_body_bytes = 10;
        new.kafka
            .options
            .insert("sasl.password".into(), "hunter2".into());
        new.schema_registry.set_password("registry-hunter2");
        new.log.level = "debug".into();
        let changed = changed_keys(&old, &new);
        assert_eq!(
            changed,
            [
                "kafka.options.\"sasl.password\"",
                "log.level",
                "schema_registry.password",
                "server.max_body_bytes"
            ]
        );
        let restart: Vec<_> = changed.iter().filter(|k| !reloadable(k)).collect();
        assert_eq!(restart.len(), 3, "{restart:?}");
    }

    #[test]
    fn providers_added_removed_and_changed_are_told_apart() {
        let old = defaults();
        let mut new = old.clone();
        new.providers.insert(
            "github".into(),
            super::super::ProviderSettings::with_preset("github", "s"),
        );
        new.providers.remove("seismic");
        new.providers.insert(
            "livesession".into(),
            super::super::ProviderSettings::with_secrets("new"),
        );
        assert_eq!(
            ProviderChanges::between(&old, &new),
            ProviderChanges {
                added: vec!["github".into()],
                removed: vec!["seismic".into()],
                changed: vec!["livesession".into()],
            }
        );
        assert!(ProviderChanges::between(&new, &new).is_empty());
    }
}
