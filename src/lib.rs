//! hookstream receives webhooks from session-analytics providers (LiveSession, LasoExperience,
//! Seismic), verifies their signatures, normalizes every payload into one Avro record
//! (`avro/webhook_event.avsc`) and produces it to Kafka, answering 2xx only once the broker has
//! acknowledged the write.
//!
//! # Layout
//!
//! The request path, in order:
//! - [`startup`]: builds the [`startup::Application`] (Kafka clients, listener, routes, limits)
//!   and runs it; [`configuration`]: layered, strict settings.
//! - `routes`: thin HTTP handlers — bounded body reading, then the pipeline; `limits`: open
//!   connections, bodies being received and requests in flight; `error`: the one place errors
//!   become status codes.
//! - `ingest`: the pipeline — verify, parse, handshake, normalize, deduplicate, produce — with
//!   the write in a task of its own; `dead_letter`: deliveries that cannot be normalized, kept in
//!   Kafka, and their `list` and `replay` commands.
//! - [`signature`]: HMAC-SHA256 verification and the [`signature::VerifiedBody`] type.
//! - [`providers`]: one module per provider behind the [`providers::Provider`] trait (each
//!   extracts what is its own), [`providers::normalize`] finishing every record the same way, and
//!   the registry listing them; [`naming`]: event and topic names.
//! - [`event`]: the unified record; [`avro`]: its encoding, value framing and the Schema Registry
//!   client.
//! - `dedupe`: the bounded cache of already-written event ids.
//! - [`kafka`]: the producer and its replacement, topic creation, one deadline per write, produce
//!   error classification, write health, librdkafka statistics.
//! - `readiness`: the checks behind `/readyz`.
//!
//! Around it:
//! - `internal_events`: one type per outcome, logging and counting together; `metrics`: the
//!   Prometheus registry; [`telemetry`]: logging and the log-volume budget.
//! - [`cli`]: the command line (`serve`, `sign`, `tail`, `load`, `dead-letters`); [`load`]: the
//!   load generator; `tail`: a topic's records as JSON.

pub mod avro;
pub mod cli;
pub mod configuration;
pub(crate) mod dead_letter;
pub(crate) mod dedupe;
pub(crate) mod error;
pub mod event;
pub(crate) mod ingest;
pub(crate) mod internal_events;
pub mod kafka;
pub(crate) mod limits;
pub mod load;
pub(crate) mod metrics;
pub mod naming;
pub mod providers;
pub(crate) mod readiness;
pub(crate) mod routes;
pub mod signature;
pub mod startup;
pub(crate) mod tail;
pub mod telemetry;

#[cfg(test)]
mod test_alloc;
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: test_alloc::Counting = test_alloc::Counting;
