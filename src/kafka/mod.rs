//! Writing records to Kafka.
//!
//! [`KafkaSink::publish`] makes sure the topic exists (creating it once through the Admin API),
//! produces the message, and resolves only when the broker acknowledged it (`acks=all`,
//! idempotent producer) or when `kafka.ack_timeout` ran out.

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

/// The producer, the admin client and the set of topics known to exist.
pub struct KafkaSink {
    producer: FutureProducer<StatsContext>,
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
            producer,
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
        let delivery = self
            .producer
            .send(record, Timeout::After(self.ack_timeout))
            .await
            .map_err(|(err, _)| PublishError::classify("produce", &err))?;
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

    fn is_known(&self, topic: &str) -> bool {
        self.known_topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(topic)
    }

    /// Whether the cluster answers a metadata request within `timeout`. Blocking: call it from a
    /// blocking thread.
    pub fn probe(&self, timeout: Duration) -> bool {
        self.producer
            .client()
            .fetch_metadata(None, Timeout::After(timeout))
            .is_ok()
    }

    /// Waits up to `timeout` for queued messages to be delivered. Blocking.
    pub fn flush(&self, timeout: Duration) -> Result<(), rdkafka::error::KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}
