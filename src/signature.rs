//! HMAC-SHA256 webhook signatures over the raw request body.
//!
//! Every provider signs the exact bytes it sends with HMAC-SHA256; they differ only in which
//! header carries the tag and how it is encoded. A provider describes that with a
//! [`SignatureScheme`]; this module does the cryptography once for all of them.
//!
//! The only ways to obtain a [`VerifiedBody`] are [`SignatureScheme::verify`] and
//! [`VerifiedBody::from_dead_letter`] (a body verified when it arrived), so bytes that were not
//! authenticated cannot reach normalization by accident.
//!
//! No provider signs a timestamp: a signature proves who sent the bytes, not when. Replay
//! protection is the dedupe window alone (`crate::dedupe`).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
pub const TAG_LEN: usize = 32;

/// A shared signing secret: zeroed when dropped, and its `Debug` output never shows the value.
#[derive(Clone)]
pub struct Secret(SecretSlice<u8>);

impl Secret {
    /// Secrets are used as the UTF-8 bytes of the configured string, as every provider documents.
    pub fn new(value: &str) -> Self {
        Self(SecretSlice::from(value.as_bytes().to_vec()))
    }

    /// Splits a comma-separated list (secret rotation), ignoring surrounding blanks and empty items.
    pub fn parse_list(list: &str) -> Vec<Secret> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect()
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        match HmacSha256::new_from_slice(self.0.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC-SHA256 accepts keys of every length"),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// How the tag is written into the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Standard alphabet, with padding (44 characters for SHA-256).
    Base64,
    /// Hexadecimal; either case is accepted, lowercase is produced.
    Hex,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
        }
    }

    fn encode(self, tag: &[u8]) -> String {
        match self {
            Encoding::Base64 => BASE64.encode(tag),
            Encoding::Hex => hex::encode(tag),
        }
    }

    /// Decodes a header value into a tag of exactly [`TAG_LEN`] bytes, or `None`.
    fn decode(self, value: &[u8]) -> Option<Vec<u8>> {
        let value = value.trim_ascii();
        let tag = match self {
            Encoding::Base64 => BASE64.decode(value).ok()?,
            Encoding::Hex => hex::decode(value).ok()?,
        };
        (tag.len() == TAG_LEN).then_some(tag)
    }
}

/// Read access to request headers, so this module does not depend on the HTTP framework.
pub trait HeaderSource {
    /// The raw value of the first header with this (case-insensitive) name.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// Which headers carry a provider's signature and how it is encoded.
#[derive(Clone, Copy, Debug)]
pub struct SignatureScheme {
    /// Header names, primary first. A request is authentic when the tag in *any* of them matches
    /// *any* configured secret (Seismic sends a second header signed with the previous secret).
    pub headers: &'static [&'static str],
    pub encoding: Encoding,
}

/// Why a request's signature was not accepted. Deliberately narrow: the detail never includes
/// the received or expected tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no {0} header")]
    Missing(&'static str),
    #[error("the {header} header is not a {encoding}-encoded HMAC-SHA256 signature")]
    Malformed {
        header: &'static str,
        encoding: &'static str,
    },
    #[error("the signature does not match the request body for any configured secret")]
    Mismatch,
}

/// Request body bytes whose signature has been checked.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedBody<'a>(&'a [u8]);

impl<'a> VerifiedBody<'a> {
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The body of a dead letter being replayed. Its signature was verified when it arrived;
    /// it is trusted now because only hookstream writes the dead-letter topic — Kafka ACLs must
    /// keep it so (see the README).
    pub fn from_dead_letter(body: &'a [u8]) -> Self {
        Self(body)
    }
}

