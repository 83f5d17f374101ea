//! Configuration reloads: applied, refused, and settings that need a restart.

use super::InternalEvent;
use crate::metrics::Metrics;
use std::fmt::Display;

/// A configuration reloaded while serving (SIGHUP, or a changed file with `--watch-config`) was
/// applied: its providers, their secrets and `log.level` are in use from now on.
pub struct ConfigReloaded<'a> {
    /// What asked for it: `SIGHUP`, or the file that changed.
    pub trigger: &'a str,
    /// The enabled providers from now on.
    pub providers: &'a [&'a str],
    pub added: &'a [String],
    pub removed: &'a [String],
    pub changed: &'a [String],
    pub log_level: &'a str,
}

impl InternalEvent for ConfigReloaded<'_> {
    fn emit(self, m: &Metrics) {
        tracing::info!(target: super::TARGET,
            trigger = self.trigger,
            providers = ?self.providers,
            added = ?self.added,
            removed = ?self.removed,
            changed = ?self.changed,
            log_level = self.log_level,
            "configuration reloaded"
        );
        m.config.reloads.with_label_values(&["applied"]).inc();
    }
}

/// A configuration reloaded while serving does not validate: refused, in one line naming the
/// key (the error says which), and the configuration in use stays.
pub struct ConfigReloadRefused<'a> {
    pub trigger: &'a str,
    /// Names the key or file at fault, never a secret.
    pub error: &'a dyn Display,
}

impl InternalEvent for ConfigReloadRefused<'_> {
    fn emit(self, m: &Metrics) {
        tracing::error!(target: super::TARGET,
            trigger = self.trigger,
            error = %self.error,
            "configuration not reloaded: the one in use stays"
        );
        m.config.reloads.with_label_values(&["refused"]).inc();
    }
}

/// A reloaded configuration changes keys that are read at startup only: named, and left as
/// they are until a restart.
pub struct ConfigNeedsRestart<'a> {
    pub trigger: &'a str,
    pub keys: &'a [String],
}

impl InternalEvent for ConfigNeedsRestart<'_> {
    fn emit(self, _: &Metrics) {
        tracing::warn!(target: super::TARGET,
            trigger = self.trigger,
            keys = %self.keys.join(", "),
            "configuration keys changed that only a restart applies: their values in use stay until then"
        );
    }
}

/// The level filter of a reloaded `log.level` was not applied.
pub struct LogLevelKept<'a> {
    pub log_level: &'a str,
    pub why: &'a str,
}

impl InternalEvent for LogLevelKept<'_> {
    fn emit(self, _: &Metrics) {
        tracing::warn!(target: super::TARGET,
            log_level = self.log_level,
            "log.level not applied: {}",
            self.why
        );
    }
}
