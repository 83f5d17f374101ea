//! Readiness: whether the broker (and the Schema Registry, when configured) answered the last
//! check. Checked on a timer, so `/readyz` probes never hit the dependencies themselves.

use crate::avro::RegistryClient;
use crate::kafka::KafkaSink;
use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the service is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Broker,
    SchemaRegistry,
}

/// The latest readiness verdict. Starts "broker down" until the first check answers.
#[derive(Debug)]
pub struct Readiness(Mutex<Result<(), NotReady>>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Mutex::new(Err(NotReady::Broker)))
    }
}

impl Readiness {
    pub fn get(&self) -> Result<(), NotReady> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `verdict`; true when it differs from the previous one.
    fn set(&self, verdict: Result<(), NotReady>) -> bool {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *current, verdict) != verdict
    }
}

/// Checks the dependencies every `interval` until the task is aborted.
pub async fn probe_loop(
    sink: Arc<KafkaSink>,
    registry: Option<Arc<RegistryClient>>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    let timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let probe_sink = sink.clone();
        let broker_up = tokio::task::spawn_blocking(move || probe_sink.probe(timeout))
            .await
            .unwrap_or(false);
        metrics
            .ready
            .with_label_values(&["kafka"])
            .set(i64::from(broker_up));
        let registry_up = match &registry {
            Some(r) => {
                let up = tokio::time::timeout(timeout, r.probe())
                    .await
                    .unwrap_or(false);
                metrics
                    .ready
                    .with_label_values(&["schema_registry"])
                    .set(i64::from(up));
                up
            }
            None => true,
        };
        let verdict = match (broker_up, registry_up) {
            (false, _) => Err(NotReady::Broker),
            (true, false) => Err(NotReady::SchemaRegistry),
            (true, true) => Ok(()),
        };
        if readiness.set(verdict) {
            match verdict {
                Ok(()) => tracing::info!("dependencies reachable: ready"),
                Err(why) => tracing::warn!(?why, "not ready"),
            }
        }
        tokio::time::sleep(interval).await;
    }
}
