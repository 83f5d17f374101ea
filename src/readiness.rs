//! Readiness: whether the broker (and the Schema Registry, when configured) answered the last
//! check. Checked on a timer, so `/readyz` probes never hit the dependencies themselves.

use crate::avro::RegistryClient;
use crate::kafka::KafkaSink;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why the service is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Broker,
    SchemaRegistry,
}

const READY: u8 = 0;
const BROKER_DOWN: u8 = 1;
const REGISTRY_DOWN: u8 = 2;

/// The latest readiness verdict. Starts "broker down" until the first check answers.
#[derive(Debug)]
pub struct Readiness(AtomicU8);

impl Default for Readiness {
    fn default() -> Self {
        Self(AtomicU8::new(BROKER_DOWN))
    }
}

impl Readiness {
    pub fn get(&self) -> Result<(), NotReady> {
        match self.0.load(Ordering::Relaxed) {
            READY => Ok(()),
            REGISTRY_DOWN => Err(NotReady::SchemaRegistry),
            _ => Err(NotReady::Broker),
        }
    }

    fn set(&self, verdict: Result<(), NotReady>) -> bool {
        let value = match verdict {
            Ok(()) => READY,
            Err(NotReady::Broker) => BROKER_DOWN,
            Err(NotReady::SchemaRegistry) => REGISTRY_DOWN,
        };
        self.0.swap(value, Ordering::Relaxed) != value
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
