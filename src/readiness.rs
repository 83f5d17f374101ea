//! Readiness: whether hookstream can do its job right now.
//!
//! Not ready when the broker did not answer the last metadata request, when the most recent write
//! failed (metadata requests can succeed while every write fails: a fenced or stuck producer),
//! or when the Schema Registry did not answer its last check. Dependencies are checked on a
//! timer, so `/readyz` probes never reach them; write outcomes are read live. While writes are
//! failing, each check writes a small canary record, so readiness notices recovery even when the
//! load balancer has stopped sending traffic.

use crate::avro::RegistryClient;
use crate::codes::ClientErrorKind;
use crate::dedupe::Dedupe;
use crate::internal_events::{DependencyChecked, InternalEvent};
use crate::kafka::KafkaSink;
use crate::metrics::Metrics;
use crate::spool::{ForwardingProblem, Spool, SpoolError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why the service is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The broker did not answer the last metadata request.
    Broker,
    /// The most recent write was not acknowledged.
    Writes,
    SchemaRegistry,
    /// SIGTERM or SIGINT arrived: the load balancer should send no more.
    ShuttingDown,
    /// Redis did not answer, and deliveries are refused without it (`on_unavailable = "reject"`).
    Dedupe,
    /// The broker is not acknowledging, and the spool is full (`spool.max_bytes`).
    SpoolFull,
    /// The broker is not acknowledging, and the spool's last append failed (a full disk, an
    /// I/O error).
    SpoolUnwritable,
    /// The spool holds records, the broker answers metadata, and none was acknowledged for
    /// `spool` stall time: the broker accepts them no longer (came back empty, fenced).
    SpoolStalled,
    /// Spooled records cannot be read back (an I/O error): kept, tried again.
    SpoolUnreadable,
    /// The cluster refuses the credentials: nothing can be written until the Secret is fixed.
    /// Not ready even with the spool, so that a rollout of a wrong password stops at its first
    /// pod while the others serve.
    KafkaAuthentication,
    /// The TLS handshake with the cluster fails (a certificate refused or missing, a CA that
    /// does not match). Not ready even with the spool, as for authentication.
    KafkaTls,
    /// The cluster refuses an operation every write needs (no topic named: the cluster, the
    /// idempotent producer).
    KafkaAuthorization,
}

/// The latest verdict of the dependency checks, combined with the live write outcome.
pub struct Readiness {
    /// Starts "broker down" until the first check answers.
    checked: Mutex<Result<(), NotReady>>,
    /// Set once, when shutdown begins; wins over everything else.
    shutting_down: AtomicBool,
    sink: Arc<KafkaSink>,
    /// With the spool, a broker that is down or failing writes does not make hookstream unready
    /// while the spool takes what the broker does not: deliveries are answered 202.
    spool: Option<Arc<Spool>>,
}

impl Readiness {
    pub(crate) fn new(sink: Arc<KafkaSink>, spool: Option<Arc<Spool>>) -> Self {
        Self {
            checked: Mutex::new(Err(NotReady::Broker)),
            shutting_down: AtomicBool::new(false),
            sink,
            spool,
        }
    }

