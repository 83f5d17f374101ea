//! hookstream receives webhooks from session-analytics providers (LiveSession, LasoExperience,
//! Seismic, and any source defined in configuration), verifies their signatures, normalizes every payload into one Avro record
//! (`avro/webhook_event.avsc`) and produces it to Kafka, answering 2xx only once the broker has
//! acknowledged the write.
//!
//! # Layout
//!
//! The modules form layers, listed here from the top down. A module may use modules of its own
//! layer and of the layers below it, never one above; and no two modules may use each other,
//! directly or through others. `tests/architecture.rs` reads this list and every `crate::…` path
//! in `src/`, and fails naming the import that breaks either rule.
//!
//! 1. **Commands**: `cli` — the command line (`serve`, `sign`, `send`, `tail`, `topics`,
//!    `load`, `dead-letters`, `config`, `spool`, `rejections`); the binary calls [`cli::run`].
//! 2. **Operations**: `operations` — what the commands do with the cluster and the spool:
//!    `topics` (list, create), `tail`, the dead-letter `list` and `replay` (through the
//!    pipeline's own preparation and write path), `config check --connect`, `spool status` and
//!    `drain`; `load` — the load generator.
//! 3. **Server**: `startup` — builds the [`startup::Application`] (its ports and servers), runs
//!    it with the workers beside it (`startup::workers`: readiness checks, certificate reloads,
//!    the configuration reload, the spool's forwarder, each with its own `run_*_until_stopped`),
//!    and reloads its providers and log level while it runs; `startup::wiring` builds
//!    the parts every command that talks to the cluster needs (metrics, the Kafka sink,
//!    deduplication, framing), one way for `serve`, `replay`, `spool drain` and `config check`.
//! 4. **HTTP**: `routes` — thin handlers: bounded body reading, then the pipeline.
//! 5. **Pipeline**: `ingest` — verify, parse, handshake, normalize (`prepare`); the message
//!    builder (`ingest::record`: topic, key, headers and value, decided once); deduplicate and
//!    write, to the broker or through the spool (`ingest::write`: the write runs to its end even
//!    when the client goes away); dead-letters what cannot be normalized.
//! 6. **HTTP errors**: `error` — every way a request fails, wrapping the errors of the layers
//!    below, and the one place they become status codes.
//! 7. **Health and bounds**: `readiness` — the checks behind `/readyz`; `limits` — open
//!    connections, bodies being received and requests in flight.
//! 8. **Infrastructure**: `kafka` — one message (`message`), which topic and creating it
//!    (`topics`), the one write core and what it learns (`sink`), the producer and its
//!    replacement, what librdkafka says is wrong with the connection, certificate rotation,
//!    produce error classification; `avro` — the record's encoding, value
//!    framing, the Schema Registry client; `dedupe` — the bounded cache of written event ids;
//!    `dead_letter` — the format of a dead letter; `tls` — the public listener's certificate,
//!    reloaded without a restart; `spool` — the durable local spool (its directory and file names,
//!    records, checksums, the writer, the forwarder back to Kafka and its watchdog), never HTTP.
//! 9. **Configuration**: `configuration` — layered, strict settings.
//! 10. **Domain**: `providers` — the built-ins, one module each behind [`providers::Provider`],
//!     the providers defined in configuration (`providers::configured`: presets, field
//!     mappings), the [`providers::Registry`] of both, and [`providers::normalize`]; `signature` —
//!     HMAC, Standard Webhooks and Stripe verification, and the [`signature::VerifiedBody`] type;
//!     `event` — the unified record; `naming` — event and topic names.
//! 11. **Events**: `internal_events` — one `internal_events::InternalEvent` per outcome,
//!     logging (within the event's own log limit) and counting together; they carry plain data
//!     (names, codes, reasons, `&dyn Display`), never an error type of a layer above.
//! 12. **Metrics**: `metrics` — the Prometheus registry, its metrics grouped by area; `rejections` — the bounded record of the
//!     latest rejected deliveries per provider (names, lengths, a digest and counts, never a
//!     value), served on the admin port.
//! 13. **Leaves**: `codes` — error codes and produce failure reasons; `duration` — durations in
//!     configuration, read with a unit and written as the docs write them; `boolean` — booleans
//!     in configuration, `true` or `false` and nothing else; `telemetry` —
//!     logging and the log-volume budget; `test_alloc` — the allocation counter of the unit
//!     tests.

pub mod avro;
pub(crate) mod boolean;
pub mod cli;
pub(crate) mod codes;
pub mod configuration;
pub(crate) mod dead_letter;
pub(crate) mod dedupe;
pub(crate) mod duration;
pub(crate) mod error;
pub mod event;
pub(crate) mod ingest;
pub(crate) mod internal_events;
pub mod kafka;
pub(crate) mod limits;
pub mod load;
pub(crate) mod metrics;
pub mod naming;
pub(crate) mod operations;
pub mod providers;
pub(crate) mod readiness;
pub(crate) mod rejections;
pub(crate) mod routes;
pub mod signature;
pub(crate) mod spool;
pub mod startup;
pub mod telemetry;
pub(crate) mod tls;

#[cfg(test)]
mod test_alloc;
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: test_alloc::Counting = test_alloc::Counting;
