//! The configuration reloaded while serving: on SIGHUP, and with `serve --watch-config` when the
//! contents of a configuration file it reads change (`default.toml`, `$HOOKSTREAM_ENV.toml`;
//! checked every [`POLL`]).
//!
//! A reload reads every layer again and checks the result as startup does:
//! - invalid, it is refused in one log line naming the key, and the configuration in use stays;
//! - valid, the providers (added, removed, their secrets and definitions) and `log.level` are
//!   used from now on. A request already started finishes with the providers and secrets it
//!   started with. Every other key is read at startup only: one that changed is named in a
//!   warning, and keeps the value in use until a restart.
//!
//! The process's environment does not change: `${VAR}` references and `HOOKSTREAM__…` variables
//! keep the values they had at startup.

use super::provider_series;
use crate::configuration::{self, changed_keys, reloadable, ConfigDir, ProviderChanges, Settings};
use crate::ingest::Providers;
use crate::internal_events::{
    ConfigNeedsRestart, ConfigReloadRefused, ConfigReloaded, InternalEvent, LogLevelKept,
};
use crate::routes::AppState;
use crate::spool::ForwardedProviders;
use crate::telemetry::{self, LevelChange};
use actix_web::web;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// How often `--watch-config` reads the configuration files.
pub const POLL: Duration = Duration::from_secs(2);

/// Where a reload reads the configuration from, and what asks for one.
pub struct Reload {
    dir: ConfigDir,
    /// `--watch-config`: also when a file's contents change.
    watch: bool,
    /// Listened to from [`Reload::listen`] on, so that a SIGHUP sent as soon as the listener
    /// is bound does not end the process (SIGHUP's default).
    hangup: Option<Signal>,
}

impl Reload {
    /// Listens for SIGHUP from now on (within the runtime). `watch`: also reload when a
    /// configuration file's contents change.
    pub fn listen(dir: ConfigDir, watch: bool) -> Self {
        let hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: the configuration is reloaded {}", if watch { "when its files change only" } else { "never (restart to change it)" });
                None
            }
        };
        Self { dir, watch, hangup }
    }

    /// The files a reload reads, as startup found them: `default.toml` and
    /// `$HOOKSTREAM_ENV.toml` of the configuration directory.
    fn files(&self) -> Vec<PathBuf> {
        let dir = match &self.dir {
            ConfigDir::Given(dir) => dir.clone(),
            ConfigDir::Default => PathBuf::from("config"),
        };
        let mut files = vec![dir.join("default.toml")];
        if let Some(env) = std::env::var("HOOKSTREAM_ENV")
            .ok()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
        {
            files.push(dir.join(format!("{env}.toml")));
        }
        files
    }
}

/// The digest of each file's contents (`None`: it cannot be read).
fn contents(files: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    files
        .iter()
        .map(|file| std::fs::read(file).ok().map(|b| Sha256::digest(&b).into()))
        .collect()
}

/// What a reload replaces, and the configuration in use.
pub(super) struct Reloading {
    pub state: web::Data<AppState>,
    /// The spool forwarder's providers, when the spool is enabled: a provider a reload enables
    /// is forwarded too.
    pub forwarded: Option<Arc<ForwardedProviders>>,
    /// Startup's configuration with the providers and `log.level` last applied.
    pub running: Settings,
}

/// How long the files must stay the same before a reload reads them: an editor, `sed … >` or `scp`
/// rewrites a file in place, and a reload must not serve the moment it was empty or half written.
/// (A file written elsewhere and renamed into place, as Kubernetes does, is whole at once.)
const SETTLE: Duration = Duration::from_millis(750);