impl SignatureScheme {
    /// The primary header name (what a provider sends outside secret rotation).
    pub fn primary_header(&self) -> &'static str {
        self.headers[0]
    }

    /// Whether the request carries any of the signature headers (checked before reading a body).
    pub fn is_present(&self, headers: &dyn HeaderSource) -> bool {
        self.headers
            .iter()
            .any(|name| headers.header(name).is_some())
    }

    /// Checks the body against every signature header present and every secret, in constant time
    /// per comparison.
    pub fn verify<'a>(
        &self,
        headers: &dyn HeaderSource,
        body: &'a [u8],
        secrets: &[Secret],
    ) -> Result<VerifiedBody<'a>, SignatureError> {
        let mut any_present = false;
        let mut any_well_formed = false;
        let mut first_malformed = None;
        for &name in self.headers {
            let Some(value) = headers.header(name) else {
                continue;
            };
            any_present = true;
            let Some(tag) = self.encoding.decode(value) else {
                first_malformed.get_or_insert(name);
                continue;
            };
            any_well_formed = true;
            for secret in secrets {
                let mut mac = secret.mac();
                mac.update(body);
                // `verify_slice` compares in constant time.
                if mac.verify_slice(&tag).is_ok() {
                    return Ok(VerifiedBody(body));
                }
            }
        }
        match (any_present, any_well_formed, first_malformed) {
            (false, _, _) => Err(SignatureError::Missing(self.primary_header())),
            (true, false, Some(header)) => Err(SignatureError::Malformed {
                header,
                encoding: self.encoding.name(),
            }),
            _ => Err(SignatureError::Mismatch),
        }
    }

    /// The header value a provider would send for `body` signed with `secret`.
    pub fn sign(&self, body: &[u8], secret: &Secret) -> String {
        let mut mac = secret.mac();
        mac.update(body);
        self.encoding.encode(&mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Headers(HashMap<&'static str, &'static str>);
    impl HeaderSource for Headers {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0.get(name).map(|v| v.as_bytes())
        }
    }
    fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
        Headers(pairs.iter().copied().collect())
    }

    const B64: SignatureScheme = SignatureScheme {
        headers: &["sig"],
        encoding: Encoding::Base64,
    };
    const HEX2: SignatureScheme = SignatureScheme {
        headers: &["sig", "sig-old"],
        encoding: Encoding::Hex,
    };

    // Known-answer vectors: RFC 4231 test case 2 ("Jefe" / "what do ya want for nothing?").
    const RFC4231_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const RFC4231_B64: &str = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";

    #[test]
    fn signs_rfc4231_test_case_2_in_both_encodings() {
        let secret = Secret::new("Jefe");
        let body = b"what do ya want for nothing?";
        assert_eq!(HEX2.sign(body, &secret), RFC4231_HEX);
        assert_eq!(B64.sign(body, &secret), RFC4231_B64);
    }

    #[test]
    fn accepts_known_answer_base64_signature() {
        let h = headers(&[("sig", RFC4231_B64)]);
        let ok = B64.verify(&h, b"what do ya want for nothing?", &[Secret::new("Jefe")]);
        assert!(ok.is_ok());
    }

    #[test]
    fn accepts_uppercase_hex() {
        let upper: &'static str = Box::leak(RFC4231_HEX.to_uppercase().into_boxed_str());
        let h = headers(&[("sig", upper)]);
        assert!(HEX2
            .verify(&h, b"what do ya want for nothing?", &[Secret::new("Jefe")])
            .is_ok());
    }

    #[test]
    fn rejects_a_tampered_body() {
        let h = headers(&[("sig", RFC4231_B64)]);
        let err = B64.verify(&h, b"what do ya want for nothing!", &[Secret::new("Jefe")]);
        assert_eq!(err.unwrap_err(), SignatureError::Mismatch);
    }

    #[test]
    fn any_configured_secret_may_match() {
        let h = headers(&[("sig", RFC4231_B64)]);
        let secrets = Secret::parse_list(" new-secret , Jefe,,");
        assert_eq!(secrets.len(), 2);
        assert!(B64
            .verify(&h, b"what do ya want for nothing?", &secrets)
            .is_ok());
    }

    #[test]
    fn the_rotation_header_is_checked_when_the_primary_does_not_match() {
        let wrong = "00".repeat(32);
        let wrong: &'static str = Box::leak(wrong.into_boxed_str());
        let h = headers(&[("sig", wrong), ("sig-old", RFC4231_HEX)]);
        assert!(HEX2
            .verify(&h, b"what do ya want for nothing?", &[Secret::new("Jefe")])
            .is_ok());
    }

    #[test]
    fn missing_header_names_the_primary_header() {
        let err = HEX2.verify(&headers(&[]), b"{}", &[Secret::new("k")]);
        assert_eq!(err.unwrap_err(), SignatureError::Missing("sig"));
    }

    #[test]
    fn malformed_headers_are_invalid_not_panics() {
        let bad = [
            "",
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "zz",
            "5bdcc146",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec384300",
            "not base64 at all!!",
        ];
        for value in bad {
            let h = headers(&[("sig", value)]);
            for scheme in [B64, HEX2] {
                let err = scheme.verify(&h, b"{}", &[Secret::new("k")]).unwrap_err();
                assert!(
                    matches!(err, SignatureError::Malformed { header: "sig", .. }),
                    "{value:?} gave {err:?}"
                );
            }
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2")),
            "Secret([redacted])"
        );
    }
}
