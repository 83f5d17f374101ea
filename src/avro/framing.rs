//! How an Avro datum is wrapped into a Kafka message value.
//!
//! This is the single seam for value framing. Today it is Avro single-object encoding
//! (`C3 01`, the 8-byte little-endian CRC-64-AVRO fingerprint of the schema, then the datum),
//! which any Avro library decodes given the `.avsc`.

use super::schema;
use apache_avro::rabin::Rabin;

/// The two marker bytes that start every single-object encoded value.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

/// A value framing, chosen at startup.
#[derive(Debug, Clone)]
pub enum Framing {
    /// Avro single-object encoding; holds the precomputed 10-byte header.
    SingleObject { header: [u8; 10] },
}

impl Framing {
    /// Single-object framing for `avro/webhook_event.avsc`.
    pub fn single_object() -> Self {
        let fingerprint = schema().fingerprint::<Rabin>().bytes;
        let mut header = [0u8; 10];
        header[..2].copy_from_slice(&SINGLE_OBJECT_MAGIC);
        header[2..].copy_from_slice(&fingerprint);
        Framing::SingleObject { header }
    }

    /// The datum inside a value framed by `self`, or `None` if the value was framed otherwise
    /// (another schema, another framing).
    pub fn unframe<'a>(&self, value: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            Framing::SingleObject { header } => value.strip_prefix(header.as_slice()),
        }
    }

    /// Wraps an Avro datum.
    pub fn frame(&self, datum: &[u8]) -> Vec<u8> {
        match self {
            Framing::SingleObject { header } => {
                let mut out = Vec::with_capacity(header.len() + datum.len());
                out.extend_from_slice(header);
                out.extend_from_slice(datum);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-64-AVRO exactly as the Avro specification gives it ("Schema Fingerprints"), written
    /// out independently of the library to check the library's byte order.
    fn spec_fingerprint(canonical: &[u8]) -> u64 {
        const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
        let mut table = [0u64; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            }
            *slot = fp;
        }
        let mut fp = EMPTY;
        for &b in canonical {
            fp = (fp >> 8) ^ table[((fp ^ b as u64) & 0xff) as usize];
        }
        fp
    }

    #[test]
    fn header_is_magic_then_little_endian_spec_fingerprint() {
        let canonical = schema().canonical_form();
        let expected = spec_fingerprint(canonical.as_bytes()).to_le_bytes();
        let Framing::SingleObject { header } = Framing::single_object();
        assert_eq!(&header[..2], &[0xC3, 0x01]);
        assert_eq!(&header[2..], &expected);
    }

    #[test]
    fn unframe_inverts_frame_and_refuses_other_schemas() {
        let framing = Framing::single_object();
        let framed = framing.frame(b"datum");
        assert_eq!(framing.unframe(&framed), Some(&b"datum"[..]));
        let mut other = framed.clone();
        other[5] ^= 0xff;
        assert_eq!(framing.unframe(&other), None);
    }

    #[test]
    fn spec_fingerprint_matches_a_published_value() {
        // The Avro specification's reference: fingerprint of the canonical schema "int".
        assert_eq!(spec_fingerprint(br#""int""#), 0x7275_d51a_3f39_5c8f);
    }
}
