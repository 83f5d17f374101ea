//! Avro encoding of [`WebhookEvent`](crate::event::WebhookEvent).
//!
//! The schema is `avro/webhook_event.avsc`, compiled into the binary so the service and the file
//! consumers read can never disagree. [`encoder`] writes the datum; [`framing`] puts the header in
//! front of it so a consumer can tell which schema wrote it; [`record`] builds the same record as a
//! generic Avro value, the reference the encoder is tested against.

pub mod canonical;
mod encoder;
#[cfg(test)]
mod evolution_tests;
pub mod framing;
#[cfg(test)]
mod golden_tests;
mod record;
pub mod registry;

pub use encoder::encode_into;
pub use framing::{datum_of, Framing};
pub use record::{provider_index, provider_symbols, to_value, OTHER};
pub use registry::{RegistryClient, RegistryError};

use apache_avro::Schema;
use std::sync::OnceLock;

/// The schema text, exactly as shipped in `avro/webhook_event.avsc`.
pub const SCHEMA_JSON: &str = include_str!("../../avro/webhook_event.avsc");

/// The schema as JSON (for its canonical form and fingerprint, [`canonical`]).
pub fn schema_json() -> serde_json::Value {
    match serde_json::from_str(SCHEMA_JSON) {
        Ok(json) => json,
        Err(e) => panic!("avro/webhook_event.avsc is not JSON: {e}"),
    }
}

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
    /// The schema cannot say which provider: a bug in the schema.
    #[error("{0}")]
    UnknownProvider(&'static str),
}

/// Avro binary datum (no framing) of `event`.
pub fn encode_datum(event: &crate::event::WebhookEvent) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(encoder::size_hint(event));
    encode_into(event, &mut out)?;
    Ok(out)
}

/// The original request body (`raw_payload`) of a framed record written by this hookstream:
/// what a dead letter keeps when the broker refuses the record itself. `None` for a value that
/// is not such a record.
pub fn raw_payload(value: &[u8]) -> Option<String> {
    let mut datum = framing::datum_of(value)?;
    let decoded = apache_avro::from_avro_datum(schema(), &mut datum, None).ok()?;
    let apache_avro::types::Value::Record(fields) = decoded else {
        return None;
    };
    fields.into_iter().find_map(|(name, value)| match value {
        apache_avro::types::Value::String(raw) if name == "raw_payload" => Some(raw),
        _ => None,
    })
}

/// The framed value of `event` for `topic`: the framing header, then the datum, in one buffer.
pub async fn encode_framed(
    framing: &Framing,
    topic: &str,
    event: &crate::event::WebhookEvent,
) -> Result<Vec<u8>, FrameError> {
    let mut out = framing
        .header(topic, encoder::size_hint(event))
        .await
        .map_err(FrameError::Registry)?;
    encode_into(event, &mut out).map_err(FrameError::Encode)?;
    Ok(out)
}

/// Why a framed value could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Encode(EncodeError),
    #[error(transparent)]
    Registry(RegistryError),
}
