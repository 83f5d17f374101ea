//! Writing records to Kafka.
//!
//! [`KafkaSink::publish`] makes sure the topic exists (creating it once through the Admin API),
//! produces the message, and resolves only when the broker acknowledged it (`acks=all`,
//! idempotent producer) or when `kafka.ack_timeout` ran out.
//!
//! Self-healing, so that a provider's retry can succeed after the cluster lost state:
//! - a failed write forgets its topic, so the retry re-checks that the topic exists (a deleted or
//!   wiped topic is created again);
//! - a write that timed out replaces the producer with a fresh instance. An idempotent producer
//!   whose producer id the cluster no longer knows (a broker restarted without its state) keeps
//!   bumping its epoch locally and never recovers; a new instance asks the cluster for a new id.
//!   Requests still using the old instance keep it alive until they have their answer.

mod client_config;
mod error;
mod stats;

pub use client_config::producer_config;
pub use error::{PublishError, FAILURE_REASONS};

use crate::configuration::KafkaSettings;
use crate::metrics::Metrics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use stats::StatsContext;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Kafka headers set on every message.
pub const HEADER_PROVIDER: &str = "hookstream-provider";
pub const HEADER_EVENT_NAME: &str = "hookstream-event-name";
pub const HEADER_EVENT_ID: &str = "hookstream-event-id";

/// One message to write.
pub struct OutboundMessage<'a> {
    pub topic: &'a str,
    pub key: Option<&'a str>,
    pub value: &'a [u8],
    pub provider: &'static str,
    pub event_name: &'a str,
    pub event_id: &'a str,
}

/// Where the broker put an acknowledged message.
#[derive(Debug, Clone, Copy)]
pub struct Acknowledged {
    pub partition: i32,
    pub offset: i64,
}

struct CurrentProducer {
    producer: Arc<FutureProducer<StatsContext>>,
    /// When it replaced its predecessor: at most one replacement per `ack_timeout`.
    replaced_at: Option<Instant>,
}

/// The producer, the admin client and the set of topics known to exist.
pub struct KafkaSink {
    /// The current producer; replaced after a timed-out write (see the module docs).
    producer: RwLock<CurrentProducer>,
    /// Kept to build replacement producers.
    config: ClientConfig,
    admin: AdminClient<StatsContext>,
    /// Topics created or found to exist; checked before every write so each topic is created
    /// once per process.
    known_topics: RwLock<HashSet<String>>,
    ack_timeout: Duration,
    partitions: i32,
    replication_factor: i32,
    metrics: Arc<Metrics>,
}

