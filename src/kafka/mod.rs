//! Writing records to Kafka.
//!
//! [`KafkaSink::publish`] makes sure the topic exists (creating it once through the Admin API),
//! enqueues the message and resolves when the broker acknowledged it (`acks=all`, idempotent
//! producer) — all within the request's one deadline (`kafka.ack_timeout`):
//! - a full producer queue is answered at once, without waiting;
//! - librdkafka's own message timeout ends before the deadline (see
//!   [`client_config::delivery_timeout`]), and a message is enqueued only when the time left
//!   covers it, so librdkafka reports every message's fate before its request is answered;
//! - should no report arrive by the deadline anyway, the producer is replaced and the old one
//!   purged, so its messages cannot be written behind a 503.
//!
//! Self-healing, so that a provider's retry succeeds once the cluster is back:
//! - a failed write forgets its topic, so the retry re-checks that the topic exists (a deleted or
//!   wiped topic is created again);
//! - a write that timed out, or a producer that became unusable (fatal error, fenced, producer id
//!   or epoch lost), replaces the producer with a fresh instance ([`producer`]);
//! - the outcome of the latest write is kept ([`health`]) for readiness, which writes a canary
//!   record while writes are failing so it notices recovery without traffic.

mod certificates;
mod client_config;
mod client_errors;
mod error;
mod health;
mod producer;
mod stats;

pub(crate) use certificates::watch as watch_certificates;
pub use certificates::CertificateFiles;
pub use client_config::check_producer_config;
pub(crate) use client_config::{
    consumer_config, delivery_timeout, patient_producer_config, producer_config,
    producer_queue_bytes, PATIENT_DELIVERY_TIMEOUT,
};
pub use client_errors::ClientFailure;
pub(crate) use error::PublishError;

use crate::codes::{FailureClass, FailureReason};
use crate::configuration::KafkaSettings;
use crate::internal_events::{EventProduced, ProduceFailed, TopicCreated, TopicOverflowed};
use crate::metrics::Metrics;
use client_errors::ClientHealth;
use health::WriteHealth;
use parking_lot::{Mutex, RwLock};
use producer::{ProducerHandle, ProducerSlot};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;
use stats::StatsContext;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Kafka headers set on every message.
pub(crate) const HEADER_PROVIDER: &str = "hookstream-provider";
pub(crate) const HEADER_EVENT_NAME: &str = "hookstream-event-name";
pub(crate) const HEADER_EVENT_ID: &str = "hookstream-event-id";

/// One message to write.
#[derive(Clone, Copy)]
pub(crate) struct OutboundMessage<'a> {
    pub topic: &'a str,
    pub key: Option<&'a str>,
    pub value: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Metric labels: the provider, and the event name of an event record (`None` for dead
    /// letters and the readiness canary, which are not counted as produced events).
    pub provider: &'static str,
    pub event_name: Option<&'a str>,
}

/// The headers of an event record.
pub(crate) fn event_headers<'a>(
    provider: &'a str,
    event_name: &'a str,
    event_id: &'a str,
) -> [(&'static str, &'a [u8]); 3] {
    [
        (HEADER_PROVIDER, provider.as_bytes()),
        (HEADER_EVENT_NAME, event_name.as_bytes()),
        (HEADER_EVENT_ID, event_id.as_bytes()),
    ]
}

/// What [`KafkaSink::publish_or_wait`] came to by its `until`.
pub(crate) enum Published {
    Acked(Acknowledged),
    /// Not acknowledged yet: the write goes on, and this resolves how it ended.
    Waiting(
        std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Acknowledged, PublishError>> + Send>,
        >,
    ),
}

/// Where the broker put an acknowledged message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Acknowledged {
    pub partition: i32,
    pub offset: i64,
    /// From enqueueing to the acknowledgement.
    pub elapsed: Duration,
}

/// The librdkafka record for `msg`.
fn record<'a>(msg: &'a OutboundMessage<'a>) -> FutureRecord<'a, str, [u8]> {
    let headers = msg.headers.iter().fold(
        OwnedHeaders::new_with_capacity(msg.headers.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(*value),
            })
        },
    );
    let record = FutureRecord::to(msg.topic)
        .payload(msg.value)
        .headers(headers);
    match msg.key {
        Some(key) => record.key(key),
        None => record,
    }
}

