//! The sink: writes messages and learns from how they end.
//!
//! Every write goes through one core, [`KafkaSink::write`], and differs only in its
//! [`Patience`]: how long it waits for the broker's acknowledgement, on which producer, and what
//! happens when the wait ends first. The public entry points are one-line wrappers:
//! - [`KafkaSink::publish`]: the request's own write (and dead letters), within its deadline;
//! - [`KafkaSink::publish_or_wait`]: a spooled webhook's first attempt, handed over when slow;
//! - [`KafkaSink::publish_patient`]: the spool's forwarder, as long as librdkafka retries;
//! - [`KafkaSink::write_canary`]: readiness's canary record.
//!
//! How a write ended is recorded in one place ([`KafkaSink::outcome`]): for readiness (the
//! latest write's outcome, the client's connection state) and as events (metrics and logs).
//!
//! Length: the one write core and what it learns (readiness, the connection's state, rotation)
//! stay together so that no write path can skip recording its outcome.

use super::client_errors::ClientHealth;
use super::error::{self, PublishError};
use super::health::WriteHealth;
use super::message::{event_headers, max_message_bytes, record, wire_size, OutboundMessage};
use super::producer::{ProducerHandle, ProducerSlot};
use super::topics::Topics;
use super::{
    delivery_timeout, patient_producer_config, producer_config, Acknowledged, ClientFailure,
    Published, PATIENT_DELIVERY_TIMEOUT,
};
use crate::codes::{ClientErrorKind, FailureClass, FailureReason};
use crate::configuration::KafkaSettings;
use crate::internal_events::{EventProduced, InternalEvent, ProduceFailed};
use crate::metrics::Metrics;
use rdkafka::error::KafkaError;
use rdkafka::producer::future_producer::{DeliveryFuture, OwnedDeliveryResult};
use rdkafka::producer::Producer;
use rdkafka::util::Timeout;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a patient write waits for librdkafka's report: its message timeout, and a margin.
const PATIENCE: Duration = PATIENT_DELIVERY_TIMEOUT.saturating_add(Duration::from_secs(30));

/// How a write waits for the broker's acknowledgement, and what happens when the wait ends
/// first.
#[derive(Debug, Clone, Copy)]
enum Patience {
    /// On the regular producer, until the request's deadline; enqueued only with enough of it
    /// left for librdkafka's own timeout. Should no report come by then, the producer holding
    /// the message is replaced and purged, so nothing is written behind the answer.
    Deadline(Instant),
    /// On the patient producer, until `until`; then the write goes on (never purged) and its
    /// outcome is handed over. The topic must exist by the earlier of the two.
    HandOff { until: Instant, deadline: Instant },
    /// On the patient producer, as long as librdkafka retries; the topic created by
    /// `create_by`.
    Patient { create_by: Instant },
}

/// What the write core came to.
enum Delivery {
    Acked(Acknowledged),
    /// Not acknowledged by the end of a [`Patience::HandOff`] wait: still in flight.
    InFlight {
        producer: Arc<ProducerHandle>,
        delivery: DeliveryFuture,
        started: Instant,
    },
}

/// The producers, the topics and the state of the connection to the cluster.
pub struct KafkaSink {
    producers: ProducerSlot,
    /// With the spool: the producer of writes that may outlive their request (first attempts
    /// answered 202, and the forwarder's), with a message timeout of minutes and never purged
    /// at a request's deadline, so that librdkafka's idempotent retries decide their outcome.
    patient: Option<ProducerSlot>,
    topics: Topics,
    ack_timeout: Duration,
    /// librdkafka's `message.timeout.ms`: a message is enqueued only with at least this much of
    /// its request's deadline left.
    delivery_timeout: Duration,
    /// Where readiness writes its canary record while writes are failing.
    canary_topic: String,
    /// librdkafka's `message.max.bytes`: a larger record is refused at enqueue (413), so it is
    /// refused before it is spooled too, the same answer in an outage as in fair weather.
    max_message_bytes: usize,
    health: WriteHealth,
    /// What librdkafka reported about the connection (a refused password, a failed handshake),
    /// shared with every client of this sink.
    client: Arc<ClientHealth>,
    metrics: Arc<Metrics>,
}

