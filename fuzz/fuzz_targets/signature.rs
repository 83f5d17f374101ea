//! Signature headers: arbitrary header values never panic and never verify unless they carry
//! the body's true tag; a tag made with the secret always verifies, in either header.
//!
//! Input: one byte choosing the provider, one byte giving the header value's length, the header
//! value, then the body.
#![no_main]

use hookstream::providers::BUILT_IN;
use hookstream::signature::{HeaderSource, Secret, SignatureError, SignatureScheme};

struct Headers<'a>(Vec<(&'static str, &'a [u8])>);

impl HeaderSource for Headers<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [which, len, rest @ ..] = data else { return };
    let provider = BUILT_IN[*which as usize % BUILT_IN.len()];
    let (value, body) = rest.split_at((*len as usize).min(rest.len()));
    let scheme = provider.signature();
    let SignatureScheme::Hmac(hmac) = scheme else {
        panic!("the built-ins sign with an HMAC of the body")
    };
    let secrets = [Secret::new("old-secret"), Secret::new("current-secret")];
    let true_tag = scheme.sign_value(body, &secrets[1]);

    for &header in hmac.headers {
        let verdict = scheme.verify(&Headers(vec![(header, value)]), body, &secrets);
        if verdict.is_ok() {
            // Only the true tag (in some accepted spelling) can verify.
            let other = scheme.sign_value(body, &secrets[0]);
            let given = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
            let accepted = [true_tag.to_ascii_lowercase(), other.to_ascii_lowercase()];
            assert!(
                accepted.contains(&given),
                "a header that is not the body's tag verified"
            );
        } else if value.is_empty() || value.iter().all(u8::is_ascii_whitespace) {
            assert!(!matches!(verdict, Err(SignatureError::Mismatch)));
        }
        let good = Headers(vec![(header, true_tag.as_bytes())]);
        assert!(scheme.verify(&good, body, &secrets).is_ok(), "the true tag verifies");
        // A garbage primary header does not hide a good rotation header.
        let both = Headers(vec![(scheme.primary_header(), value), (header, true_tag.as_bytes())]);
        if header != scheme.primary_header() {
            assert!(scheme.verify(&both, body, &secrets).is_ok());
        }
    }
    assert_eq!(
        scheme.verify(&Headers(vec![]), body, &secrets).err(),
        Some(SignatureError::Missing(scheme.primary_header()))
    );
});