    /// From now on, not ready: shutdown has begun.
    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn get(&self) -> Result<(), NotReady> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err(NotReady::ShuttingDown);
        }
        // Known to stop every write until an operator acts: said as such, spool or not.
        if let Some(failure) = self.sink.client_blocking() {
            return Err(match failure.kind {
                ClientErrorKind::Tls => NotReady::KafkaTls,
                _ => NotReady::KafkaAuthentication,
            });
        }
        if self.sink.cluster_denied().is_some() {
            return Err(NotReady::KafkaAuthorization);
        }
        let checked = *self.checked.lock();
        let broker = checked.and_then(|()| {
            if self.sink.writes_failing() {
                Err(NotReady::Writes)
            } else {
                Ok(())
            }
        });
        match (broker, &self.spool) {
            // The spool takes what the broker does not, while it can.
            (Err(NotReady::Broker | NotReady::Writes), Some(spool)) => match spool.accepting() {
                Ok(()) => Ok(()),
                Err(SpoolError::Full(_)) => Err(NotReady::SpoolFull),
                Err(SpoolError::Unwritable(_)) => Err(NotReady::SpoolUnwritable),
            },
            (Ok(()), Some(spool)) => match spool.forwarding_problem() {
                None => Ok(()),
                Some(ForwardingProblem::Unreadable(_)) => Err(NotReady::SpoolUnreadable),
                Some(ForwardingProblem::Stalled(_)) => Err(NotReady::SpoolStalled),
            },
            (other, _) => other,
        }
    }

    /// What failed, in the words of what reported it, when that is known: librdkafka's report of
    /// a refused password, a failed handshake or a denial, or of the latest failed connection.
    pub fn cause(&self, why: NotReady) -> Option<String> {
        match why {
            NotReady::KafkaAuthentication | NotReady::KafkaTls => {
                self.sink.client_blocking().map(|f| f.to_string())
            }
            NotReady::KafkaAuthorization => self.sink.cluster_denied(),
            NotReady::Broker
            | NotReady::Writes
            | NotReady::SpoolFull
            | NotReady::SpoolUnwritable
            | NotReady::SpoolStalled => self.sink.client_failure().map(|f| f.to_string()),
            _ => None,
        }
    }

    /// What is wrong without making hookstream unready: topics the cluster would not let it
    /// create (their events are answered 500 `produce_failed` until an administrator creates
    /// them, while every other event is written).
    pub fn warnings(&self) -> Vec<String> {
        self.sink.denied_topics()
    }

    /// Records the checks' verdict; true when it differs from the previous one.
    fn set(&self, verdict: Result<(), NotReady>) -> bool {
        let mut current = self.checked.lock();
        std::mem::replace(&mut *current, verdict) != verdict
    }
}

/// What readiness checks besides the broker.
pub struct Dependencies {
    pub registry: Option<Arc<RegistryClient>>,
    pub dedupe: Arc<Dedupe>,
}

/// Checks the dependencies every `interval` until the task is aborted (and measures the dedupe
/// cache on the same beat).
pub(crate) async fn run_checks_until_stopped(
    readiness: Arc<Readiness>,
    dependencies: Dependencies,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    let Dependencies { registry, dedupe } = dependencies;
    let sink = readiness.sink.clone();
    let timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(5));
    let mut redis_was_up = None;
    loop {
        dedupe.measure();
        if let Some(fatal) = sink.heal_fatal_producer() {
            tracing::warn!(error = %fatal, "the Kafka producer had a fatal error: replaced it");
        }
        let probe_sink = sink.clone();
        let broker_up = tokio::task::spawn_blocking(move || probe_sink.probe(timeout))
            .await
            .unwrap_or(false);
        if broker_up && sink.needs_canary() {
            if let Err(e) = sink.write_canary().await {
                tracing::debug!(error = %e, "readiness canary write failed");
            }
        }
        DependencyChecked {
            dependency: "kafka",
            up: broker_up && !sink.writes_failing(),
        }
        .emit(&metrics);
        let registry_up = match &registry {
            Some(r) => {
                let up = tokio::time::timeout(timeout, r.probe())
                    .await
                    .unwrap_or(false);
                DependencyChecked {
                    dependency: "schema_registry",
                    up,
                }
                .emit(&metrics);
                up
            }
            None => true,
        };
        let redis_checked = dedupe.check_shared_store().await;
        let redis_up = redis_checked.as_ref().map(Result::is_ok);
        if let Some(up) = redis_up {
            DependencyChecked {
                dependency: "redis",
                up,
            }
            .emit(&metrics);
            if redis_was_up != Some(up) {
                let why = match &redis_checked {
                    Some(Err(why)) => why.as_str(),
                    _ => "",
                };
                match (up, dedupe.needs_shared_store()) {
                    (true, _) => tracing::info!("redis (dedupe) reachable"),
                    (false, true) => tracing::warn!(
                        error = why,
                        "redis (dedupe) unusable: not ready, deliveries answered 503 dedupe_unavailable until it is back"
                    ),
                    (false, false) => tracing::warn!(
                        error = why,
                        "redis (dedupe) unusable: deliveries are written without shared deduplication until it is back"
                    ),
                }
                redis_was_up = Some(up);
            }
        }
        let dedupe_up = redis_up.unwrap_or(true) || !dedupe.needs_shared_store();
        let verdict = match (broker_up, registry_up, dedupe_up) {
            (false, _, _) => Err(NotReady::Broker),
            (true, false, _) => Err(NotReady::SchemaRegistry),
            (true, true, false) => Err(NotReady::Dedupe),
            (true, true, true) => Ok(()),
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