impl KafkaSink {
    /// `patient`: also a producer for writes that may outlive their request (the spool's).
    pub(crate) fn with_patient(
        settings: &KafkaSettings,
        metrics: Arc<Metrics>,
        patient: bool,
    ) -> Result<Self, KafkaError> {
        let config = producer_config(settings);
        let client = Arc::new(ClientHealth::new(Some(metrics.clone())));
        let topics = Topics::new(settings, config.clone(), client.clone(), metrics.clone())?;
        let patient = if patient {
            Some(ProducerSlot::new(
                patient_producer_config(settings),
                metrics.clone(),
                client.clone(),
            )?)
        } else {
            None
        };
        Ok(Self {
            producers: ProducerSlot::new(config, metrics.clone(), client.clone())?,
            patient,
            topics,
            ack_timeout: settings.ack_timeout,
            delivery_timeout: delivery_timeout(settings.ack_timeout),
            canary_topic: format!("{}.canary", settings.topic_prefix),
            max_message_bytes: max_message_bytes(settings),
            health: WriteHealth::default(),
            client,
            metrics,
        })
    }

    /// Writes one message and waits for the broker's acknowledgement, at most until `deadline`.
    pub(crate) async fn publish(
        &self,
        msg: OutboundMessage<'_>,
        deadline: Instant,
    ) -> Result<Acknowledged, PublishError> {
        self.counted(&msg, Patience::Deadline(deadline)).await
    }

    /// Writes one message like [`KafkaSink::publish`], but waits for the acknowledgement only
    /// until `until`: then the write goes on, and [`Published::Waiting`] resolves how it ended.
    /// The write goes to the patient producer, never purged at a request's deadline, so that
    /// librdkafka's idempotent retries decide its outcome even when the broker received it and
    /// froze: the spool keeps the record meanwhile, and drops its copy if this first write is
    /// acknowledged (a second copy is forwarded only when the first write failed).
    pub(crate) async fn publish_or_wait(
        self: &Arc<Self>,
        msg: OutboundMessage<'_>,
        until: Instant,
        deadline: Instant,
    ) -> Result<Published, PublishError> {
        let written = self
            .write(&msg, Patience::HandOff { until, deadline })
            .await;
        let (producer, delivery, started) = match written {
            Ok(Delivery::InFlight {
                producer,
                delivery,
                started,
            }) => (producer, delivery, started),
            Ok(Delivery::Acked(ack)) => {
                self.outcome(msg.provider, msg.topic, msg.event_name, &Ok(ack), true);
                return Ok(Published::Acked(ack));
            }
            Err(e) => {
                self.outcome(
                    msg.provider,
                    msg.topic,
                    msg.event_name,
                    &Err(e.clone()),
                    true,
                );
                return Err(e);
            }
        };
        // Not acknowledged in time: writes are failing until one is acknowledged again, so the
        // next webhooks are spooled at once rather than each waiting.
        self.health.failed();
        let sink = Arc::clone(self);
        // Owned: the future outlives the request (event names are free-form, never interned).
        let (topic, provider) = (msg.topic.to_string(), msg.provider);
        let event_name = msg.event_name.map(str::to_string);
        Ok(Published::Waiting(Box::pin(async move {
            let slot = sink.patient_slot();
            let result = match tokio::time::timeout(PATIENCE, delivery).await {
                Ok(reported) => sink.settle(slot, &producer, &topic, started, reported),
                Err(_) => Err(PublishError::timed_out()),
            };
            sink.outcome(provider, &topic, event_name.as_deref(), &result, true);
            result
        })))
    }

    /// Writes a spooled record with the patient producer: waits as long as librdkafka retries
    /// (its message timeout), never purging it — the forwarder's write.
    pub(crate) async fn publish_patient(
        &self,
        msg: OutboundMessage<'_>,
        create_by: Instant,
    ) -> Result<Acknowledged, PublishError> {
        self.counted(&msg, Patience::Patient { create_by }).await
    }

