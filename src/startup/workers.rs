//! The work that runs beside the servers: each worker has its own `run_*_until_stopped`, and
//! [`Application::run_until_stopped`](super::Application::run_until_stopped) starts them and
//! stops them.
//!
//! Two kinds, by when they stop:
//! - [`Background`] (readiness checks, the listener's and the Kafka client's certificates, the
//!   configuration reload) serves the servers: it stops once the listener is drained.
//! - [`Forwarder`] (the spool's) forwards what was answered 202 through the drain and the
//!   producer's flush: it stops last, and what it has not forwarded by then stays on disk.

use super::reload::{self, Reload, Reloading};
use crate::kafka::{CertificateFiles, KafkaSink};
use crate::readiness::{self, Dependencies, Readiness};
use crate::spool::{Forwarding, Spool};
use crate::tls::Certificates;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The readiness checks behind `/readyz`, on their interval.
pub(super) struct ReadinessChecks {
    pub readiness: Arc<Readiness>,
    pub dependencies: Dependencies,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub interval: Duration,
}

/// Workers that run while the servers serve.
pub(super) struct Background {
    pub readiness: ReadinessChecks,
    /// The public listener's certificate, when it speaks TLS: reloaded on SIGHUP and when its
    /// files change.
    pub tls: Option<Arc<Certificates>>,
    /// The Kafka client's certificate files, when `kafka.options` names any: the clients are
    /// built again when they change.
    pub kafka_certificates: Option<(Arc<KafkaSink>, CertificateFiles)>,
    /// Set by [`Application::reloading`](super::Application::reloading): where the
    /// configuration is read again, and when.
    pub reload: Option<Reload>,
    /// What a reload replaces, and the configuration in use.
    pub reloading: Reloading,
}

impl Background {
    /// Starts each worker on a task of its own (a blocking read in one does not hold the
    /// others); dropping the set stops them all.
    pub(super) fn spawn(self) -> JoinSet<&'static str> {
        let mut workers = JoinSet::new();
        let ReadinessChecks {
            readiness,
            dependencies,
            metrics,
            interval,
        } = self.readiness;
        workers.spawn(async move {
            readiness::run_checks_until_stopped(readiness, dependencies, metrics, interval).await;
            "readiness checks"
        });
        if let Some(tls) = self.tls {
            workers.spawn(async move {
                tls.run_reload_until_stopped().await;
                "the listener's certificate reload"
            });
        }
        if let Some((sink, files)) = self.kafka_certificates {
            workers.spawn(async move {
                crate::kafka::run_certificate_rotation_until_stopped(sink, files).await;
                "the Kafka client's certificate rotation"
            });
        }
        if let Some(reload) = self.reload {
            let reloading = self.reloading;
            workers.spawn(async move {
                reload::run_until_stopped(reload, reloading).await;
                "the configuration reload"
            });
        }
        workers
    }
}

/// The spool's forwarder, when the spool is enabled.
pub(super) struct Forwarder {
    pub spool: Arc<Spool>,
    pub sink: Arc<KafkaSink>,
    pub forwarding: Forwarding,
}

impl Forwarder {
    /// Starts forwarding what the spool holds from the start (records from before a restart
    /// too); dropping the set stops it.
    pub(super) fn spawn(self) -> JoinSet<()> {
        let mut forwarder = JoinSet::new();
        forwarder.spawn(crate::spool::run_forwarder_until_stopped(
            self.spool,
            self.sink,
            self.forwarding,
        ));
        forwarder
    }
}

/// Logs a worker that ended while the servers serve: each runs until stopped, so one that ends
/// panicked (the servers go on without it, as they would without a task of their own).
pub(super) fn worker_ended(ended: Result<&'static str, tokio::task::JoinError>) {
    match ended {
        Ok(worker) => tracing::error!(worker, "a background worker stopped early"),
        Err(e) => tracing::error!(error = %e, "a background worker failed"),
    }
}
