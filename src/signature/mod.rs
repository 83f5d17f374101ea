//! Webhook signatures: an HMAC over the raw request body (or over the body and a few signed
//! headers), checked in constant time against every configured secret.
//!
//! A provider describes how it signs with a [`SignatureScheme`]:
//! - [`SignatureScheme::Hmac`]: a tag in a header — the algorithm (SHA-1, SHA-256, SHA-512), its
//!   encoding (hex, base64), an optional prefix (`sha256=`), one or several signatures in the
//!   header, and what is signed ([`Signed`]: the body, or a template over the body and named
//!   headers), optionally with a signed timestamp header. The three built-in providers use the
//!   simplest form: HMAC-SHA256 of the raw body.
//! - [`SignatureScheme::StandardWebhooks`]: the Standard Webhooks specification ([`standard`]).
//! - [`SignatureScheme::Stripe`]: `Stripe-Signature: t=…,v1=…` ([`stripe`]).
//!
//! Where a scheme signs a timestamp, a request more than its tolerance older or newer than now is
//! refused ([`SignatureError::Expired`]): a captured request cannot be replayed later. Schemes that
//! sign no timestamp rely on the dedupe window alone.
//!
//! The only ways to obtain a [`VerifiedBody`] are [`SignatureScheme::verify`] and
//! [`VerifiedBody::from_dead_letter`] (a body verified when it arrived), so bytes that were not
//! authenticated cannot reach normalization by accident.

mod hmac;
pub mod interned;
pub mod standard;
pub mod stripe;

pub use self::hmac::{parse_template, Algorithm, Encoding, HmacScheme, Part, Signed};
use secrecy::{ExposeSecret, SecretSlice};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A shared signing secret: zeroed when dropped, and its `Debug` output never shows the value.
#[derive(Clone)]
pub struct Secret(SecretSlice<u8>);

impl Secret {
    /// Secrets are used as the UTF-8 bytes of the configured string, as most providers document.
    pub fn new(value: &str) -> Self {
        Self::from_bytes(value.as_bytes().to_vec())
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    /// Splits a comma-separated list (secret rotation), ignoring surrounding blanks and empty items.
    pub fn parse_list(list: &str) -> Vec<Secret> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect()
    }

