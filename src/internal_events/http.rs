//! Webhook requests: answered, accepted, duplicates, handshakes, dead letters and rejections.

use crate::codes::ErrorCode;
use crate::metrics::Metrics;
use crate::rejections::{Delivery, Rejections};
use actix_web::http::StatusCode;
use std::fmt::Display;
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
    pub event_id: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl WebhookAccepted<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::debug!(
            provider = self.provider,
            event_id = self.event_id,
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
    pub event_id: &'a str,
}

impl WebhookDuplicate<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::debug!(
            provider = self.provider,
            event_id = self.event_id,
            "duplicate"
        );
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
        tracing::info!(provider = self.provider, "handshake answered");
        m.handshakes.with_label_values(&[self.provider]).inc();
    }
}

/// Kept in the dead-letter topic.
pub struct WebhookDeadLettered<'a> {
    pub provider: &'a str,
    pub event_id: Option<&'a str>,
    pub error: &'static str,
    pub detail: &'a str,
}

impl WebhookDeadLettered<'_> {
    pub fn emit(self, m: &Metrics) {
        if let Some(suppressed) = m.dead_letter_log.admit(self.error) {
            tracing::warn!(
                provider = self.provider,
                event_id = self.event_id,
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

/// Answered with an error: logged, counted, and kept in the record of rejected deliveries
/// (names, lengths, a digest and counts of the request). The detail never contains secrets or
/// signatures.
pub struct WebhookRejected<'a> {
    /// A registered provider's name, or [`crate::rejections::UNKNOWN`].
    pub provider: &'static str,
    /// Known once the body was verified and parsed.
    pub event_id: Option<&'a str>,
    pub code: ErrorCode,
    pub detail: &'a dyn Display,
    pub delivery: Delivery<'a>,
}

impl WebhookRejected<'_> {
    pub fn emit(self, m: &Metrics, rejections: &Rejections) {
        let code = self.code.as_str();
        if let Some(suppressed) = m.rejection_log.admit(code) {
            tracing::warn!(
                provider = self.provider,
                event_id = self.event_id,
                error = code,
                detail = %self.detail,
                suppressed,
                "rejected"
            );
        }
        m.webhooks_rejected
            .with_label_values(&[self.provider, code])
            .inc();
        rejections.record(self.provider, self.code, self.delivery);
    }
}

/// A connection was opened (`opened`) or closed, on the public port.
pub struct ConnectionCounted {
    pub opened: bool,
}

impl ConnectionCounted {
    pub fn emit(self, m: &Metrics) {
        if self.opened {
            m.open_connections.inc();
        } else {
            m.open_connections.dec();
        }
    }
}

/// A webhook request began (`started`) or ended its processing, holding one of the
/// `server.max_in_flight` permits.
pub struct RequestInFlight {
    pub started: bool,
}

impl RequestInFlight {
    pub fn emit(self, m: &Metrics) {
        if self.started {
            m.requests_in_flight.inc();
        } else {
            m.requests_in_flight.dec();
        }
    }
}