/// The files' contents once they stayed the same for [`SETTLE`] (at most ten tries: a file that
/// never settles is read as it is then). `last`: the contents as last read.
async fn settled(files: &[PathBuf], mut last: Vec<Option<[u8; 32]>>) -> Vec<Option<[u8; 32]>> {
    for _ in 0..10 {
        tokio::time::sleep(SETTLE).await;
        let now = contents(files);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// Reloads on SIGHUP, and with `--watch-config` when a file changes, until the task is aborted.
pub(super) async fn run_until_stopped(mut reload: Reload, mut reloading: Reloading) {
    let files = reload.files();
    let mut seen = contents(&files);
    if reload.watch {
        let shown: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        tracing::info!(files = %shown.join(", "), every_ms = POLL.as_millis() as u64, "watching the configuration files");
    }
    let mut hangup = reload.hangup.take();
    loop {
        let trigger = tokio::select! {
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                // What is read once settled is what the next change is measured against.
                seen = settled(&files, contents(&files)).await;
                "SIGHUP".to_string()
            },
            () = async {
                if reload.watch {
                    tokio::time::sleep(POLL).await
                } else {
                    std::future::pending().await
                }
            } => {
                let now = contents(&files);
                let Some(changed) = files
                    .iter()
                    .zip(now.iter().zip(&seen))
                    .find(|(_, (now, before))| now != before)
                    .map(|(file, _)| file.display().to_string())
                else {
                    continue;
                };
                seen = settled(&files, now).await;
                format!("{changed} changed")
            }
        };
        reloading.reload(&reload.dir, &trigger).await;
    }
}

impl Reloading {
    /// Reads and checks the configuration, and applies what can be applied while serving.
    async fn reload(&mut self, dir: &ConfigDir, trigger: &str) {
        let m = &self.state.metrics;
        let running = self.running.clone();
        let dir = dir.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let settings = configuration::read(&dir)
                .map_err(|e| e.to_string())?
                .settings;
            let changed = changed_keys(&running, &settings);
            // librdkafka's own check, as at startup, when a Kafka setting changed: it needs a
            // restart, which must not fail then.
            if changed.iter().any(|key| key.starts_with("kafka.")) {
                crate::kafka::check_producer_config(&settings.kafka).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>((settings, changed))
        })
        .await
        .unwrap_or_else(|e| Err(format!("the configuration could not be read: {e}")));
        let (settings, changed) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                return ConfigReloadRefused {
                    trigger,
                    error: &error,
                }
                .emit(m)
            }
        };
        let current = self.state.ingest.providers();
        let providers = match settings
            .provider_registry_after(current.registry())
            .and_then(|registry| Providers::new(&settings, registry))
        {
            Ok(providers) => providers,
            Err(error) => {
                return ConfigReloadRefused {
                    trigger,
                    error: &error,
                }
                .emit(m)
            }
        };
        let restart: Vec<String> = changed.into_iter().filter(|key| !reloadable(key)).collect();
        if !restart.is_empty() {
            ConfigNeedsRestart {
                trigger,
                keys: &restart,
            }
            .emit(m);
        }
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let changes = ProviderChanges::between(&self.running, &settings);
        let enabled = providers.enabled();
        provider_series(m, &providers.registry().names());
        if let Some(forwarded) = &self.forwarded {
            forwarded.add(&enabled);
        }
        // The record of rejected deliveries follows: a provider added is named, not `unknown`,
        // and a changed definition's expected headers are the new ones.
        self.state.rejections.follow(
            providers
                .registry()
                .iter()
                .map(|p| (p.name(), crate::providers::expected_headers(p)))
                .collect(),
        );
        self.state.ingest.replace_providers(providers);
        if settings.log.level != self.running.log.level {
            let why = match telemetry::set_level(&settings.log.level) {
                Ok(LevelChange::Applied | LevelChange::NotInstalled) => None,
                Ok(LevelChange::OverriddenByRustLog) => {
                    Some("RUST_LOG is set, and overrides it as at startup".to_string())
                }
                Err(e) => Some(e),
            };
            if let Some(why) = why {
                LogLevelKept {
                    log_level: &settings.log.level,
                    why: &why,
                }
                .emit(m);
            }
        }
        self.running.providers = settings.providers;
        self.running.log.level = settings.log.level;
        ConfigReloaded {
            trigger,
            providers: &enabled,
            added: &changes.added,
            removed: &changes.removed,
            changed: &changes.changed,
            log_level: &self.running.log.level,
        }
        .emit(m);
    }
}
