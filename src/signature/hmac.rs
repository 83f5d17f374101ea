//! An HMAC tag in a header: the built-in providers' scheme, and the configurable `hmac` one.

use super::{within_tolerance, HeaderSource, Secret, SignatureError};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::borrow::Cow;
use std::time::Duration;

/// The hash under the HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

/// How the tag is written into the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Standard alphabet, with padding.
    Base64,
    /// Hexadecimal; either case is accepted, lowercase is produced.
    Hex,
}

/// One piece of a signed-content template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Text as written.
    Text(&'static str),
    /// The raw request body.
    Body,
    /// A request header's value (the request is refused when it is missing).
    Header(&'static str),
}

/// What the HMAC is computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signed {
    /// The raw request body.
    Body,
    /// A template over the body and named headers, e.g. `{header:x-timestamp}.{body}`.
    Template(&'static [Part]),
}

/// An HMAC tag in a header.
#[derive(Clone, Copy, Debug)]
pub struct HmacScheme {
    /// Header names, primary first. A request is authentic when a tag in *any* of them matches
    /// *any* configured secret (Seismic sends a second header signed with the previous secret).
    pub headers: &'static [&'static str],
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    /// Written before the encoded tag, e.g. `sha256=`; empty for none.
    pub prefix: &'static str,
    pub signed: Signed,
    /// A header holding a signed Unix timestamp (seconds), and how far from now it may be.
    pub timestamp: Option<(&'static str, Duration)>,
}

impl Algorithm {
    fn output_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The tag of `content` under `secret`.
    pub(super) fn tag(self, secret: &Secret, content: &[u8]) -> Vec<u8> {
        fn tag<M: Mac + hmac::digest::KeyInit>(key: &[u8], content: &[u8]) -> Vec<u8> {
            // HMAC accepts keys of any length, so this cannot fail.
            match <M as hmac::digest::KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(content);
                    mac.finalize().into_bytes().to_vec()
                }
                Err(_) => unreachable!("HMAC accepts keys of every length"),
            }
        }
        match self {
            Algorithm::Sha1 => tag::<Hmac<sha1::Sha1>>(secret.bytes(), content),
            Algorithm::Sha256 => tag::<Hmac<sha2::Sha256>>(secret.bytes(), content),
            Algorithm::Sha512 => tag::<Hmac<sha2::Sha512>>(secret.bytes(), content),
        }
    }

    /// Whether `expected` is the tag of `content` under `secret`, compared in constant time.
    pub(super) fn matches(self, secret: &Secret, content: &[u8], expected: &[u8]) -> bool {
        fn check<M: Mac + hmac::digest::KeyInit>(
            key: &[u8],
            content: &[u8],
            expected: &[u8],
        ) -> bool {
            match <M as hmac::digest::KeyInit>::new_from_slice(key) {
                Ok(mut mac) => {
                    mac.update(content);
                    // `verify_slice` compares in constant time.
                    mac.verify_slice(expected).is_ok()
                }
                Err(_) => false,
            }
        }
        match self {
            Algorithm::Sha1 => check::<Hmac<sha1::Sha1>>(secret.bytes(), content, expected),
            Algorithm::Sha256 => check::<Hmac<sha2::Sha256>>(secret.bytes(), content, expected),
            Algorithm::Sha512 => check::<Hmac<sha2::Sha512>>(secret.bytes(), content, expected),
        }
    }
}

impl Encoding {
    fn encode(self, tag: &[u8]) -> String {
        match self {
            Encoding::Base64 => BASE64.encode(tag),
            Encoding::Hex => hex::encode(tag),
        }
    }

    fn decode(self, value: &[u8]) -> Option<Vec<u8>> {
        match self {
            Encoding::Base64 => BASE64.decode(value).ok(),
            Encoding::Hex => hex::decode(value).ok(),
        }
    }
}

