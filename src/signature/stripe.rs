//! Stripe's signature: `Stripe-Signature: t=<seconds>,v1=<hex>[,v1=<hex>…]` (several `v1`
//! during a secret's rotation; `v0` and other schemes are ignored), HMAC-SHA256 of `{t}.{body}`
//! with the endpoint secret's bytes.

use super::{
    any_sha256_matches, within_tolerance, Algorithm, HeaderSource, Secret, SignatureError,
};
use std::time::Duration;

pub const HEADER: &str = "stripe-signature";

pub(super) fn verify(
    headers: &dyn HeaderSource,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let value = headers
        .header(HEADER)
        .ok_or(SignatureError::Missing(HEADER))?;
    let malformed = SignatureError::Malformed {
        header: HEADER,
        expected: "t=<timestamp>,v1=<hex HMAC-SHA256>",
    };
    let mut timestamp = None;
    let mut tags = Vec::new();
    for item in value.split(|b| *b == b',') {
        let item = item.trim_ascii();
        if let Some(t) = item.strip_prefix(b"t=") {
            timestamp = Some(t);
        } else if let Some(v1) = item.strip_prefix(b"v1=") {
            if let Some(tag) = hex::decode(v1).ok().filter(|t| t.len() == 32) {
                tags.push(tag);
            }
        }
    }
    let timestamp = timestamp.ok_or(malformed.clone())?;
    let seconds = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or(malformed.clone())?;
    if tags.is_empty() {
        return Err(malformed);
    }
    within_tolerance(seconds, now, tolerance)?;
    let content = [timestamp, b".", body].concat();
    any_sha256_matches(&tags, secrets, &content)
}

pub(super) fn sign(body: &[u8], secret: &Secret, now: i64) -> Vec<(&'static str, String)> {
    let content = [now.to_string().as_bytes(), b".", body].concat();
    let tag = Algorithm::Sha256.tag(secret, &content);
    vec![(HEADER, format!("t={now},v1={}", hex::encode(tag)))]
}

#[cfg(test)]
mod tests {
    use super::super::tests::headers;
    use super::super::SignatureScheme;
    use super::*;

    const SCHEME: SignatureScheme = SignatureScheme::Stripe {
        tolerance: Duration::from_secs(300),
    };

    #[test]
    fn the_documented_scheme_verifies_with_a_rotated_secret_beside_it() {
        let secret = Secret::new("whsec_test_secret");
        let body = br#"{"id":"evt_1","type":"invoice.paid"}"#;
        // Computed independently: HMAC-SHA256("whsec_test_secret", "1700000000." + body).
        let content = [b"1700000000.".as_slice(), body].concat();
        let expected = {
            use hmac::{Hmac, Mac};
            let mut mac =
                <Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(b"whsec_test_secret")
                    .expect("key");
            mac.update(&content);
            hex::encode(mac.finalize().into_bytes())
        };
        let signed = SCHEME.sign_at(body, &secret, 1_700_000_000, "");
        assert_eq!(signed[0].1, format!("t=1700000000,v1={expected}"));
        let value = format!("t=1700000000,v1={},v1={expected},v0=abc", "00".repeat(32));
        let h = headers(&[("Stripe-Signature", &value)]);
        assert!(SCHEME
            .verify_at(&h, body, std::slice::from_ref(&secret), 1_700_000_010)
            .is_ok());
        assert_eq!(
            SCHEME.verify_at(&h, b"{}", std::slice::from_ref(&secret), 1_700_000_010),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            SCHEME.verify_at(&h, body, std::slice::from_ref(&secret), 1_700_000_400),
            Err(SignatureError::Expired { .. })
        ));
        let no_time = headers(&[("Stripe-Signature", &format!("v1={expected}"))]);
        assert!(matches!(
            SCHEME.verify_at(&no_time, body, &[secret], 1_700_000_000),
            Err(SignatureError::Malformed { .. })
        ));
    }
}
