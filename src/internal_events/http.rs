//! Webhook requests: answered, accepted, duplicates, handshakes, dead letters and rejections.

use super::InternalEvent;
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

impl InternalEvent for WebhookAnswered<'_> {
    fn emit(self, m: &Metrics) {
        m.http
            .requests
            .with_label_values(&[self.provider, self.status.as_str()])
            .inc();
        m.http
            .request_duration
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

impl InternalEvent for WebhookAccepted<'_> {
    fn emit(self, m: &Metrics) {
        tracing::debug!(target: super::TARGET,
            provider = self.provider,
            event_id = self.event_id,
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            "accepted"
        );
        m.webhooks
            .accepted
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// Already written within the dedupe window.
pub struct WebhookDuplicate<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
}

impl InternalEvent for WebhookDuplicate<'_> {
    fn emit(self, m: &Metrics) {
        tracing::debug!(target: super::TARGET,
            provider = self.provider,
            event_id = self.event_id,
            "duplicate"
        );
        m.webhooks
            .duplicates
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// A URL-verification handshake was answered.
pub struct HandshakeAnswered<'a> {
    pub provider: &'a str,
}

impl InternalEvent for HandshakeAnswered<'_> {
    fn emit(self, m: &Metrics) {
        tracing::info!(target: super::TARGET, provider = self.provider, "handshake answered");
        m.webhooks
            .handshakes
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// Kept in the dead-letter topic.
pub struct WebhookDeadLettered<'a> {
    pub provider: &'a str,
    pub event_id: Option<&'a str>,
    pub error: &'static str,
    pub detail: &'a str,
}

impl InternalEvent for WebhookDeadLettered<'_> {
    fn emit(self, m: &Metrics) {
        if let Some(suppressed) = Self::admit_line(m, self.error) {
            tracing::warn!(target: super::TARGET,
                provider = self.provider,
                event_id = self.event_id,
                error = self.error,
                detail = self.detail,
                suppressed,
                "dead-lettered"
            );
        }
        m.webhooks
            .dead_lettered
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
    /// Where the delivery is kept.
    pub rejections: &'a Rejections,
}

impl InternalEvent for WebhookRejected<'_> {
    fn emit(self, m: &Metrics) {
        let code = self.code.as_str();
        if let Some(suppressed) = Self::admit_line(m, code) {
            tracing::warn!(target: super::TARGET,
                provider = self.provider,
                event_id = self.event_id,
                error = code,
                detail = %self.detail,
                suppressed,
                "rejected"
            );
        }
        m.webhooks
            .rejected
            .with_label_values(&[self.provider, code])
            .inc();
        self.rejections
            .record(self.provider, self.code, self.delivery);
    }
}

/// A connection was opened (`opened`) or closed, on the public port.
pub struct ConnectionCounted {
    pub opened: bool,
}

impl InternalEvent for ConnectionCounted {
    fn emit(self, m: &Metrics) {
        if self.opened {
            m.http.open_connections.inc();
        } else {
            m.http.open_connections.dec();
        }
    }
}

/// A webhook request began (`started`) or ended its processing, holding one of the
/// `server.max_in_flight` permits.
pub struct RequestInFlight {
    pub started: bool,
}

impl InternalEvent for RequestInFlight {
    fn emit(self, m: &Metrics) {
        if self.started {
            m.http.requests_in_flight.inc();
        } else {
            m.http.requests_in_flight.dec();
        }
    }
}