/// The last segment of a provider's overflow topic: upper case, which no event name has
/// ([`crate::naming::snake_case`] lowercases), so it can never be an event's own topic — nor
/// collide with one in Kafka's eyes (`.` and `_` alike).
pub(crate) const OVERFLOW_EVENT: &str = "OVERFLOW";

/// `{topic_prefix}.{provider}.OVERFLOW`: where a provider's events go once it has
/// `kafka.max_topics_per_provider` topics.
fn overflow_topic(event_topic_prefix: &str, provider: &str) -> String {
    format!("{event_topic_prefix}{provider}.{OVERFLOW_EVENT}")
}

/// How often a provider at its topic cap has the cluster's topics counted again (an operator
/// may have deleted some).
const RELIST_AT_CAP: Duration = Duration::from_secs(60);

/// The event topics of one provider that exist or are being created.
#[derive(Default)]
struct ProviderTopics {
    /// The cluster's at the last listing, and those reserved since: at most
    /// `max_topics_per_provider` beyond what the cluster already had.
    exist: HashSet<String>,
    /// `None` until the cluster's topics were first listed.
    listed_at: Option<Instant>,
}

/// The producer, the admin client and the set of topics known to exist.
pub struct KafkaSink {
    producers: ProducerSlot,
    /// With the spool: the producer of writes that may outlive their request (first attempts
    /// answered 202, and the forwarder's), with a message timeout of minutes and never purged
    /// at a request's deadline, so that librdkafka's idempotent retries decide their outcome.
    patient: Option<ProducerSlot>,
    /// Replaced with the producers when the certificate files change.
    admin: RwLock<Arc<AdminClient<StatsContext>>>,
    /// Kept to build the admin client again (certificate rotation).
    admin_config: rdkafka::ClientConfig,
    /// Topics created or found to exist; checked before every write so each topic is created
    /// once per process.
    known_topics: RwLock<HashSet<String>>,
    /// One lock per topic being created: concurrent first writes to a topic (or every write
    /// after a failure forgot it, during an outage) send one CreateTopics request, not one each.
    creating: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ack_timeout: Duration,
    /// librdkafka's `message.timeout.ms`: a message is enqueued only with at least this much of
    /// its request's deadline left.
    delivery_timeout: Duration,
    partitions: i32,
    replication_factor: i32,
    /// Where readiness writes its canary record while writes are failing.
    canary_topic: String,
    /// `{topic_prefix}.`: event topics are `{topic_prefix}.{provider}.{event_name}`.
    event_topic_prefix: String,
    /// `kafka.max_topics_per_provider`: event names become topics, and a provider with
    /// free-form names (or a hostile sender of one) must not create them without limit.
    max_topics_per_provider: usize,
    /// Per provider, the event topics that exist or are being created (at most
    /// `max_topics_per_provider` each), and when the cluster's were last listed.
    provider_topics: Mutex<HashMap<&'static str, ProviderTopics>>,
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
    pub(crate) fn new(settings: &KafkaSettings, metrics: Arc<Metrics>) -> Result<Self, KafkaError> {
        Self::with_patient(settings, metrics, false)
    }

    /// `patient`: also a producer for writes that may outlive their request (the spool's).
    pub(crate) fn with_patient(
        settings: &KafkaSettings,
        metrics: Arc<Metrics>,
        patient: bool,
    ) -> Result<Self, KafkaError> {
        let config = producer_config(settings);
        let client = Arc::new(ClientHealth::new(Some(metrics.clone())));
        let admin = Arc::new(config.create_with_context(StatsContext::admin(client.clone()))?);
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
            producers: ProducerSlot::new(config.clone(), metrics.clone(), client.clone())?,
            patient,
            admin: RwLock::new(admin),
            admin_config: config,
            known_topics: RwLock::new(HashSet::new()),
            creating: Mutex::new(HashMap::new()),
            ack_timeout: settings.ack_timeout,
            delivery_timeout: delivery_timeout(settings.ack_timeout),
            partitions: settings.topic_partitions,
            replication_factor: settings.topic_replication_factor,
            canary_topic: format!("{}.canary", settings.topic_prefix),
            event_topic_prefix: format!("{}.", settings.topic_prefix),
            max_topics_per_provider: settings.max_topics_per_provider,
            provider_topics: Mutex::new(HashMap::new()),
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
        let result = self.write(&msg, deadline).await;
        match (&result, msg.event_name) {
            (Ok(ack), Some(event_name)) => EventProduced {
                provider: msg.provider,
                event_name,
                elapsed: ack.elapsed,
            }
            .emit(&self.metrics),
            (Ok(_), None) => {}
            (Err(error), _) => ProduceFailed {
                provider: msg.provider,
                reason: error.reason,
                detail: error,
            }
            .emit(&self.metrics),
        }
        result
    }

