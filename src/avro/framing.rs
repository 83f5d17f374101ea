//! How an Avro datum is wrapped into a Kafka message value — the single seam for value framing.
//!
//! - Without a Schema Registry: Avro single-object encoding (`C3 01`, the 8-byte little-endian
//!   CRC-64-AVRO fingerprint of the schema, then the datum); any Avro library decodes it with the
//!   `.avsc`.
//! - With one: the Confluent wire format (`00`, the 4-byte big-endian schema id, then the datum),
//!   which Kafka Connect, ksqlDB, Flink and Redpanda Console decode through the registry.

use super::registry::{RegistryClient, RegistryError};
use super::schema_json;
use std::sync::{Arc, OnceLock};

/// The two marker bytes that start every single-object encoded value.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// The magic byte of the Confluent wire format.
pub const CONFLUENT_MAGIC: u8 = 0;

/// A value framing, chosen at startup.
#[derive(Debug, Clone)]
pub enum Framing {
    /// Avro single-object encoding; holds the precomputed 10-byte header.
    SingleObject { header: [u8; 10] },
    /// Confluent wire format with ids from the registry (subject `{topic}-value`).
    SchemaRegistry(Arc<RegistryClient>),
}

/// `C3 01` and the schema's fingerprint, computed once.
fn single_object_header() -> [u8; 10] {
    static HEADER: OnceLock<[u8; 10]> = OnceLock::new();
    *HEADER.get_or_init(|| {
        let fingerprint = super::canonical::fingerprint(&schema_json());
        let mut header = [0u8; 10];
        header[..2].copy_from_slice(&SINGLE_OBJECT_MAGIC);
        header[2..].copy_from_slice(&fingerprint);
        header
    })
}

impl Framing {
    /// Single-object framing for `avro/webhook_event.avsc`.
    pub fn single_object() -> Self {
        Framing::SingleObject {
            header: single_object_header(),
        }
    }

    /// A buffer holding the framing header of a value for `topic`, with room for `datum_len`
    /// more bytes: the datum is appended to it. Never yields an unframed value: a registry
    /// failure is an error.
    pub async fn header(&self, topic: &str, datum_len: usize) -> Result<Vec<u8>, RegistryError> {
        match self {
            Framing::SingleObject { header } => {
                let mut out = Vec::with_capacity(header.len() + datum_len);
                out.extend_from_slice(header);
                Ok(out)
            }
            Framing::SchemaRegistry(registry) => {
                let id = registry.schema_id(&format!("{topic}-value")).await?;
                Ok(confluent_frame(id, &[], datum_len))
            }
        }
    }
}

/// `00`, the big-endian schema id, the datum (with room for `spare` more bytes).
pub fn confluent_frame(schema_id: u32, datum: &[u8], spare: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + datum.len() + spare);
    out.push(CONFLUENT_MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// The datum inside a value hookstream wrote in either framing: single-object values must carry
/// this schema's fingerprint; Confluent-framed ones are assumed to carry a registered version of it.
pub fn datum_of(value: &[u8]) -> Option<&[u8]> {
    if let Some(datum) = value.strip_prefix(single_object_header().as_slice()) {
        return Some(datum);
    }
    match value {
        [CONFLUENT_MAGIC, _, _, _, _, datum @ ..] => Some(datum),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_magic_then_the_fingerprint_other_implementations_compute() {
        let Framing::SingleObject { header } = Framing::single_object() else {
            panic!("single-object framing")
        };
        assert_eq!(&header[..2], &[0xC3, 0x01]);
        // What fastavro computes for avro/webhook_event.avsc (see `canonical`).
        assert_eq!(hex::encode(&header[2..]), "c4da95d5449bc630");
    }

    #[tokio::test]
    async fn both_framings_unwrap_to_the_datum() {
        let mut single = Framing::single_object()
            .header("t", 5)
            .await
            .expect("frames");
        single.extend_from_slice(b"datum");
        assert_eq!(datum_of(&single), Some(&b"datum"[..]));
        let confluent = confluent_frame(258, b"datum", 0);
        assert_eq!(&confluent[..5], &[0, 0, 0, 1, 2]);
        assert_eq!(datum_of(&confluent), Some(&b"datum"[..]));
        let mut other_schema = single.clone();
        other_schema[5] ^= 0xff;
        assert_eq!(datum_of(&other_schema), None);
    }
}
