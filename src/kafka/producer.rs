//! The current producer instance, its replacement, and the retirement of replaced instances.
//!
//! A producer that hit a state it cannot leave (a fatal error, fenced, a producer id the cluster
//! forgot) or whose write timed out is replaced by a fresh instance, which asks the cluster for a
//! new producer id. Requests still holding the old instance keep it until they are answered: its
//! queued and in-flight messages are purged at once, so they are answered 503 right away rather
//! than at their deadline. Purging and destroying a librdkafka client block, so both happen on a
//! dedicated thread, never on an HTTP worker.

use super::client_errors::ClientHealth;
use super::stats::StatsContext;
use crate::internal_events::{InternalEvent, ProducerReplaced};
use crate::metrics::Metrics;
use parking_lot::Mutex;
use rdkafka::error::KafkaResult;
use rdkafka::producer::{FutureProducer, Producer, PurgeConfig};
use rdkafka::ClientConfig;
use std::ops::Deref;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) type Instance = FutureProducer<StatsContext>;

/// Replacements are at least this far apart, so a broker that is down for long does not make
/// hookstream churn through producers (each one opens connections and threads).
const MIN_REPLACEMENT_INTERVAL: Duration = Duration::from_secs(1);

/// Work for the reaper thread.
enum Retirement {
    /// Fail the instance's queued and in-flight messages now (their requests get 503 at once).
    Purge(Arc<ProducerHandle>),
    /// Destroy an instance nobody uses any more.
    Destroy(Instance),
}

/// One producer instance. Dropping the last reference hands it to the reaper thread.
pub(crate) struct ProducerHandle {
    /// `None` only while being dropped.
    instance: Option<Instance>,
    reaper: mpsc::Sender<Retirement>,
}

impl Deref for ProducerHandle {
    type Target = Instance;

    fn deref(&self) -> &Instance {
        match &self.instance {
            Some(instance) => instance,
            None => unreachable!("the instance is only taken in drop"),
        }
    }
}

impl Drop for ProducerHandle {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            if let Err(mpsc::SendError(Retirement::Destroy(instance))) =
                self.reaper.send(Retirement::Destroy(instance))
            {
                // The reaper is gone (process shutdown): destroy it on a thread of its own.
                std::thread::spawn(move || drop(instance));
            }
        }
    }
}

struct Current {
    handle: Arc<ProducerHandle>,
    replaced_at: Option<Instant>,
}

/// The current producer and the means to replace it.
pub(crate) struct ProducerSlot {
    current: Mutex<Current>,
    /// Kept to build replacements.
    config: ClientConfig,
    metrics: Arc<Metrics>,
    /// What the sink's clients learned about the connection; every instance reports to it.
    client: Arc<ClientHealth>,
    reaper: mpsc::Sender<Retirement>,
}

impl ProducerSlot {
    pub(crate) fn new(
        config: ClientConfig,
        metrics: Arc<Metrics>,
        client: Arc<ClientHealth>,
    ) -> KafkaResult<Self> {
        let (reaper, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("producer-reaper".into())
            .spawn(move || reap(jobs))
            .map_err(|e| {
                rdkafka::error::KafkaError::ClientCreation(format!("cannot start a thread: {e}"))
            })?;
        let handle = Arc::new(ProducerHandle {
            instance: Some(
                config.create_with_context(StatsContext::new(metrics.clone(), client.clone()))?,
            ),
            reaper: reaper.clone(),
        });
        Ok(Self {
            current: Mutex::new(Current {
                handle,
                replaced_at: None,
            }),
            config,
            metrics,
            client,
            reaper,
        })
    }

    pub(crate) fn current(&self) -> Arc<ProducerHandle> {
        self.current.lock().handle.clone()
    }

    /// Replaces `failed` with a fresh instance, unless another request already did or the last
    /// replacement is less than [`MIN_REPLACEMENT_INTERVAL`] ago. The replaced instance's
    /// messages are purged on the reaper thread.
    pub(crate) fn replace(&self, failed: &Arc<ProducerHandle>, why: &str) {
        let mut current = self.current.lock();
        if !Arc::ptr_eq(&current.handle, failed)
            || current
                .replaced_at
                .is_some_and(|at| at.elapsed() < MIN_REPLACEMENT_INTERVAL)
        {
            return;
        }
        let fresh = match self
            .config
            .create_with_context(StatsContext::new(self.metrics.clone(), self.client.clone()))
        {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::error!(error = %e, "could not create a replacement Kafka producer");
                return;
            }
        };
        let old = std::mem::replace(
            &mut *current,
            Current {
                handle: Arc::new(ProducerHandle {
                    instance: Some(fresh),
                    reaper: self.reaper.clone(),
                }),
                replaced_at: Some(Instant::now()),
            },
        );
        drop(current);
        let _ = self.reaper.send(Retirement::Purge(old.handle));
        ProducerReplaced { why }.emit(&self.metrics);
    }

