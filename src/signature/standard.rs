//! The Standard Webhooks signature (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` headers; the signed content is `{id}.{timestamp}.{body}`; the signature
//! header is a space-separated list of `v1,<base64 HMAC-SHA256>` entries (several during a
//! secret's rotation; other versions, such as the asymmetric `v1a`, are not ours to check);
//! secrets are `whsec_` and the base64 of the key.

use super::{
    any_sha256_matches, within_tolerance, Algorithm, HeaderSource, Secret, SignatureError,
};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use std::time::Duration;

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";
const SECRET_PREFIX: &str = "whsec_";

/// `whsec_<base64>` secrets (the prefix is optional, padding too), comma-separated.
pub fn parse_secrets(list: &str) -> Result<Vec<Secret>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, secret)| {
            let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
            STANDARD
                .decode(encoded)
                .or_else(|_| STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')))
                .ok()
                .filter(|key| !key.is_empty())
                .map(Secret::from_bytes)
                .ok_or_else(|| {
                    format!(
                        "secret {} is not a Standard Webhooks secret (whsec_ and base64)",
                        i + 1
                    )
                })
        })
        .collect()
}

fn header<'a>(
    headers: &'a dyn HeaderSource,
    name: &'static str,
) -> Result<&'a [u8], SignatureError> {
    headers.header(name).ok_or(SignatureError::Missing(name))
}

pub(super) fn verify(
    headers: &dyn HeaderSource,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let signatures = header(headers, SIGNATURE)?;
    let id = header(headers, ID)?;
    let timestamp = header(headers, TIMESTAMP)?;
    let seconds = std::str::from_utf8(timestamp)
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or(SignatureError::Malformed {
            header: TIMESTAMP,
            expected: "a Unix timestamp in seconds",
        })?;
    within_tolerance(seconds, now, tolerance)?;
    let tags: Vec<Vec<u8>> = signatures
        .split(|b| *b == b' ')
        .filter_map(|entry| entry.strip_prefix(b"v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .filter(|tag| tag.len() == 32)
        .collect();
    if tags.is_empty() {
        return Err(SignatureError::Malformed {
            header: SIGNATURE,
            expected: "a list of v1,<base64 HMAC-SHA256> signatures",
        });
    }
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id);
    content.push(b'.');
    content.extend_from_slice(timestamp);
    content.push(b'.');
    content.extend_from_slice(body);
    any_sha256_matches(&tags, secrets, &content)
}

pub(super) fn sign(
    body: &[u8],
    secret: &Secret,
    now: i64,
    id: &str,
) -> Vec<(&'static str, String)> {
    let timestamp = now.to_string();
    let content = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body].concat();
    let tag = Algorithm::Sha256.tag(secret, &content);
    vec![
        (SIGNATURE, format!("v1,{}", STANDARD.encode(tag))),
        (ID, id.to_string()),
        (TIMESTAMP, timestamp),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::tests::headers;
    use super::super::SignatureScheme;
    use super::*;

    const SCHEME: SignatureScheme = SignatureScheme::StandardWebhooks {
        tolerance: Duration::from_secs(300),
    };
    // The specification's reference libraries' known answer (libraries/go/webhook_test.go).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const AT: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn request(signature: &str, timestamp: &str) -> super::super::tests::Headers {
        headers(&[
            ("webhook-id", ID),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        ])
    }

    #[test]
    fn the_specification_s_example_verifies_and_signs() {
        let secrets = SCHEME.parse_secrets(SECRET).expect("a whsec_ secret");
        let h = request(SIGNATURE, "1614265330");
        assert!(SCHEME.verify_at(&h, BODY, &secrets, AT).is_ok());
        assert_eq!(SCHEME.sign_at(BODY, &secrets[0], AT, ID)[0].1, SIGNATURE);
        // Also with another signature (a rotated secret) and a v1a entry beside it.
        let both = format!("v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SIGNATURE}");
        assert!(SCHEME
            .verify_at(&request(&both, "1614265330"), BODY, &secrets, AT)
            .is_ok());
    }

    #[test]
    fn tampered_stale_or_malformed_requests_are_refused() {
        let secrets = SCHEME.parse_secrets(SECRET).expect("secret");
        let h = request(SIGNATURE, "1614265330");
        assert_eq!(
            SCHEME.verify_at(&h, br#"{"test": 2432232315}"#, &secrets, AT),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            SCHEME.verify_at(&h, BODY, &secrets, AT + 301),
            Err(SignatureError::Expired { .. })
        ));
        assert!(matches!(
            SCHEME.verify_at(&h, BODY, &secrets, AT - 301),
            Err(SignatureError::Expired { .. })
        ));
        let other_time = request(SIGNATURE, "1614265331");
        assert_eq!(
            SCHEME.verify_at(&other_time, BODY, &secrets, AT),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
        assert!(matches!(
            SCHEME.verify_at(&request("v1,not base64!", "1614265330"), BODY, &secrets, AT),
            Err(SignatureError::Malformed { .. })
        ));
        assert_eq!(
            SCHEME.verify_at(
                &headers(&[("webhook-signature", SIGNATURE)]),
                BODY,
                &secrets,
                AT
            ),
            Err(SignatureError::Missing("webhook-id"))
        );
    }

    #[test]
    fn secrets_are_base64_with_or_without_prefix_or_padding() {
        assert_eq!(
            parse_secrets("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").map(|s| s.len()),
            Ok(1)
        );
        assert_eq!(parse_secrets("whsec_dGVzdA").map(|s| s.len()), Ok(1));
        let err = parse_secrets("whsec_a, whsec_!!").unwrap_err();
        assert!(err.contains("secret 1") && !err.contains("!!"), "{err}");
    }
}