    /// The topic an event of `provider` goes to: `topic` (its own), unless that does not exist
    /// yet and the provider already has `kafka.max_topics_per_provider` topics in the cluster —
    /// then the provider's overflow topic ([`overflow_topic`]). The record keeps its real event
    /// name either way.
    pub(crate) async fn event_topic(
        &self,
        provider: &'static str,
        topic: String,
        deadline: Instant,
    ) -> String {
        // Known or not writable now anyway (the write is refused at once, naming why): the
        // cluster's topics are not listed.
        if self.is_known(&topic) || self.client.blocking().is_some() {
            return topic;
        }
        if let Some(decided) = self.reserve(provider, &topic) {
            return if decided {
                topic
            } else {
                self.overflow(provider, &topic)
            };
        }
        // First unknown topic of this provider in this process, or at the cap for a while:
        // count what the cluster has, so replicas and restarts share one cap.
        let listed = self.list_provider_topics(provider, deadline).await;
        let mut all = self.provider_topics.lock();
        let entry = all.entry(provider).or_default();
        if let Some(listed) = listed {
            // The cluster is the truth: topics deleted since are free again.
            entry.exist = listed.into_iter().collect();
        }
        entry.listed_at = Some(Instant::now());
        if entry.exist.contains(&topic) {
            return topic;
        }
        if entry.exist.len() < self.max_topics_per_provider {
            entry.exist.insert(topic.clone());
            return topic;
        }
        drop(all);
        self.overflow(provider, &topic)
    }

    /// `Some(true)`: `topic` may be written (known, or reserved under the cap); `Some(false)`:
    /// the provider is at its cap; `None`: the cluster should be listed first.
    fn reserve(&self, provider: &'static str, topic: &str) -> Option<bool> {
        let mut all = self.provider_topics.lock();
        let entry = all.get_mut(provider)?;
        if entry.exist.contains(topic) {
            return Some(true);
        }
        if entry.exist.len() < self.max_topics_per_provider {
            entry.exist.insert(topic.to_string());
            return Some(true);
        }
        match entry.listed_at {
            Some(at) if at.elapsed() < RELIST_AT_CAP => Some(false),
            _ => None,
        }
    }

    fn overflow(&self, provider: &'static str, topic: &str) -> String {
        let overflow = overflow_topic(&self.event_topic_prefix, provider);
        TopicOverflowed {
            provider,
            topic,
            overflow: &overflow,
            max: self.max_topics_per_provider,
        }
        .emit(&self.metrics);
        overflow
    }