    /// A new instance from the configuration, its files (certificates) read again; not
    /// installed.
    pub(crate) fn build(&self) -> KafkaResult<Instance> {
        self.config
            .create_with_context(StatsContext::new(self.metrics.clone(), self.client.clone()))
    }

    /// Moves writes to `fresh`. The instance it replaces is not purged at once: requests still
    /// holding it get their delivery reports as it flushes (for up to `flush_within`, on a
    /// thread of its own); what it still holds then is purged — reported failed, so a spooled
    /// record is forwarded by the new instance rather than wait on one the cluster may refuse
    /// (a certificate it no longer accepts) — and it is destroyed.
    pub(crate) fn rotate_to(&self, fresh: Instance, flush_within: Duration) {
        let old = std::mem::replace(
            &mut *self.current.lock(),
            Current {
                handle: Arc::new(ProducerHandle {
                    instance: Some(fresh),
                    reaper: self.reaper.clone(),
                }),
                replaced_at: Some(Instant::now()),
            },
        );
        let flushing = std::thread::Builder::new()
            .name("producer-flush".into())
            .spawn(move || {
                if let Err(e) = old.handle.flush(rdkafka::util::Timeout::After(flush_within)) {
                    tracing::warn!(error = %e, "a replaced Kafka producer did not flush in time: what it held is reported failed");
                    old.handle.purge(PurgeConfig::default().queue().inflight());
                }
            });
        if let Err(e) = flushing {
            tracing::warn!(error = %e, "cannot start a thread to flush the replaced Kafka producer: it is destroyed when its last write is answered");
        }
    }

    /// Replaces the current producer if librdkafka raised a fatal error on it, so an idle
    /// hookstream heals too. Returns the fatal error found.
    pub(crate) fn replace_if_fatal(&self) -> Option<String> {
        let current = self.current();
        let (code, why) = current.client().fatal_error()?;
        let detail = format!("fatal producer error {code:?}: {why}");
        self.replace(&current, &detail);
        Some(detail)
    }

    /// Raises a librdkafka fatal error on the current producer, as a fenced producer would see.
    /// librdkafka offers this for testing fatal-error handling; nothing in hookstream calls it.
    #[doc(hidden)]
    pub fn inject_fatal_error(&self) {
        let current = self.current();
        let reason = c"injected fatal error (test)";
        // SAFETY: the client pointer is valid while `current` holds the instance, and
        // librdkafka copies the reason string before returning.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                current.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
                reason.as_ptr(),
            );
        }
    }
}

/// The reaper thread: purges replaced instances and destroys unused ones, until every sender is
/// gone.
fn reap(jobs: mpsc::Receiver<Retirement>) {
    for job in jobs {
        match job {
            Retirement::Purge(handle) => {
                handle.purge(PurgeConfig::default().queue().inflight());
                // Dropping it here may be the last reference: that queues its destruction.
                drop(handle);
            }
            Retirement::Destroy(instance) => drop(instance),
        }
    }
}
