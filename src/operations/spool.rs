//! `hookstream spool status|drain`: what a spool directory holds, and forwarding all of it for a
//! node being retired.

use crate::configuration::Settings;
use crate::startup::Wiring;

use crate::spool::{self, Spool};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::time::Duration;

/// Why `spool status` or `spool drain` did not do what it was asked. The command's exit status
/// follows from the variant, never from the message.
#[derive(Debug, thiserror::Error)]
pub enum SpoolCommandError {
    /// `spool.dir` does not exist (the path looked at, made absolute): nothing was ever spooled
    /// there, or `spool.dir` names another directory. Neither command creates it; `serve` does.
    #[error("spool.dir {} does not exist (a relative spool.dir is read from the current directory; `serve` creates it when the spool is enabled)", .0.display())]
    NotFound(PathBuf),
    /// The directory cannot be used: it is not a directory, cannot be read or locked, or another
    /// process (a `serve`) holds it.
    #[error("{0}")]
    Unusable(String),
    /// `drain`'s time ran out with records still in the spool.
    #[error("forwarded {forwarded} record(s), but some remain after {}: is the broker reachable?", humantime::format_duration(*.timeout))]
    RecordsRemain { forwarded: u64, timeout: Duration },
    /// Anything else: the metrics registry, the Kafka client, the configuration's providers.
    #[error("{0}")]
    Failed(String),
}

/// Refuses a spool directory that does not exist, before anything would create it, naming the
/// absolute path looked at.
fn existing(dir: &Path) -> Result<(), SpoolCommandError> {
    let absolute = || std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(SpoolCommandError::Unusable(format!(
            "spool.dir {} is not a directory",
            absolute().display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(SpoolCommandError::NotFound(absolute()))
        }
        Err(e) => Err(SpoolCommandError::Unusable(format!(
            "spool.dir {}: {e}",
            absolute().display()
        ))),
    }
}

/// Prints one line per topic — records, bytes, the oldest record's age — and a total. Reads the
/// files without the lock, so it works while `serve` runs.
pub fn status(settings: &Settings, out: &mut dyn Write) -> Result<(), SpoolCommandError> {
    let dir = &settings.spool.dir;
    existing(dir)?;
    let topics = spool::status(dir).map_err(SpoolCommandError::Unusable)?;
    let now = chrono::Utc::now().timestamp_millis();
    let (mut records, mut bytes) = (0, 0);
    let _ = writeln!(
        out,
        "{:<60} {:>10} {:>14} {:>12}",
        "topic", "records", "bytes", "oldest"
    );
    for (topic, s) in &topics {
        records += s.records;
        bytes += s.bytes;
        let age = Duration::from_millis(u64::try_from(now - s.oldest).unwrap_or(0));
        let _ = writeln!(
            out,
            "{topic:<60} {:>10} {:>14} {:>12}",
            s.records,
            s.bytes,
            humantime::format_duration(Duration::from_secs(age.as_secs())).to_string()
        );
    }
    let _ = writeln!(out, "{:<60} {records:>10} {bytes:>14}", "total");
    Ok(())
}

/// Forwards everything in the spool, then returns how many records it forwarded. `Err` when the
/// directory does not exist or is in use (a `serve` holds it), or when records remain after
/// `timeout` (the broker is not back).
pub async fn drain(settings: &Settings, timeout: Duration) -> Result<u64, SpoolCommandError> {
    existing(&settings.spool.dir)?;
    let providers = settings
        .provider_registry()
        .map_err(|e| SpoolCommandError::Failed(e.to_string()))?;
    let wiring = Wiring::new(settings, &providers.names())
        .map_err(|e| SpoolCommandError::Failed(e.to_string()))?;
    let spool = Spool::open(
        &settings.spool.dir,
        settings.spool.max_bytes,
        wiring.metrics(),
    )
    .map_err(|e| SpoolCommandError::Unusable(e.to_string()))?;
    let sink = wiring
        .sink(true)
        .map_err(|e| SpoolCommandError::Failed(e.to_string()))?;
    let enabled = providers
        .iter()
        .filter(|p| settings.secrets_for(*p).is_ok_and(|s| !s.is_empty()))
        .map(|p| p.name())
        .collect();
    let forwarder = tokio::spawn(spool::run_forwarder_until_stopped(
        spool.clone(),
        sink.clone(),
        spool::Forwarding {
            ack_timeout: settings.kafka.ack_timeout,
            providers: spool::ForwardedProviders::new(enabled),
            dead_letter_topic: settings
                .dead_letter
                .enabled
                .then(|| settings.dead_letter.topic(&settings.kafka.topic_prefix)),
            stall_after: crate::startup::stall_after(settings),
        },
    ));
    let until = tokio::time::Instant::now() + timeout;
    while !spool.is_empty() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    forwarder.abort();
    let forwarded = wiring.metrics().spool.forwarded.get();
    if spool.is_empty() {
        Ok(forwarded)
    } else {
        Err(SpoolCommandError::RecordsRemain { forwarded, timeout })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> Settings {
        let mut settings = crate::configuration::get_configuration(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config"
        )))
        .expect("defaults");
        settings.spool.dir = dir.to_path_buf();
        settings
    }

    #[tokio::test]
    async fn a_spool_directory_that_does_not_exist_is_refused_by_status_and_drain_and_not_created()
    {
        let missing = Path::new("no-such-spool-directory").join(std::process::id().to_string());
        let settings = settings(&missing);
        let absolute = std::env::current_dir().expect("cwd").join(&missing);
        let mut out = Vec::new();
        match status(&settings, &mut out) {
            Err(e @ SpoolCommandError::NotFound(_)) => {
                assert!(
                    e.to_string().contains(&absolute.display().to_string()),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        match drain(&settings, Duration::from_secs(1)).await {
            Err(SpoolCommandError::NotFound(path)) => assert_eq!(path, absolute),
            other => panic!("{other:?}"),
        }
        assert!(!missing.exists(), "drain created {}", missing.display());
    }
}
