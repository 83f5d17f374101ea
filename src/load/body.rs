//! Request bodies for the load generator: a provider's golden fixture with a unique event id
//! spliced in, signed the way the provider signs.

use crate::providers::Provider;
use crate::signature::{Secret, SignatureScheme};

/// A golden fixture shipped in the binary.
struct Fixture {
    provider: &'static str,
    body: &'static str,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        provider: "livesession",
        body: include_str!("../../tests/fixtures/livesession/js_error.json"),
    },
    Fixture {
        provider: "lasoexperience",
        body: include_str!("../../tests/fixtures/lasoexperience/user_login.json"),
    },
    Fixture {
        provider: "seismic",
        body: include_str!("../../tests/fixtures/seismic/livesend_session_summary_v3.json"),
    },
];

/// Where a body's event id value is in its text (between the quotes), found through the
/// provider's own reading of the id: replacing that span gives the same body with another id,
/// every other byte as it was.
pub(crate) fn event_id_span(
    provider: &dyn Provider,
    text: &str,
) -> Result<std::ops::Range<usize>, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the body is not JSON: {e}"))?;
    let id = json
        .as_object()
        .and_then(|body| {
            provider.event_id(&crate::providers::Request {
                raw: text,
                body,
                headers: &[],
            })
        })
        .ok_or_else(|| format!("the body has no {} event id", provider.name()))?;
    let quoted = serde_json::to_string(&id).map_err(|e| e.to_string())?;
    let mut found = text.match_indices(&quoted);
    match (found.next(), found.next()) {
        (Some((start, _)), None) => Ok(start + 1..start + quoted.len() - 1),
        _ => Err(format!(
            "the event id {quoted} appears more than once in the body, or not as a string: replace it by hand"
        )),
    }
}

/// A fixture's text split around its event id value, so a fresh id costs one concatenation.
pub(crate) struct BodyTemplate {
    before: &'static str,
    after: &'static str,
    /// The provider's own scheme, or the one given with `--sign-as`.
    scheme: SignatureScheme,
    secret: Secret,
    /// Send a well-formed signature made with a wrong key (the 401 baseline).
    wrong_signature: bool,
}

impl BodyTemplate {
    /// `scheme`: how to sign (`None`: as the provider does).
    pub(crate) fn new(
        provider: &'static dyn Provider,
        scheme: Option<SignatureScheme>,
        secret: Secret,
        wrong_signature: bool,
    ) -> Result<Self, String> {
        let fixture = FIXTURES
            .iter()
            .find(|f| f.provider == provider.name())
            .ok_or_else(|| format!("no load fixture for provider {}", provider.name()))?;
        let id = event_id_span(provider, fixture.body)?;
        Ok(Self {
            before: &fixture.body[..id.start],
            after: &fixture.body[id.end..],
            scheme: scheme.unwrap_or_else(|| provider.signature()),
            secret,
            wrong_signature,
        })
    }

    /// The body with `id` as its event id.
    pub(crate) fn body(&self, id: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.before.len() + id.len() + self.after.len());
        body.extend_from_slice(self.before.as_bytes());
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(self.after.as_bytes());
        body
    }

    /// The signature headers for `body` (whose event id is `id`), signed now.
    pub(crate) fn signature(&self, body: &[u8], id: &str) -> Vec<(&'static str, String)> {
        let now = crate::signature::now_secs();
        if self.wrong_signature {
            // Well-formed, so the server does the full HMAC work before saying 401.
            let wrong = Secret::from_bytes(b"not-the-secret".to_vec());
            return self.scheme.sign_at(body, &wrong, now, id);
        }
        self.scheme.sign_at(body, &self.secret, now, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{self, VerifiedPayload};

    struct Signed(Vec<(&'static str, String)>);
    impl crate::signature::HeaderSource for Signed {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn every_provider_gets_a_signed_body_with_the_given_id() {
        for provider in providers::BUILT_IN {
            let secret = Secret::new("s");
            let template =
                BodyTemplate::new(*provider, None, secret.clone(), false).expect("fixture");
            let body = template.body("load-42");
            let headers = Signed(template.signature(&body, "load-42"));
            let verified = provider
                .signature()
                .verify(&headers, &body, &[secret])
                .expect("verifies");
            let payload = VerifiedPayload::parse(verified).expect("JSON");
            let event = providers::normalize(*provider, &payload, &[], 0).expect("normalizes");
            assert_eq!(event.event_id, "load-42", "{}", provider.name());
        }
    }

    #[test]
    fn a_wrong_signature_is_well_formed_but_does_not_verify() {
        let provider = providers::built_in("livesession").expect("provider");
        let secret = Secret::new("s");
        let template = BodyTemplate::new(provider, None, secret.clone(), true).expect("fixture");
        let body = template.body("x");
        let headers = Signed(template.signature(&body, "x"));
        assert_eq!(
            provider
                .signature()
                .verify(&headers, &body, &[secret])
                .unwrap_err(),
            crate::signature::SignatureError::Mismatch
        );
    }

    #[test]
    fn signed_as_standard_webhooks_the_fixture_verifies_with_the_id_as_message_id() {
        let provider = providers::built_in("livesession").expect("provider");
        let scheme = SignatureScheme::StandardWebhooks {
            tolerance: std::time::Duration::from_secs(300),
        };
        let secrets = scheme
            .parse_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("a whsec_ secret");
        let template =
            BodyTemplate::new(provider, Some(scheme), secrets[0].clone(), false).expect("fixture");
        let body = template.body("load-7");
        let headers = Signed(template.signature(&body, "load-7"));
        assert_eq!(
            crate::signature::HeaderSource::header(&headers, "webhook-id"),
            Some(&b"load-7"[..])
        );
        scheme
            .verify(&headers, &body, &secrets)
            .expect("verifies as Standard Webhooks");
    }
}
