//! Writing records to Kafka.
//!
//! The rooms: [`message`] (one message, its record and size), [`topics`] (which topic, and
//! creating it), [`sink`] (the one write core and what it learns), [`producer`] (the producer
//! instance and its replacement), [`client_errors`] (what librdkafka says is wrong with the
//! connection), [`certificates`] (rotation of the client's certificate files), [`error`]
//! (classifying failures), [`client_config`] (librdkafka properties).
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
mod message;
mod producer;
mod sink;
mod stats;
mod topics;

pub(crate) use certificates::run_rotation_until_stopped as run_certificate_rotation_until_stopped;
pub use certificates::CertificateFiles;
pub use client_config::check_producer_config;
pub(crate) use client_config::{
    consumer_config, delivery_timeout, patient_producer_config, producer_config,
    producer_queue_bytes, PATIENT_DELIVERY_TIMEOUT,
};
pub use client_errors::ClientFailure;
pub(crate) use error::PublishError;
pub(crate) use message::{event_headers, OutboundMessage, HEADER_EVENT_ID, HEADER_PROVIDER};
pub use sink::KafkaSink;
pub(crate) use topics::{create_topics, TopicCreation};

use std::time::Duration;

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