impl HmacScheme {
    /// What a well-formed header value is, for the error that says it is not.
    fn expected(&self) -> &'static str {
        match (self.encoding, self.algorithm) {
            (Encoding::Hex, Algorithm::Sha1) => "a hex-encoded HMAC-SHA1 signature",
            (Encoding::Hex, Algorithm::Sha256) => "a hex-encoded HMAC-SHA256 signature",
            (Encoding::Hex, Algorithm::Sha512) => "a hex-encoded HMAC-SHA512 signature",
            (Encoding::Base64, Algorithm::Sha1) => "a base64-encoded HMAC-SHA1 signature",
            (Encoding::Base64, Algorithm::Sha256) => "a base64-encoded HMAC-SHA256 signature",
            (Encoding::Base64, Algorithm::Sha512) => "a base64-encoded HMAC-SHA512 signature",
        }
    }

    /// A tag written in a header, or `None` when it is not one.
    fn decode(&self, written: &[u8]) -> Option<Vec<u8>> {
        let encoded = written.strip_prefix(self.prefix.as_bytes())?;
        let tag = self.encoding.decode(encoded)?;
        (tag.len() == self.algorithm.output_len()).then_some(tag)
    }

    /// The bytes the HMAC is over, or the header the template needs that is missing.
    fn content<'a>(
        &self,
        headers: &dyn HeaderSource,
        body: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, SignatureError> {
        let Signed::Template(parts) = self.signed else {
            return Ok(Cow::Borrowed(body));
        };
        let mut content = Vec::with_capacity(body.len() + 64);
        for part in parts {
            match part {
                Part::Text(text) => content.extend_from_slice(text.as_bytes()),
                Part::Body => content.extend_from_slice(body),
                Part::Header(name) => content
                    .extend_from_slice(headers.header(name).ok_or(SignatureError::Missing(name))?),
            }
        }
        Ok(Cow::Owned(content))
    }

    pub(super) fn verify(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        secrets: &[Secret],
        now: i64,
    ) -> Result<(), SignatureError> {
        if let Some((header, tolerance)) = self.timestamp {
            let written = headers
                .header(header)
                .ok_or(SignatureError::Missing(header))?;
            let timestamp = std::str::from_utf8(written)
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok())
                .ok_or(SignatureError::Malformed {
                    header,
                    expected: "a Unix timestamp in seconds",
                })?;
            within_tolerance(timestamp, now, tolerance)?;
        }
        let mut any_present = false;
        let mut any_well_formed = false;
        let mut first_malformed = None;
        let mut content = None;
        for &name in self.headers {
            let Some(value) = headers.header(name) else {
                continue;
            };
            any_present = true;
            // Several signatures may share the header (space- or comma-separated).
            let mut candidates = value
                .split(|b| *b == b' ' || *b == b',')
                .filter(|c| !c.is_empty())
                .peekable();
            if candidates.peek().is_none() {
                first_malformed.get_or_insert(name);
            }
            for candidate in candidates {
                let Some(tag) = self.decode(candidate) else {
                    first_malformed.get_or_insert(name);
                    continue;
                };
                any_well_formed = true;
                if content.is_none() {
                    content = Some(self.content(headers, body)?);
                }
                let signed = content.as_deref().unwrap_or(body);
                if secrets
                    .iter()
                    .any(|secret| self.algorithm.matches(secret, signed, &tag))
                {
                    return Ok(());
                }
            }
        }
        match (any_present, any_well_formed, first_malformed) {
            (false, _, _) => Err(SignatureError::Missing(
                self.headers.first().copied().unwrap_or("signature"),
            )),
            (true, false, Some(header)) => Err(SignatureError::Malformed {
                header,
                expected: self.expected(),
            }),
            _ => Err(SignatureError::Mismatch),
        }
    }

    /// The headers a sender sets: the signature (and the timestamp, when one is signed). Other
    /// headers a template names are signed as absent.
    pub(super) fn sign(
        &self,
        body: &[u8],
        secret: &Secret,
        now: i64,
    ) -> Vec<(&'static str, String)> {
        let timestamp = self.timestamp.map(|(header, _)| (header, now.to_string()));
        let content: Cow<[u8]> = match self.signed {
            Signed::Body => Cow::Borrowed(body),
            Signed::Template(parts) => {
                let mut content = Vec::with_capacity(body.len() + 64);
                for part in parts {
                    match part {
                        Part::Text(text) => content.extend_from_slice(text.as_bytes()),
                        Part::Body => content.extend_from_slice(body),
                        Part::Header(name) => {
                            if let Some((_, value)) = timestamp
                                .as_ref()
                                .filter(|(h, _)| h.eq_ignore_ascii_case(name))
                            {
                                content.extend_from_slice(value.as_bytes());
                            }
                        }
                    }
                }
                Cow::Owned(content)
            }
        };
        let tag = self.algorithm.tag(secret, &content);
        let mut headers = vec![(
            self.headers.first().copied().unwrap_or("signature"),
            format!("{}{}", self.prefix, self.encoding.encode(&tag)),
        )];
        headers.extend(timestamp);
        headers
    }
}

