//! Everything hookstream counts is logged in the same place: one type per outcome, whose `emit`
//! writes the log line (if any) and updates the metrics together, so the two cannot disagree.
//! Lines that a flood of bad requests could multiply are rate-limited ([`crate::telemetry::LogBudget`]);
//! their counters still count every one.

use crate::error::ApiError;
use crate::kafka::PublishError;
use crate::metrics::Metrics;
use actix_web::http::StatusCode;
use std::time::Duration;

/// A webhook request was answered (any outcome).
pub struct WebhookAnswered<'a> {
    pub provider: &'a str,
    pub status: StatusCode,
    pub elapsed: Duration,
}

impl WebhookAnswered<'_> {
    pub fn emit(self, m: &Metrics) {
        m.http_requests
            .with_label_values(&[self.provider, self.status.as_str()])
            .inc();
        m.http_request_duration
            .with_label_values(&[self.provider])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// Written to Kafka and acknowledged.
pub struct WebhookAccepted<'a> {
    pub provider: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl WebhookAccepted<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::debug!(
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            "accepted"
        );
        m.webhooks_accepted
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// Already written within the dedupe window.
pub struct WebhookDuplicate<'a> {
    pub provider: &'a str,
}

impl WebhookDuplicate<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::debug!("duplicate");
        m.webhooks_duplicates
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// A URL-verification handshake was answered.
pub struct HandshakeAnswered<'a> {
    pub provider: &'a str,
}

impl HandshakeAnswered<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::info!("handshake answered");
        m.handshakes.with_label_values(&[self.provider]).inc();
    }
}

/// Kept in the dead-letter topic.
pub struct WebhookDeadLettered<'a> {
    pub provider: &'a str,
    pub error: &'static str,
    pub detail: &'a str,
}

impl WebhookDeadLettered<'_> {
    pub fn emit(self, m: &Metrics) {
        if let Some(suppressed) = m.dead_letter_log.admit(self.error) {
            tracing::warn!(
                error = self.error,
                detail = self.detail,
                suppressed,
                "dead-lettered"
            );
        }
        m.webhooks_dead_lettered
            .with_label_values(&[self.provider, self.error])
            .inc();
    }
}

/// Answered with an error. The detail never contains secrets or signatures.
pub struct WebhookRejected<'a> {
    pub provider: &'a str,
    pub error: &'a ApiError,
}

impl WebhookRejected<'_> {
    pub fn emit(self, m: &Metrics) {
        let code = self.error.code().as_str();
        if let Some(suppressed) = m.rejection_log.admit(code) {
            tracing::warn!(error = code, detail = %self.error, suppressed, "rejected");
        }
        m.webhooks_rejected
            .with_label_values(&[self.provider, code])
            .inc();
    }
}

/// The broker acknowledged an event record.
pub struct EventProduced<'a> {
    pub provider: &'a str,
    pub event_name: &'a str,
    pub elapsed: Duration,
}

impl EventProduced<'_> {
    pub fn emit(self, m: &Metrics) {
        m.messages_produced
            .with_label_values(&[self.provider, m.event_name_label(self.event_name)])
            .inc();
        m.produce_duration.observe(self.elapsed.as_secs_f64());
    }
}

/// A write was not acknowledged (the request's own answer says more, and is counted there).
pub struct ProduceFailed<'a> {
    pub provider: &'a str,
    pub error: &'a PublishError,
}

impl ProduceFailed<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::debug!(reason = self.error.reason.label(), detail = %self.error, "write failed");
        m.produce_failures
            .with_label_values(&[self.provider, self.error.reason.label()])
            .inc();
    }
}

/// A topic was created through the Admin API.
pub struct TopicCreated<'a> {
    pub provider: &'a str,
    pub topic: &'a str,
}

impl TopicCreated<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::info!(topic = self.topic, "created topic");
        m.topics_created.with_label_values(&[self.provider]).inc();
    }
}

/// The producer was replaced with a fresh instance.
pub struct ProducerReplaced<'a> {
    pub why: &'a str,
}

impl ProducerReplaced<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::warn!(
            reason = self.why,
            "replaced the Kafka producer with a fresh instance"
        );
        m.producer_resets.inc();
    }
}

/// A readiness check of one dependency answered (or not).
pub struct DependencyChecked {
    pub dependency: &'static str,
    pub up: bool,
}

impl DependencyChecked {
    pub fn emit(self, m: &Metrics) {
        m.ready
            .with_label_values(&[self.dependency])
            .set(i64::from(self.up));
    }
}
