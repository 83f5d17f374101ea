//! hookstream receives webhooks from session-analytics providers (LiveSession, LasoExperience,
//! Seismic), verifies their signatures, normalizes every payload into one Avro record
//! (`avro/webhook_event.avsc`) and produces it to Kafka, answering 2xx only once the broker has
//! acknowledged the write.
//!
//! # Layout
//!
//! - [`startup`]: builds the [`startup::Application`] (Kafka clients, listener, routes) and runs it.
//! - [`configuration`]: layered settings (`config/*.toml`, `HOOKSTREAM__*` env vars).
//! - [`routes`]: thin HTTP handlers; [`error`] is the only place errors become status codes.
//! - [`ingest`]: the pipeline — verify, parse, handshake, normalize, deduplicate, produce.
//! - [`signature`]: HMAC-SHA256 verification and the [`signature::VerifiedBody`] type.
//! - [`providers`]: one module per provider behind the [`providers::Provider`] trait, and the
//!   registry listing them.
//! - [`event`]: the unified record; [`avro`]: its Avro datum, value framing and the Schema
//!   Registry client.
//! - [`naming`]: snake_case event names and topic names.
//! - [`dedupe`]: the bounded cache of already-written event ids.
//! - [`readiness`]: the timer that checks the broker and Schema Registry for `/readyz`.
//! - [`kafka`]: producer, topic creation, produce error classification, librdkafka statistics.
//! - [`metrics`]: the Prometheus registry; [`telemetry`]: logging; [`cli`]: the command line;
//!   [`tail`]: print a topic's records as JSON.

pub mod avro;
pub mod cli;
pub mod configuration;
pub mod dead_letter;
pub mod dedupe;
pub mod error;
pub mod event;
pub mod ingest;
pub mod internal_events;
pub mod kafka;
pub mod limits;
pub mod load;
pub mod metrics;
pub mod naming;
pub mod providers;
pub mod readiness;
pub mod routes;
pub mod signature;
pub mod startup;
pub mod tail;
pub mod telemetry;

#[cfg(test)]
mod test_alloc;
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: test_alloc::Counting = test_alloc::Counting;