/// Parses a signed-content template — `{body}`, `{header:NAME}` and text around them — into
/// parts that live as long as the process ([`super::interned`]).
pub fn parse_template(template: &str) -> Result<&'static [Part], String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .ok_or_else(|| format!("{template:?}: a '{{' is not closed"))?;
        if start > 0 {
            parts.push(Part::Text(super::interned::str(&rest[..start])));
        }
        let name = &rest[start + 1..end];
        parts.push(match name.strip_prefix("header:") {
            Some(header) if super::is_header_name(header.trim()) => {
                Part::Header(super::interned::str(&header.trim().to_ascii_lowercase()))
            }
            Some(_) => {
                return Err(format!(
                    "{template:?}: {{header:…}} does not name a valid header"
                ))
            }
            None if name == "body" => Part::Body,
            None => {
                return Err(format!(
                    "{template:?}: {{{name}}} is neither {{body}} nor {{header:NAME}}"
                ))
            }
        });
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(super::interned::str(rest)));
    }
    if !parts.contains(&Part::Body) {
        return Err(format!("{template:?} does not sign the body ({{body}})"));
    }
    Ok(super::interned::template(parts))
}

#[cfg(test)]
mod tests {
    use super::super::tests::headers;
    use super::super::SignatureScheme;
    use super::*;

    const GITHUB: SignatureScheme = SignatureScheme::Hmac(HmacScheme {
        headers: &["x-hub-signature-256"],
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: "sha256=",
        signed: Signed::Body,
        timestamp: None,
    });

    #[test]
    fn github_s_documented_example_verifies_and_a_tampered_one_does_not() {
        // docs.github.com, "Validating webhook deliveries": secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let secret = [Secret::new("It's a Secret to Everybody")];
        let h = headers(&[(
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        )]);
        assert!(GITHUB.verify(&h, b"Hello, World!", &secret).is_ok());
        assert_eq!(
            GITHUB.verify(&h, b"Hello, World?", &secret).unwrap_err(),
            SignatureError::Mismatch
        );
        assert_eq!(
            GITHUB.sign_value(b"Hello, World!", &secret[0]),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn several_signatures_in_one_header_and_other_algorithms() {
        let secret = Secret::new("key");
        for algorithm in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            for encoding in [Encoding::Hex, Encoding::Base64] {
                let scheme = HmacScheme {
                    headers: &["sig"],
                    algorithm,
                    encoding,
                    prefix: "",
                    signed: Signed::Body,
                    timestamp: None,
                };
                let good = encoding.encode(&algorithm.tag(&secret, b"body"));
                let bad = encoding.encode(&algorithm.tag(&Secret::new("old"), b"body"));
                for value in [format!("{bad} {good}"), format!("{bad},{good}")] {
                    let h = headers(&[("sig", &value)]);
                    assert!(
                        scheme
                            .verify(&h, b"body", std::slice::from_ref(&secret), 0)
                            .is_ok(),
                        "{value}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_template_signs_headers_and_a_timestamp_is_checked() {
        static PARTS: [Part; 3] = [Part::Header("x-ts"), Part::Text("."), Part::Body];
        let scheme = HmacScheme {
            headers: &["sig"],
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            prefix: "v1=",
            signed: Signed::Template(&PARTS),
            timestamp: Some(("x-ts", Duration::from_secs(300))),
        };
        let secret = Secret::new("k");
        let signed = scheme.sign(b"{}", &secret, 1_000_000);
        let pairs: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(scheme
            .verify(
                &headers(&pairs),
                b"{}",
                std::slice::from_ref(&secret),
                1_000_100
            )
            .is_ok());
        assert!(matches!(
            scheme.verify(
                &headers(&pairs),
                b"{}",
                std::slice::from_ref(&secret),
                1_000_400
            ),
            Err(SignatureError::Expired { skew_secs: 400, .. })
        ));
        let tampered: Vec<(&str, &str)> = vec![(pairs[0].0, pairs[0].1), ("x-ts", "1000001")];
        assert_eq!(
            scheme.verify(&headers(&tampered), b"{}", &[secret], 1_000_000),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
    }

    #[test]
    fn templates_parse_or_say_why_not() {
        let parts = parse_template("{header:X-Timestamp}.{body}").expect("parses");
        assert_eq!(
            parts,
            [Part::Header("x-timestamp"), Part::Text("."), Part::Body]
        );
        assert!(parse_template("{header:x}").unwrap_err().contains("{body}"));
        assert!(parse_template("{body").unwrap_err().contains("not closed"));
        assert!(parse_template("{nope}.{body}")
            .unwrap_err()
            .contains("{nope}"));
    }
}