impl KafkaSink {
    pub fn new(
        settings: &KafkaSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, rdkafka::error::KafkaError> {
        let config = producer_config(settings);
        let producer = config.create_with_context(StatsContext::new(metrics.clone()))?;
        let admin = config.create_with_context(StatsContext::admin())?;
        Ok(Self {
            producer: RwLock::new(CurrentProducer {
                producer: Arc::new(producer),
                replaced_at: None,
            }),
            config,
            admin,
            known_topics: RwLock::new(HashSet::new()),
            ack_timeout: settings.ack_timeout,
            partitions: settings.topic_partitions,
            replication_factor: settings.topic_replication_factor,
            metrics,
        })
    }

    /// Writes one message and waits for the broker's acknowledgement, at most `ack_timeout`.
    pub async fn publish(&self, msg: OutboundMessage<'_>) -> Result<Acknowledged, PublishError> {
        // Backstop only: librdkafka's message.timeout.ms equals ack_timeout and normally fires first.
        let limit = self.ack_timeout + Duration::from_millis(500);
        match tokio::time::timeout(limit, self.publish_inner(&msg)).await {
            Ok(result) => result,
            Err(_) => Err(PublishError::timed_out()),
        }
        .inspect_err(|e| {
            self.metrics
                .produce_failures
                .with_label_values(&[msg.provider, e.reason()])
                .inc();
        })
    }

    async fn publish_inner(&self, msg: &OutboundMessage<'_>) -> Result<Acknowledged, PublishError> {
        self.ensure_topic(msg.topic, msg.provider).await?;
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: HEADER_PROVIDER,
                value: Some(msg.provider),
            })
            .insert(Header {
                key: HEADER_EVENT_NAME,
                value: Some(msg.event_name),
            })
            .insert(Header {
                key: HEADER_EVENT_ID,
                value: Some(msg.event_id),
            });
        let mut record = FutureRecord::<str, [u8]>::to(msg.topic)
            .payload(msg.value)
            .headers(headers);
        if let Some(key) = msg.key {
            record = record.key(key);
        }
        let started = Instant::now();
        let producer = self.current_producer();
        let delivery = match producer
            .send(record, Timeout::After(self.ack_timeout))
            .await
        {
            Ok(delivery) => delivery,
            Err((err, _)) => {
                let error = PublishError::classify("produce", &err);
                self.forget_topic(msg.topic);
                if error.is_timeout() {
                    self.replace_producer(&producer);
                }
                return Err(error);
            }
        };
        self.metrics
            .produce_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .messages_produced
            .with_label_values(&[msg.provider, self.metrics.event_name_label(msg.event_name)])
            .inc();
        Ok(Acknowledged {
            partition: delivery.partition,
            offset: delivery.offset,
        })
    }

    /// Creates `topic` unless this process already knows it exists.
    async fn ensure_topic(&self, topic: &str, provider: &'static str) -> Result<(), PublishError> {
        if self.is_known(topic) {
            return Ok(());
        }
        let new_topic = NewTopic::new(
            topic,
            self.partitions,
            TopicReplication::Fixed(self.replication_factor),
        );
        let options = AdminOptions::new()
            .request_timeout(Some(self.ack_timeout))
            .operation_timeout(Some(self.ack_timeout));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| PublishError::classify("create topic", &e))?;
        for result in results {
            match result {
                Ok(_) => {
                    self.metrics
                        .topics_created
                        .with_label_values(&[provider])
                        .inc();
                    tracing::info!(topic, "created topic");
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(PublishError::classify(
                        "create topic",
                        &rdkafka::error::KafkaError::AdminOp(code),
                    ))
                }
            }
        }
        self.known_topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(topic.to_string());
        Ok(())
    }

    fn current_producer(&self) -> Arc<FutureProducer<StatsContext>> {
        self.producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .producer
            .clone()
    }

    fn forget_topic(&self, topic: &str) {
        self.known_topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(topic);
    }

    /// Swaps in a fresh producer, unless another request already replaced `failed` or the last
    /// replacement is more recent than `ack_timeout`.
    fn replace_producer(&self, failed: &Arc<FutureProducer<StatsContext>>) {
        let mut current = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&current.producer, failed)
            || current
                .replaced_at
                .is_some_and(|at| at.elapsed() < self.ack_timeout)
        {
            return;
        }
        match self
            .config
            .create_with_context(StatsContext::new(self.metrics.clone()))
        {
            Ok(fresh) => {
                *current = CurrentProducer {
                    producer: Arc::new(fresh),
                    replaced_at: Some(Instant::now()),
                };
                self.metrics.producer_resets.inc();
                tracing::warn!("a write timed out: replaced the Kafka producer with a fresh one");
            }
            Err(e) => tracing::error!(error = %e, "could not create a replacement Kafka producer"),
        }
    }

    fn is_known(&self, topic: &str) -> bool {
        self.known_topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(topic)
    }

    /// Whether the cluster answers a metadata request within `timeout`. Blocking: call it from a
    /// blocking thread.
    pub fn probe(&self, timeout: Duration) -> bool {
        self.current_producer()
            .client()
            .fetch_metadata(None, Timeout::After(timeout))
            .is_ok()
    }

    /// Waits up to `timeout` for queued messages to be delivered. Blocking.
    pub fn flush(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
        self.current_producer().flush(Timeout::After(timeout))
    }
}