    /// Writes a small record to `{topic_prefix}.canary`, bounded by `ack_timeout`: readiness
    /// uses it to learn whether writes succeed again while no request is writing. Not counted
    /// as a produced event nor as a produce failure.
    pub(crate) async fn write_canary(&self) -> Result<(), PublishError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let id = format!("canary-{now}");
        let msg = OutboundMessage {
            topic: &self.canary_topic,
            key: None,
            value: b"hookstream readiness canary",
            headers: &event_headers("hookstream", "canary", &id),
            provider: "hookstream",
            event_name: None,
        };
        let result = self
            .acked(&msg, Patience::Deadline(Instant::now() + self.ack_timeout))
            .await;
        self.outcome(msg.provider, msg.topic, None, &result, false);
        result.map(|_| ())
    }

    /// A write that ends acknowledged or not (never handed over), recorded and counted.
    async fn counted(
        &self,
        msg: &OutboundMessage<'_>,
        patience: Patience,
    ) -> Result<Acknowledged, PublishError> {
        let result = self.acked(msg, patience).await;
        self.outcome(msg.provider, msg.topic, msg.event_name, &result, true);
        result
    }

    /// The write core for a patience that never hands over.
    async fn acked(
        &self,
        msg: &OutboundMessage<'_>,
        patience: Patience,
    ) -> Result<Acknowledged, PublishError> {
        match self.write(msg, patience).await? {
            Delivery::Acked(ack) => Ok(ack),
            Delivery::InFlight { .. } => Err(PublishError::timed_out()),
        }
    }

    /// The write core: refused at once while the cluster is known to refuse the credentials;
    /// the topic made sure of; enqueued on the producer `patience` names; its acknowledgement
    /// awaited as `patience` says.
    async fn write(
        &self,
        msg: &OutboundMessage<'_>,
        patience: Patience,
    ) -> Result<Delivery, PublishError> {
        self.refuse_if_blocked()?;
        let (slot, create_by, wait_until) = match patience {
            Patience::Deadline(deadline) => (&self.producers, deadline, Some(deadline)),
            Patience::HandOff { until, deadline } => {
                (self.patient_slot(), until.min(deadline), Some(until))
            }
            Patience::Patient { create_by } => (self.patient_slot(), create_by, None),
        };
        self.topics
            .ensure(msg.topic, msg.provider, create_by)
            .await?;
        if let Patience::Deadline(deadline) = patience {
            self.enough_time_left(deadline)?;
        }
        let producer = slot.current();
        let started = Instant::now();
        // Never waits: a full queue is an immediate 503.
        let mut delivery = producer
            .send_result(record(msg))
            .map_err(|(err, _)| self.failed(slot, &producer, "enqueue", &err, msg.topic))?;
        let wait_until = wait_until.unwrap_or_else(|| Instant::now() + PATIENCE);
        match tokio::time::timeout_at(wait_until, &mut delivery).await {
            Ok(reported) => self
                .settle(slot, &producer, msg.topic, started, reported)
                .map(Delivery::Acked),
            Err(_) => match patience {
                Patience::HandOff { .. } => Ok(Delivery::InFlight {
                    producer,
                    delivery,
                    started,
                }),
                Patience::Deadline(_) => {
                    // librdkafka should have reported by now; make sure the message is not
                    // written behind the 503 by purging the instance that holds it.
                    self.topics.forget(msg.topic);
                    self.producers.replace(
                        &producer,
                        "no delivery report before the request's deadline",
                    );
                    Err(PublishError::timed_out())
                }
                Patience::Patient { .. } => Err(PublishError::timed_out()),
            },
        }
    }

    /// Enough of the deadline is left for librdkafka's own timeout.
    fn enough_time_left(&self, deadline: Instant) -> Result<(), PublishError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < self.delivery_timeout {
            return Err(PublishError::new(
                FailureReason::Deadline,
                format!(
                    "only {} ms of kafka.ack_timeout left, less than the broker may need; nothing was written",
                    left.as_millis()
                ),
            ));
        }
        Ok(())
    }

    /// What librdkafka's report of a write means.
    fn settle(
        &self,
        slot: &ProducerSlot,
        producer: &Arc<ProducerHandle>,
        topic: &str,
        started: Instant,
        reported: Result<OwnedDeliveryResult, futures_channel::oneshot::Canceled>,
    ) -> Result<Acknowledged, PublishError> {
        match reported {
            Ok(Ok(delivery)) => Ok(Acknowledged {
                partition: delivery.partition,
                offset: delivery.offset,
                elapsed: started.elapsed(),
            }),
            Ok(Err((err, _))) => Err(self.failed(slot, producer, "produce", &err, topic)),
            Err(_canceled) => Err(PublishError::new(
                FailureReason::BrokerUnavailable,
                "the producer was shut down before it reported the write",
            )),
        }
    }

    /// Records how a write ended, for readiness and the client's state, and (`counted`) as
    /// events: produced (for an event record) or failed.
    fn outcome(
        &self,
        provider: &'static str,
        topic: &str,
        event_name: Option<&str>,
        result: &Result<Acknowledged, PublishError>,
        counted: bool,
    ) {
        match result {
            Ok(ack) => {
                self.health.succeeded();
                self.client.topic_written(topic);
                if let (true, Some(event_name)) = (counted, event_name) {
                    EventProduced {
                        provider,
                        event_name,
                        elapsed: ack.elapsed,
                    }
                    .emit(&self.metrics);
                }
            }
            Err(error) => {
                if error.class() == FailureClass::Retriable {
                    self.health.failed();
                }
                if counted {
                    ProduceFailed {
                        provider,
                        reason: error.reason,
                        detail: error,
                    }
                    .emit(&self.metrics);
                }
            }
        }
    }

    /// Classifies a failed enqueue or delivery and heals what it can.
    fn failed(
        &self,
        slot: &ProducerSlot,
        producer: &Arc<ProducerHandle>,
        context: &'static str,
        err: &KafkaError,
        topic: &str,
    ) -> PublishError {
        let error = PublishError::classify(context, err, producer.client().fatal_error());
        if error.reason == FailureReason::NotAuthorized {
            match err.rdkafka_error_code() {
                Some(rdkafka::error::RDKafkaErrorCode::TopicAuthorizationFailed) => self.client.topic_denied(
                    topic,
                    &format!("kafka not authorized to write to topic {topic}: the service account needs WRITE on it ({err})"),
                ),
                _ => self.client.cluster_denied_now(&error.detail),
            }
        }
        if !matches!(
            error.reason,
            FailureReason::QueueFull | FailureReason::MessageTooLarge
        ) {
            self.topics.forget(topic);
        }
        if error::replaces_producer(error.reason) {
            slot.replace(producer, &error.detail);
        }
        error
    }

    /// The topic an event of `provider` goes to: its own, or its provider's overflow topic
    /// past `kafka.max_topics_per_provider` ([`Topics::event_topic`]).
    pub(crate) async fn event_topic(
        &self,
        provider: &'static str,
        topic: String,
        deadline: Instant,
    ) -> String {
        // Not while the cluster is known to refuse the credentials: the write is refused at
        // once, naming why, and listing the cluster's topics would wait out the deadline.
        let listing = self.client.blocking().is_none();
        self.topics
            .event_topic(provider, topic, deadline, listing)
            .await
    }

    /// Refuses at once a message larger than librdkafka's `message.max.bytes`, as librdkafka
    /// does at enqueue (its size check: the record's key, value and headers plus the largest
    /// framing overhead) — so that a record spooled while the broker is away is one the
    /// producer will take.
    pub(crate) fn check_size(&self, msg: &OutboundMessage<'_>) -> Result<(), PublishError> {
        let size = wire_size(msg);
        if size > self.max_message_bytes {
            return Err(PublishError::new(
                FailureReason::MessageTooLarge,
                format!(
                    "the record is {size} bytes, more than the producer's message.max.bytes ({})",
                    self.max_message_bytes
                ),
            ));
        }
        Ok(())
    }

    /// The patient producer (the regular one when there is none).
    fn patient_slot(&self) -> &ProducerSlot {
        self.patient.as_ref().unwrap_or(&self.producers)
    }

    /// Replaces the patient producer (the forwarder's), whose writes make no progress: its
    /// messages are purged, and reported as failed, so the forwarder writes them again.
    pub(crate) fn replace_patient(&self, why: &str) {
        let slot = self.patient_slot();
        slot.replace(&slot.current(), why);
    }

    /// Where readiness (and `config check --connect`) writes its canary records.
    pub(crate) fn canary_topic(&self) -> &str {
        &self.canary_topic
    }

    /// The most recent write failed for a reason worth retrying, and none succeeded since; or
    /// the cluster is known to refuse the credentials or the handshake.
    pub(crate) fn writes_failing(&self) -> bool {
        self.health.failing() || self.client.blocking().is_some()
    }

    /// Whether readiness should write its canary: the latest write failed, or the cluster
    /// denied what every write needs (only a write tells when that is lifted).
    pub(crate) fn needs_canary(&self) -> bool {
        self.health.failing() || self.client.cluster_denied().is_some()
    }

    /// An authentication or TLS failure known to stop every write until the operator fixes it
    /// (a wrong password, a certificate the cluster refuses).
    pub(crate) fn client_blocking(&self) -> Option<ClientFailure> {
        self.client.blocking()
    }

    /// The latest connection failure librdkafka reported since the cluster last answered.
    pub(crate) fn client_failure(&self) -> Option<ClientFailure> {
        self.client.latest()
    }

    /// A denial that stops every write (no topic named), while it lasts.
    pub(crate) fn cluster_denied(&self) -> Option<String> {
        self.client.cluster_denied()
    }

    /// Topics the cluster would not let hookstream create, each with why.
    pub(crate) fn denied_topics(&self) -> Vec<String> {
        self.client.denied_topics()
    }

    /// Refuses a write at once while the cluster is known to refuse the credentials or the
    /// handshake: it could only wait out its deadline. The detail names the cause.
    fn refuse_if_blocked(&self) -> Result<(), PublishError> {
        match self.client.blocking() {
            None => Ok(()),
            Some(failure) => Err(PublishError::new(
                match failure.kind {
                    ClientErrorKind::Tls => FailureReason::Tls,
                    _ => FailureReason::NotAuthenticated,
                },
                format!("{failure} (fix the credentials or certificates; hookstream tries again by itself)"),
            )),
        }
    }

    /// Replaces a producer librdkafka raised a fatal error on; returns that error.
    pub(crate) fn heal_fatal_producer(&self) -> Option<String> {
        let patient = self
            .patient
            .as_ref()
            .and_then(ProducerSlot::replace_if_fatal);
        self.producers.replace_if_fatal().or(patient)
    }

    /// Raises a librdkafka fatal error on the current producer (tests of the recovery path).
    #[doc(hidden)]
    pub fn inject_fatal_error(&self) {
        self.producers.inject_fatal_error();
    }

    /// Whether the cluster answers a metadata request within `timeout`. Blocking: call it from a
    /// blocking thread.
    pub(crate) fn probe(&self, timeout: Duration) -> bool {
        let answered = self
            .producers
            .current()
            .client()
            .fetch_metadata(None, Timeout::After(timeout))
            .is_ok();
        self.client.probed(answered);
        answered
    }

    /// Builds every client again from the configuration (certificate files read anew) and moves
    /// writes to the new ones; the old producers finish what they hold. Nothing changes unless
    /// every new client was built. Blocking.
    pub(crate) fn rotate_clients(&self) -> Result<(), String> {
        let admin = self.topics.build_admin()?;
        let fresh = self.producers.build().map_err(|e| e.to_string())?;
        let patient = match &self.patient {
            Some(slot) => Some(slot.build().map_err(|e| e.to_string())?),
            None => None,
        };
        // Connected before writes move to them, so the first writes do not wait for a handshake.
        let warm_up = Timeout::After(self.ack_timeout.min(Duration::from_secs(2)));
        let _ = fresh.client().fetch_metadata(None, warm_up);
        if let Some(patient) = &patient {
            let _ = patient.client().fetch_metadata(None, warm_up);
        }
        self.topics.rotate(admin);
        self.producers.rotate_to(fresh, self.ack_timeout);
        if let (Some(slot), Some(fresh)) = (&self.patient, patient) {
            // Within `kafka.ack_timeout` too: what the old one still holds then is forwarded
            // again by the new one (the spool keeps it meanwhile).
            slot.rotate_to(fresh, self.ack_timeout);
        }
        Ok(())
    }

    /// Waits up to `timeout` for queued messages to be delivered (both producers at once).
    /// Blocking.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let patient = self.patient.as_ref().map(|p| {
            let producer = p.current();
            std::thread::spawn(move || producer.flush(Timeout::After(timeout)))
        });
        let flushed = self.producers.current().flush(Timeout::After(timeout));
        let patient = patient
            .map(|t| t.join().unwrap_or(Ok(())))
            .unwrap_or(Ok(()));
        flushed.and(patient)
    }
}

impl super::certificates::Rotate for KafkaSink {
    fn rotate_clients(&self) -> Result<(), String> {
        KafkaSink::rotate_clients(self)
    }
}
