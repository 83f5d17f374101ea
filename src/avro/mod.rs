//! Avro encoding of [`WebhookEvent`](crate::event::WebhookEvent).
//!
//! The schema is `avro/webhook_event.avsc`, compiled into the binary so the service and the file
//! consumers read can never disagree. [`record`] builds the datum; [`framing`] wraps it so a
//! consumer can tell which schema wrote it.

pub mod framing;
mod record;
pub mod registry;

pub use framing::{datum_of, Framing};
pub use record::{provider_symbols, to_value};
pub use registry::{RegistryClient, RegistryError};

use apache_avro::Schema;
use std::sync::OnceLock;

/// The schema text, exactly as shipped in `avro/webhook_event.avsc`.
pub const SCHEMA_JSON: &str = include_str!("../../avro/webhook_event.avsc");

/// The parsed schema. Parsing a schema compiled into the binary can only fail if the file in the
/// repository is broken, which the unit tests catch.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| match Schema::parse_str(SCHEMA_JSON) {
        Ok(schema) => schema,
        Err(e) => panic!("avro/webhook_event.avsc is not a valid Avro schema: {e}"),
    })
}

/// Errors turning a record into bytes. Any of them is a bug in hookstream, not bad input.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("record does not match the Avro schema: {0}")]
    Avro(#[from] apache_avro::Error),
}

/// Avro binary datum (no framing) of `event`.
pub fn encode_datum(event: &crate::event::WebhookEvent) -> Result<Vec<u8>, EncodeError> {
    Ok(apache_avro::to_avro_datum(schema(), to_value(event))?)
}