    fn bytes(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Read access to request headers, so this module does not depend on the HTTP framework.
pub trait HeaderSource {
    /// The raw value of the first header with this (case-insensitive) name.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

/// Headers as a client builds them: name and value pairs, in order.
impl HeaderSource for Vec<(String, String)> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

/// How a provider signs its requests.
#[derive(Clone, Copy, Debug)]
pub enum SignatureScheme {
    Hmac(HmacScheme),
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    StandardWebhooks {
        tolerance: Duration,
    },
    /// Stripe: `Stripe-Signature: t=<seconds>,v1=<hex>[,v1=<hex>]`.
    Stripe {
        tolerance: Duration,
    },
}

/// Why a request's signature was not accepted. Deliberately narrow: the detail never includes
/// the received or expected tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no {0} header")]
    Missing(&'static str),
    #[error("the {header} header is not {expected}")]
    Malformed {
        header: &'static str,
        /// What a well-formed value is, e.g. "a hex-encoded HMAC-SHA256 signature".
        expected: &'static str,
    },
    #[error("the signature does not match the request for any configured secret")]
    Mismatch,
    #[error("the signed timestamp is {} s away from now, more than the tolerance of {} s: a replay, or a clock far off", .skew_secs, .tolerance_secs)]
    Expired { skew_secs: u64, tolerance_secs: u64 },
}

/// Request body bytes whose signature has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Whether `name` is a valid HTTP header name (an RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether any of `tags` is the HMAC-SHA256 of `content` under any of `secrets` (each compared in
/// constant time).
fn any_sha256_matches(
    tags: &[Vec<u8>],
    secrets: &[Secret],
    content: &[u8],
) -> Result<(), SignatureError> {
    let matched = tags.iter().any(|tag| {
        secrets
            .iter()
            .any(|secret| Algorithm::Sha256.matches(secret, content, tag))
    });
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Refuses a signed timestamp further than `tolerance` from `now` (both in seconds).
fn within_tolerance(timestamp: i64, now: i64, tolerance: Duration) -> Result<(), SignatureError> {
    let skew = timestamp.abs_diff(now);
    if skew > tolerance.as_secs() {
        return Err(SignatureError::Expired {
            skew_secs: skew,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}

impl SignatureScheme {
    /// HMAC-SHA256 of the raw body in one of `headers` (any of them may match: secret rotation),
    /// encoded as `encoding`: how the built-in providers sign.
    pub const fn body_hmac_sha256(headers: &'static [&'static str], encoding: Encoding) -> Self {
        SignatureScheme::Hmac(HmacScheme {
            headers,
            algorithm: Algorithm::Sha256,
            encoding,
            prefix: "",
            signed: Signed::Body,
            timestamp: None,
        })
    }

    /// The header that carries the signature (what is missing when a request is unsigned).
    pub fn primary_header(&self) -> &'static str {
        match self {
            SignatureScheme::Hmac(h) => h.headers.first().copied().unwrap_or("signature"),
            SignatureScheme::StandardWebhooks { .. } => standard::SIGNATURE,
            SignatureScheme::Stripe { .. } => stripe::HEADER,
        }
    }

    /// The request headers the signature covers besides the body: a sender cannot change
    /// them without invalidating it. Only such headers may decide an event's identity or topic.
    pub fn signed_headers(&self) -> Vec<&'static str> {
        match self {
            SignatureScheme::Hmac(h) => match h.signed {
                Signed::Body => Vec::new(),
                Signed::Template(parts) => parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Header(name) => Some(*name),
                        _ => None,
                    })
                    .collect(),
            },
            SignatureScheme::StandardWebhooks { .. } => vec![standard::ID, standard::TIMESTAMP],
            SignatureScheme::Stripe { .. } => Vec::new(),
        }
    }

    /// Every request header the scheme reads: the signature headers (a rotation's too), the
    /// signed timestamp and the headers a template signs, each once, the signature's first.
    pub fn header_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = match self {
            SignatureScheme::Hmac(h) => h
                .headers
                .iter()
                .copied()
                .chain(h.timestamp.map(|(name, _)| name))
                .collect(),
            SignatureScheme::StandardWebhooks { .. } => {
                vec![standard::SIGNATURE, standard::ID, standard::TIMESTAMP]
            }
            SignatureScheme::Stripe { .. } => vec![stripe::HEADER],
        };
        for name in self.signed_headers() {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name);
            }
        }
        names
    }

    /// Whether the request carries a signature header (checked before reading a body).
    pub fn is_present(&self, headers: &dyn HeaderSource) -> bool {
        match self {
            SignatureScheme::Hmac(h) => h.headers.iter().any(|n| headers.header(n).is_some()),
            _ => headers.header(self.primary_header()).is_some(),
        }
    }

    /// The secrets of a configured list: comma-separated; for Standard Webhooks each is
    /// `whsec_` and base64 (`Err` names the problem, never the secret).
    pub fn parse_secrets(&self, list: &str) -> Result<Vec<Secret>, String> {
        match self {
            SignatureScheme::StandardWebhooks { .. } => standard::parse_secrets(list),
            _ => Ok(Secret::parse_list(list)),
        }
    }

    /// Checks the request against every secret, in constant time per comparison, now.
    pub fn verify<'a>(
        &self,
        headers: &dyn HeaderSource,
        body: &'a [u8],
        secrets: &[Secret],
    ) -> Result<VerifiedBody<'a>, SignatureError> {
        self.verify_at(headers, body, secrets, now_secs())
    }

    /// [`SignatureScheme::verify`] as if it were `now` (seconds since the epoch).
    pub fn verify_at<'a>(
        &self,
        headers: &dyn HeaderSource,
        body: &'a [u8],
        secrets: &[Secret],
        now: i64,
    ) -> Result<VerifiedBody<'a>, SignatureError> {
        match self {
            SignatureScheme::Hmac(h) => h.verify(headers, body, secrets, now)?,
            SignatureScheme::StandardWebhooks { tolerance } => {
                standard::verify(headers, body, secrets, now, *tolerance)?
            }
            SignatureScheme::Stripe { tolerance } => {
                stripe::verify(headers, body, secrets, now, *tolerance)?
            }
        }
        Ok(VerifiedBody(body))
    }

    /// The headers a sender sets for `body` signed with `secret` now, the signature header
    /// first. `id` is the message id where the scheme signs one (Standard Webhooks).
    pub fn sign(&self, body: &[u8], secret: &Secret) -> Vec<(&'static str, String)> {
        self.sign_at(body, secret, now_secs(), &format!("msg_{:x}", now_nanos()))
    }

    /// [`SignatureScheme::sign`] at `now`, with message id `id`. Of the headers an HMAC template
    /// names, only the timestamp header is set (to `now`); others are signed as empty.
    pub fn sign_at(
        &self,
        body: &[u8],
        secret: &Secret,
        now: i64,
        id: &str,
    ) -> Vec<(&'static str, String)> {
        match self {
            SignatureScheme::Hmac(h) => h.sign(body, secret, now),
            SignatureScheme::StandardWebhooks { .. } => standard::sign(body, secret, now, id),
            SignatureScheme::Stripe { .. } => stripe::sign(body, secret, now),
        }
    }

    /// The header value of the simplest schemes (HMAC of the body alone), as the built-in
    /// providers send it.
    pub fn sign_value(&self, body: &[u8], secret: &Secret) -> String {
        self.sign(body, secret)
            .into_iter()
            .next()
            .map(|(_, value)| value)
            .unwrap_or_default()
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) struct Headers(pub HashMap<String, String>);
    impl HeaderSource for Headers {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
    }
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const B64: SignatureScheme = SignatureScheme::body_hmac_sha256(&["sig"], Encoding::Base64);
    const HEX2: SignatureScheme =
        SignatureScheme::body_hmac_sha256(&["sig", "sig-old"], Encoding::Hex);

    // Known-answer vectors: RFC 4231 test case 2 ("Jefe" / "what do ya want for nothing?").
    const RFC4231_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    const RFC4231_B64: &str = "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=";

    #[test]
    fn signs_rfc4231_test_case_2_in_both_encodings() {
        let secret = Secret::new("Jefe");
        let body = b"what do ya want for nothing?";
        assert_eq!(HEX2.sign_value(body, &secret), RFC4231_HEX);
        assert_eq!(B64.sign_value(body, &secret), RFC4231_B64);
    }

    #[test]
    fn accepts_known_answer_base64_signature() {
        let h = headers(&[("sig", RFC4231_B64)]);
        let ok = B64.verify(&h, b"what do ya want for nothing?", &[Secret::new("Jefe")]);
        assert!(ok.is_ok());
    }

    #[test]
    fn accepts_uppercase_hex() {
        let upper = RFC4231_HEX.to_uppercase();
        let h = headers(&[("sig", &upper)]);
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
        let h = headers(&[("sig", &wrong), ("sig-old", RFC4231_HEX)]);
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