    /// The event topics of `provider` the cluster has (`None`: no answer by `deadline`).
    async fn list_provider_topics(
        &self,
        provider: &'static str,
        deadline: Instant,
    ) -> Option<Vec<String>> {
        let producer = self.producers.current();
        let timeout = deadline.saturating_duration_since(Instant::now());
        let names = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .map(|m| {
                    m.topics()
                        .iter()
                        .map(|t| t.name().to_string())
                        .collect::<Vec<_>>()
                })
        })
        .await
        .ok()?
        .ok()?;
        let own = format!("{}{provider}.", self.event_topic_prefix);
        Some(
            names
                .into_iter()
                .filter(|name| {
                    name.strip_prefix(&own)
                        .is_some_and(|event| !event.contains('.') && event != OVERFLOW_EVENT)
                })
                .collect(),
        )
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
        let result = self.write_or_wait(&msg, until, deadline).await;
        match &result {
            Ok(Published::Acked(ack)) => {
                self.outcome(msg.provider, msg.topic, msg.event_name, &Ok(*ack))
            }
            // Not acknowledged in time: writes are failing until one is acknowledged again, so
            // the next webhooks are spooled at once rather than each waiting.
            Ok(Published::Waiting(_)) => self.health.failed(),
            Err(e) => self.outcome(msg.provider, msg.topic, msg.event_name, &Err(e.clone())),
        }
        result
    }

    /// Counts and records for readiness how a write ended.
    fn outcome(
        &self,
        provider: &'static str,
        topic: &str,
        event_name: Option<&str>,
        result: &Result<Acknowledged, PublishError>,
    ) {
        match result {
            Ok(ack) => {
                self.health.succeeded();
                self.client.topic_written(topic);
                if let Some(event_name) = event_name {
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
                ProduceFailed {
                    provider,
                    reason: error.reason,
                    detail: error,
                }
                .emit(&self.metrics);
            }
        }
    }

    async fn write_or_wait(
        self: &Arc<Self>,
        msg: &OutboundMessage<'_>,
        until: Instant,
        deadline: Instant,
    ) -> Result<Published, PublishError> {
        self.refuse_if_blocked()?;
        self.ensure_topic_by(msg, until.min(deadline)).await?;
        let slot = self.patient_slot();
        let producer = slot.current();
        let started = Instant::now();
        let mut delivery = producer
            .send_result(record(msg))
            .map_err(|(err, _)| self.failed(slot, &producer, "enqueue", &err, msg.topic))?;
        match tokio::time::timeout_at(until, &mut delivery).await {
            Ok(reported) => self
                .settle(slot, &producer, msg.topic, started, reported)
                .map(Published::Acked),
            Err(_) => {
                let topic = msg.topic.to_string();
                let provider = msg.provider;
                // Owned: the future outlives the request (event names are free-form, never
                // interned).
                let event_name = msg.event_name.map(str::to_string);
                let sink = Arc::clone(self);
                Ok(Published::Waiting(Box::pin(async move {
                    // librdkafka reports by its (patient) message timeout.
                    let patience = PATIENT_DELIVERY_TIMEOUT + Duration::from_secs(30);
                    let slot = sink.patient_slot();
                    let result = match tokio::time::timeout(patience, delivery).await {
                        Ok(reported) => sink.settle(slot, &producer, &topic, started, reported),
                        Err(_) => Err(PublishError::timed_out()),
                    };
                    sink.outcome(provider, &topic, event_name.as_deref(), &result);
                    result
                })))
            }
        }
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

    /// Writes a spooled record with the patient producer: waits as long as librdkafka retries
    /// (its message timeout), never purging it — the forwarder's write.
    pub(crate) async fn publish_patient(
        &self,
        msg: OutboundMessage<'_>,
        create_by: Instant,
    ) -> Result<Acknowledged, PublishError> {
        let result = async {
            self.refuse_if_blocked()?;
            self.ensure_topic_by(&msg, create_by).await?;
            let slot = self.patient_slot();
            let producer = slot.current();
            let started = Instant::now();
            let delivery = producer
                .send_result(record(&msg))
                .map_err(|(err, _)| self.failed(slot, &producer, "enqueue", &err, msg.topic))?;
            let patience = PATIENT_DELIVERY_TIMEOUT + Duration::from_secs(30);
            match tokio::time::timeout(patience, delivery).await {
                Ok(reported) => self.settle(slot, &producer, msg.topic, started, reported),
                Err(_) => Err(PublishError::timed_out()),
            }
        }
        .await;
        self.outcome(msg.provider, msg.topic, msg.event_name, &result);
        result
    }

    /// The topic exists, created by `create_by`.
    async fn ensure_topic_by(
        &self,
        msg: &OutboundMessage<'_>,
        create_by: Instant,
    ) -> Result<(), PublishError> {
        tokio::time::timeout_at(create_by, self.ensure_topic(msg.topic, msg.provider))
            .await
            .map_err(|_| {
                PublishError::new(
                    FailureReason::Deadline,
                    "the topic could not be created within the write's deadline; nothing was written",
                )
            })?
    }

    /// What librdkafka's report of a write means.
    fn settle(
        &self,
        slot: &ProducerSlot,
        producer: &Arc<ProducerHandle>,
        topic: &str,
        started: Instant,
        reported: Result<
            rdkafka::producer::future_producer::OwnedDeliveryResult,
            futures_channel::oneshot::Canceled,
        >,
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

    /// Writes a small record to `{topic_prefix}.canary`, bounded by `ack_timeout`: readiness
    /// uses it to learn whether writes succeed again while no request is writing.
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
        self.write(&msg, Instant::now() + self.ack_timeout)
            .await
            .map(|_| ())
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
                    crate::codes::ClientErrorKind::Tls => FailureReason::Tls,
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

    /// Topic check, enqueue, acknowledgement; records the outcome for readiness.
    async fn write(
        &self,
        msg: &OutboundMessage<'_>,
        deadline: Instant,
    ) -> Result<Acknowledged, PublishError> {
        let result = match self.refuse_if_blocked() {
            Ok(()) => self.write_within(msg, deadline).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => {
                self.health.succeeded();
                self.client.topic_written(msg.topic);
            }
            Err(e) if e.class() == FailureClass::Retriable => self.health.failed(),
            Err(_) => {}
        }
        result
    }

    async fn write_within(
        &self,
        msg: &OutboundMessage<'_>,
        deadline: Instant,
    ) -> Result<Acknowledged, PublishError> {
        self.ready_to_enqueue(msg, deadline).await?;
        let producer = self.producers.current();
        let started = Instant::now();
        // Never waits: a full queue is an immediate 503.
        let delivery = producer.send_result(record(msg)).map_err(|(err, _)| {
            self.failed(&self.producers, &producer, "enqueue", &err, msg.topic)
        })?;
        match tokio::time::timeout_at(deadline, delivery).await {
            Ok(Ok(Ok(delivery))) => Ok(Acknowledged {
                partition: delivery.partition,
                offset: delivery.offset,
                elapsed: started.elapsed(),
            }),
            Ok(Ok(Err((err, _)))) => {
                Err(self.failed(&self.producers, &producer, "produce", &err, msg.topic))
            }
            Ok(Err(_canceled)) => Err(PublishError::new(
                FailureReason::BrokerUnavailable,
                "the producer was shut down before it reported the write",
            )),
            Err(_) => {
                // librdkafka should have reported by now; make sure the message is not written
                // behind the 503 by purging the instance that holds it.
                self.forget_topic(msg.topic);
                self.producers.replace(
                    &producer,
                    "no delivery report before the request's deadline",
                );
                Err(PublishError::timed_out())
            }
        }
    }

    /// The topic exists, and enough of the deadline is left for librdkafka's own timeout.
    async fn ready_to_enqueue(
        &self,
        msg: &OutboundMessage<'_>,
        deadline: Instant,
    ) -> Result<(), PublishError> {
        self.ensure_topic_by(msg, deadline).await?;
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
                Some(RDKafkaErrorCode::TopicAuthorizationFailed) => self.client.topic_denied(
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
            self.forget_topic(topic);
        }
        if error::replaces_producer(error.reason) {
            slot.replace(producer, &error.detail);
        }
        error
    }

    /// Creates `topic` unless this process already knows it exists; one attempt at a time.
    async fn ensure_topic(&self, topic: &str, provider: &'static str) -> Result<(), PublishError> {
        if self.is_known(topic) {
            return Ok(());
        }
        let lock = self
            .creating
            .lock()
            .entry(topic.to_string())
            .or_default()
            .clone();
        let created = {
            let _creating = lock.lock().await;
            if self.is_known(topic) {
                Ok(())
            } else {
                self.create_topic(topic, provider).await
            }
        };
        // The lock is only needed while a creation is under way: the map holds no more entries
        // than there are creations at once.
        self.creating.lock().remove(topic);
        created?;
        self.known_topics.write().insert(topic.to_string());
        Ok(())
    }

    async fn create_topic(&self, topic: &str, provider: &'static str) -> Result<(), PublishError> {
        let new_topic = NewTopic::new(
            topic,
            self.partitions,
            TopicReplication::Fixed(self.replication_factor),
        );
        let options = AdminOptions::new()
            .request_timeout(Some(self.ack_timeout))
            .operation_timeout(Some(self.ack_timeout));
        let admin = self.admin.read().clone();
        let err = match admin.create_topics([&new_topic], &options).await {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => {
                    TopicCreated { provider, topic }.emit(&self.metrics);
                    return Ok(());
                }
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => return Ok(()),
                Some(Err((_, code))) => KafkaError::AdminOp(code),
            },
            Err(e) => e,
        };
        // A cluster that forbids topic creation denies it for a topic that exists too (Kafka
        // checks CREATE before existence): one an administrator created is written to.
        if error::is_denial(&err) && self.topic_exists(topic).await {
            return Ok(());
        }
        let error = error::create_topic_failed(topic, &err);
        if error::is_denial(&err) {
            self.client.topic_denied(topic, &error.detail);
        }
        Err(error)
    }

    /// Whether the cluster's metadata lists `topic` (`false` without an answer in
    /// `kafka.ack_timeout`).
    async fn topic_exists(&self, topic: &str) -> bool {
        let producer = self.producers.current();
        let timeout = self.ack_timeout;
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Timeout::After(timeout))
                .is_ok_and(|m| m.topics().iter().any(|t| t.name() == topic))
        })
        .await
        .unwrap_or(false)
    }

    fn forget_topic(&self, topic: &str) {
        self.known_topics.write().remove(topic);
    }

    fn is_known(&self, topic: &str) -> bool {
        self.known_topics.read().contains(topic)
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
        let admin = self
            .admin_config
            .create_with_context(StatsContext::admin(self.client.clone()))
            .map_err(|e| e.to_string())?;
        let fresh = self.producers.build().map_err(|e| e.to_string())?;
        let patient = match &self.patient {
            Some(slot) => Some(slot.build().map_err(|e| e.to_string())?),
            None => None,
        };
        *self.admin.write() = Arc::new(admin);
        self.producers.rotate_to(fresh, self.ack_timeout);
        if let (Some(slot), Some(fresh)) = (&self.patient, patient) {
            slot.rotate_to(fresh, PATIENT_DELIVERY_TIMEOUT + Duration::from_secs(30));
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

/// How `hookstream topics create` left a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopicCreation {
    Created,
    Exists,
}

/// Creates `topics` with `kafka.topic_partitions` and `kafka.topic_replication_factor`, in one
/// CreateTopics request with the configured credentials; the outcome of each, in order (`Err`
/// names the cause). `Err` alone: no answer from the cluster at all.
pub(crate) async fn create_topics(
    settings: &KafkaSettings,
    topics: &[String],
) -> Result<Vec<(String, Result<TopicCreation, String>)>, String> {
    let client = Arc::new(ClientHealth::new(None));
    let admin: AdminClient<StatsContext> = producer_config(settings)
        .create_with_context(StatsContext::admin(client))
        .map_err(|e| format!("cannot create the Kafka admin client: {e}"))?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            NewTopic::new(
                topic,
                settings.topic_partitions,
                TopicReplication::Fixed(settings.topic_replication_factor),
            )
        })
        .collect();
    // Bounded as the service's own creations are: a topic still being created then is
    // reported with the timeout, and found to exist by the next run.
    let options = AdminOptions::new()
        .request_timeout(Some(settings.ack_timeout))
        .operation_timeout(Some(settings.ack_timeout));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| {
            format!(
                "cannot create topics on {}: {e}",
                crate::configuration::without_userinfo(&settings.brokers)
            )
        })?;
    let mut outcomes: HashMap<String, Result<TopicCreation, String>> = results
        .into_iter()
        .map(|result| match result {
            Ok(topic) => (topic, Ok(TopicCreation::Created)),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => (topic, Ok(TopicCreation::Exists)),
            Err((topic, code)) => {
                let err = KafkaError::AdminOp(code);
                let cause = if error::is_denial(&err) {
                    format!("not authorized ({code:?}): these credentials need CREATE on the topic or the cluster")
                } else {
                    err.to_string()
                };
                (topic, Err(cause))
            }
        })
        .collect();
    Ok(topics
        .iter()
        .map(|topic| {
            let outcome = outcomes
                .remove(topic)
                .unwrap_or_else(|| Err("the cluster did not answer for this topic".to_string()));
            (topic.clone(), outcome)
        })
        .collect())
}

/// librdkafka's `message.max.bytes` for these settings (its default unless `kafka.options`
/// sets it).
fn max_message_bytes(settings: &KafkaSettings) -> usize {
    settings
        .options
        .iter()
        .find(|(key, _)| key.as_str() == "message.max.bytes")
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(1_000_000)
}

/// The size librdkafka checks against `message.max.bytes` at enqueue: key, value and
/// serialized headers, plus the largest record overhead of the v2 message format (length,
/// attributes, timestamp and offset deltas, key and value lengths, header count: 36 bytes).
fn wire_size(msg: &OutboundMessage<'_>) -> usize {
    const MAX_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    let varint = |n: usize| {
        // Zigzag, then base 128.
        let mut v = (n as u64) << 1;
        let mut len = 1;
        while v >= 0x80 {
            v >>= 7;
            len += 1;
        }
        len
    };
    let headers: usize = msg
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + varint(name.len()) + varint(value.len()))
        .sum();
    MAX_OVERHEAD + msg.key.map_or(0, str::len) + msg.value.len() + headers
}

impl certificates::Rotate for KafkaSink {
    fn rotate_clients(&self) -> Result<(), String> {
        KafkaSink::rotate_clients(self)
    }
}
