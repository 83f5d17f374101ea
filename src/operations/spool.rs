//! `hookstream spool status|drain`: what a spool directory holds, and forwarding all of it for a
//! node being retired.

use crate::configuration::Settings;
use crate::kafka::KafkaSink;
use crate::metrics::Metrics;
use crate::spool::{self, Spool};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// Why `spool status` or `spool drain` did not do what it was asked. The command's exit status
/// follows from the variant, never from the message.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
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

/// Prints one line per topic — records, bytes, the oldest record's age — and a total. Reads the
/// files without the lock, so it works while `serve` runs.
pub fn status(settings: &Settings, out: &mut dyn Write) -> Result<(), SpoolError> {
    let dir = &settings.spool.dir;
    if !dir.is_dir() {
        let _ = writeln!(
            out,
            "spool {}: no spool directory (nothing spooled)",
            dir.display()
        );
        return Ok(());
    }
    let topics = spool::status(dir).map_err(SpoolError::Unusable)?;
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
/// directory is in use (a `serve` holds it), or when records remain after `timeout` (the broker
/// is not back).
pub async fn drain(settings: &Settings, timeout: Duration) -> Result<u64, SpoolError> {
    let metrics = Arc::new(Metrics::new().map_err(|e| SpoolError::Failed(e.to_string()))?);
    let spool = Spool::open(
        &settings.spool.dir,
        settings.spool.max_bytes,
        metrics.clone(),
    )
    .map_err(SpoolError::Unusable)?;
    let sink = Arc::new(
        KafkaSink::with_patient(&settings.kafka, metrics.clone(), true)
            .map_err(|e| SpoolError::Failed(format!("cannot create the Kafka client: {e}")))?,
    );
    let providers = settings
        .provider_registry()
        .map_err(|e| SpoolError::Failed(e.to_string()))?
        .names();
    let forwarder = tokio::spawn(spool::forward(
        spool.clone(),
        sink.clone(),
        settings.kafka.ack_timeout,
        providers,
    ));
    let until = tokio::time::Instant::now() + timeout;
    while !spool.is_empty() && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    forwarder.abort();
    let forwarded = metrics.spool_forwarded.get();
    if spool.is_empty() {
        Ok(forwarded)
    } else {
        Err(SpoolError::RecordsRemain { forwarded, timeout })
    }
}
