//! Kafka: records produced or not, what librdkafka reports about the connection, topics
//! created or overflowed, producers replaced.

use super::InternalEvent;
use crate::codes::{ClientErrorKind, FailureReason};
use crate::metrics::Metrics;
use crate::telemetry::LogLimit;
use std::fmt::Display;
use std::time::Duration;

/// The broker acknowledged an event record.
pub struct EventProduced<'a> {
    pub provider: &'a str,
    pub event_name: &'a str,
    pub elapsed: Duration,
}

impl InternalEvent for EventProduced<'_> {
    fn emit(self, m: &Metrics) {
        m.kafka
            .messages_produced
            .with_label_values(&[self.provider, m.event_name_label(self.event_name)])
            .inc();
        m.kafka.produce_duration.observe(self.elapsed.as_secs_f64());
    }
}

/// A write was not acknowledged (the request's own answer says more, and is counted there).
pub struct ProduceFailed<'a> {
    pub provider: &'a str,
    pub reason: FailureReason,
    pub detail: &'a dyn Display,
}

impl InternalEvent for ProduceFailed<'_> {
    fn emit(self, m: &Metrics) {
        let reason = self.reason.label();
        tracing::debug!(target: super::TARGET, reason, detail = %self.detail, "write failed");
        m.kafka
            .produce_failures
            .with_label_values(&[self.provider, reason])
            .inc();
    }
}

/// librdkafka reported a failure between hookstream and the cluster (or a topic could not be
/// created for want of a permission). Counted by kind; logged at most once per kind each 10 s
/// (librdkafka reports every failed reconnection). Without metrics (a one-off command, which
/// prints its own outcome), only logged at debug.
pub struct KafkaClientError<'a> {
    pub kind: ClientErrorKind,
    /// Names the kind and librdkafka's words: the broker, the mechanism, never a credential.
    pub detail: &'a dyn Display,
    /// False for a consequence of a failure already logged (counted all the same).
    pub log: bool,
}

impl KafkaClientError<'_> {
    /// Emitted with `metrics`; where none are kept (a one-off command, which prints its own
    /// outcome), only logged at debug.
    pub fn emit_to(self, metrics: Option<&Metrics>) {
        match metrics {
            Some(m) => self.emit(m),
            None => {
                tracing::debug!(target: super::TARGET, kind = self.kind.label(), "{}", self.detail)
            }
        }
    }
}

impl InternalEvent for KafkaClientError<'_> {
    /// librdkafka reports every failed reconnection, as often as every 100 ms.
    const LOG_LIMIT: LogLimit = LogLimit::once_every(10);

    fn emit(self, m: &Metrics) {
        let kind = self.kind.label();
        m.kafka.client_errors.with_label_values(&[kind]).inc();
        if !self.log {
            return;
        }
        if let Some(suppressed) = Self::admit_line(m, kind) {
            if self.kind == ClientErrorKind::Transport {
                tracing::warn!(target: super::TARGET, kind, suppressed, "{}", self.detail);
            } else {
                tracing::error!(target: super::TARGET, kind, suppressed, "{}", self.detail);
            }
        }
    }
}

/// A topic was created through the Admin API.
pub struct TopicCreated<'a> {
    pub provider: &'a str,
    pub topic: &'a str,
}

impl InternalEvent for TopicCreated<'_> {
    fn emit(self, m: &Metrics) {
        tracing::info!(target: super::TARGET, topic = self.topic, "created topic");
        m.kafka
            .topics_created
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// An event went to its provider's overflow topic: the provider has
/// `kafka.max_topics_per_provider` topics already. Logged at most once a minute.
pub struct TopicOverflowed<'a> {
    pub provider: &'a str,
    pub topic: &'a str,
    pub overflow: &'a str,
    pub max: usize,
}

impl InternalEvent for TopicOverflowed<'_> {
    /// A sender of free-form event names can send thousands.
    const LOG_LIMIT: LogLimit = LogLimit::PER_MINUTE;

    fn emit(self, m: &Metrics) {
        if let Some(suppressed) = Self::admit_line(m, "topic_overflow") {
            tracing::warn!(target: super::TARGET,
                provider = self.provider,
                topic = self.topic,
                overflow = self.overflow,
                suppressed,
                "provider has kafka.max_topics_per_provider ({}) topics: event written to {} instead of a new topic (raise the cap to give such events topics of their own)",
                self.max,
                self.overflow
            );
        }
        m.kafka
            .topic_overflows
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// The producer was replaced with a fresh instance.
pub struct ProducerReplaced<'a> {
    pub why: &'a str,
}

impl InternalEvent for ProducerReplaced<'_> {
    fn emit(self, m: &Metrics) {
        tracing::warn!(target: super::TARGET,
            reason = self.why,
            "replaced the Kafka producer with a fresh instance"
        );
        m.kafka.producer_resets.inc();
    }
}

/// One broker as librdkafka's statistics describe it.
pub struct BrokerStatistics<'a> {
    pub name: &'a str,
    pub up: bool,
    /// librdkafka's running total of transmit errors to it.
    pub tx_errors: u64,
    /// The average round-trip time over the last statistics interval, when measured.
    pub rtt: Option<Duration>,
}

/// librdkafka's statistics (every `statistics.interval.ms`): the producer queue and each broker.
pub struct KafkaStatisticsReceived<'a> {
    pub queue_messages: u64,
    pub queue_bytes: u64,
    pub brokers: Vec<BrokerStatistics<'a>>,
}

impl InternalEvent for KafkaStatisticsReceived<'_> {
    fn emit(self, m: &Metrics) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        m.kafka.queue_messages.set(clamp(self.queue_messages));
        m.kafka.queue_bytes.set(clamp(self.queue_bytes));
        for broker in self.brokers {
            m.kafka
                .broker_up
                .with_label_values(&[broker.name])
                .set(i64::from(broker.up));
            // librdkafka reports a running total; the counter follows it.
            let tx_errors = m.kafka.broker_tx_errors.with_label_values(&[broker.name]);
            let seen = tx_errors.get();
            if broker.tx_errors > seen {
                tx_errors.inc_by(broker.tx_errors - seen);
            }
            if let Some(rtt) = broker.rtt {
                m.kafka
                    .broker_rtt
                    .with_label_values(&[broker.name])
                    .set(rtt.as_secs_f64());
            }
        }
    }
}
