//! What every fuzz target checks: no panics, and the invariants hookstream promises for any input.

use hookstream::event::WebhookEvent;
use hookstream::naming;
use hookstream::providers::{self, Handshake, Provider, VerifiedPayload};
use hookstream::signature::{HeaderSource, Secret};

const SECRET: &str = "fuzz-secret";
/// Longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

struct OneHeader<'a>(&'static str, &'a [u8]);

impl HeaderSource for OneHeader<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        name.eq_ignore_ascii_case(self.0).then_some(self.1)
    }
}

/// `body` through `provider` exactly as a signed request would go: verify, parse, handshake or
/// normalize, encode. Panics when an invariant does not hold.
pub fn check_provider(name: &str, body: &[u8]) {
    let provider = providers::built_in(name).expect("built-in provider");
    let scheme = provider.signature();
    let secret = Secret::new(SECRET);
    let tag = scheme.sign_value(body, &secret);
    let headers = OneHeader(scheme.primary_header(), tag.as_bytes());
    let verified = scheme
        .verify(&headers, body, &[secret])
        .expect("a body signed with the secret verifies");
    let Ok(payload) = VerifiedPayload::parse(verified) else {
        return;
    };
    check_payload(provider, &payload, &[], body);
}

/// A verified payload through handshake or normalization: panics when an invariant does not
/// hold.
pub fn check_payload(
    provider: &dyn Provider,
    payload: &VerifiedPayload<'_>,
    headers: &[(String, String)],
    body: &[u8],
) {
    let Ok(request) = payload.request(headers) else {
        return;
    };
    match provider.handshake(&request) {
        Ok(Some(Handshake::PlainText(c) | Handshake::JsonChallenge(c))) => {
            assert!((1..=1024).contains(&c.len()), "challenge length {}", c.len());
            return;
        }
        Ok(Some(Handshake::Ping)) => return,
        Ok(None) => {}
        Err(_) => return,
    }
    let Ok(event) = providers::normalize(provider, payload, headers, 1_700_000_000_000) else {
        return;
    };
    check_event(provider, &event, body);
}

/// What every normalized record promises, whatever the input.
pub fn check_event(provider: &dyn Provider, event: &WebhookEvent, body: &[u8]) {
    assert!(!event.event_id.is_empty() && event.event_id.len() <= 256);
    assert_valid_event_name(&event.event_name);
    let topic = naming::topic_name("webhooks", provider.name(), &event.event_name);
    assert_valid_topic(&topic);
    assert!(event.attributes.len() <= 256, "{} attributes", event.attributes.len());
    for (key, value) in &event.attributes {
        assert!(key.len() <= 256, "attribute key of {} bytes", key.len());
        if let hookstream::event::Attribute::String(s) = value {
            assert!(s.len() <= 4096, "attribute value of {} bytes", s.len());
        }
    }
    assert!(event.warnings.len() <= 32, "{} warnings", event.warnings.len());
    assert_eq!(event.raw_payload.as_bytes(), body);
    hookstream::avro::encode_datum(event).expect("every normalized record matches the schema");
}

pub fn assert_valid_event_name(name: &str) {
    assert!(!name.is_empty(), "empty event name");
    assert!(name.chars().count() <= naming::MAX_EVENT_NAME_LEN, "{name:?}");
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'),
        "{name:?}"
    );
}

pub fn assert_valid_topic(topic: &str) {
    assert!(topic.len() <= MAX_TOPIC_LEN, "topic of {} bytes", topic.len());
    assert!(
        topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
        "{topic:?}"
    );
}
