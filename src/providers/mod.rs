//! Provider-specific rules, one module per provider behind [`Provider`].
//!
//! Nothing outside this module knows a vendor's field names, headers or quirks. The HTTP layer
//! looks a provider up by name in a [`Registry`]; the ingest pipeline calls [`normalize`], which
//! asks the provider for what is its own ([`Provider::extract`]) and finishes the record the same
//! way for every provider.
//!
//! The three built-in providers are code ([`BUILT_IN`]): their quirks are what code is for. Any
//! other source is defined in configuration ([`configured`]): a signature scheme and a field
//! mapping, or a preset (Standard Webhooks, GitHub, Stripe).

pub mod configured;
mod json;
pub mod lasoexperience;
pub mod livesession;
mod registry;
pub mod seismic;

pub use registry::{DefinitionError, Registry};

use crate::event::{Client, Geo, User, WebhookEvent};
use crate::signature::{SignatureScheme, VerifiedBody};
use json::Flattener;
use serde_json::{Map, Value};

/// The providers written in code. Adding one means one new module and one line here (plus its
/// symbol in the schema's `Provider` enum, which a test of `crate::avro` checks).
pub static BUILT_IN: &[&dyn Provider] = &[
    &livesession::LiveSession,
    &lasoexperience::LasoExperience,
    &seismic::Seismic,
];

/// Looks a built-in provider up by name (a [`Registry`] knows the configured ones too).
pub fn built_in(name: &str) -> Option<&'static dyn Provider> {
    BUILT_IN.iter().copied().find(|p| p.name() == name)
}

/// What a provider reads of one delivery: the parsed body, and the request headers it asked for
/// ([`Provider::request_headers`]), which dead letters keep so that a replay reads them too.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The exact body received.
    pub raw: &'a str,
    pub body: &'a Map<String, Value>,
    /// `(lowercase name, value)` of each header the provider names that was present.
    pub headers: &'a [(String, String)],
}

impl<'a> Request<'a> {
    /// A request of `body` alone (no raw text, no headers), as the built-ins' tests make them.
    #[cfg(test)]
    pub(crate) fn of(body: &'a Map<String, Value>) -> Self {
        Request {
            raw: "",
            body,
            headers: &[],
        }
    }

    /// The value of header `name` (lowercase), when it was present.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What identifies a provider: its name, how it signs, where its event id is.
#[derive(Debug)]
pub struct Spec {
    /// Lowercase name: route segment (`/webhooks/{name}`), topic part, config key, and the
    /// record's `provider_name` (and its `provider` enum symbol, for a built-in).
    pub name: &'static str,
    /// Which headers carry the signature and how it is encoded.
    pub signature: SignatureScheme,
    /// The top-level field holding the event id, with other spellings the provider uses.
    pub event_id_keys: &'static [&'static str],
}

/// A webhook source.
pub trait Provider: Send + Sync + 'static {
    fn spec(&self) -> &Spec;

    fn name(&self) -> &'static str {
        self.spec().name
    }

    fn signature(&self) -> SignatureScheme {
        self.spec().signature
    }

    /// Request headers the provider reads besides its signature (lowercase): captured with the
    /// body, and kept with a dead letter.
    fn request_headers(&self) -> &[&'static str] {
        &[]
    }

    /// The event id of a body that may not normalize, when it can be read (a dead letter's key).
    fn event_id(&self, request: &Request<'_>) -> Option<String> {
        json::event_id(request.body, self.spec().event_id_keys).ok()
    }

    /// What deduplication keys on instead of the event id, when the id (or the event name) comes
    /// from something the signature does not cover: a resend with it changed must still be a
    /// duplicate. `None`: the event id.
    fn dedupe_key(&self, _request: &Request<'_>) -> Option<String> {
        None
    }

    /// The request header an event id is read from, when the provider reads it from one (a
    /// configured `header:` source): a sender who makes a new event sets a new value there.
    fn event_id_header(&self) -> Option<&'static str> {
        None
    }

    /// Whether deliveries are deduplicated on the raw body's digest ([`Provider::dedupe_key`]):
    /// a new event then needs a body of its own, not only a new id header.
    fn dedupes_on_body(&self) -> bool {
        false
    }

    /// Recognizes a URL-verification handshake (or a ping) and returns the reply. A handshake is
    /// never an event and never reaches Kafka. Most providers have none.
    fn handshake(&self, _request: &Request<'_>) -> Result<Option<Handshake>, PayloadError> {
        Ok(None)
    }

    /// Whether a handshake may arrive without a signature header. Only the challenge is echoed
    /// for such a request; everything else still needs a valid signature.
    fn accepts_unsigned_handshake(&self) -> bool {
        false
    }

    /// Reads what the provider's payload says about the event; [`normalize`] finishes the
    /// record.
    fn extract(&self, request: &Request<'_>) -> Result<Extracted, PayloadError>;

    /// The event names (as normalized, so topic parts) the provider documents: the topics
    /// `hookstream topics create` creates ahead of time. Never all of them: every provider may
    /// send names not listed here, whose topics are created at their first event.
    fn known_event_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether the provider is one of [`BUILT_IN`], with a symbol of its own in the schema's
    /// `Provider` enum (a configured one is written as `other`).
    fn is_built_in(&self) -> bool {
        true
    }
}

/// Every request header `provider` reads: its signature scheme's ([`SignatureScheme::header_names`]),
/// then its mapping's ([`Provider::request_headers`]), each once.
pub fn expected_headers(provider: &dyn Provider) -> Vec<&'static str> {
    let mut names = provider.signature().header_names();
    for &name in provider.request_headers() {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name);
        }
    }
    names
}

/// What a provider reads out of its payload: everything of the record that is the provider's own.
#[derive(Debug)]
pub struct Extracted {
    pub event_id: String,
    /// snake_case, as used in the topic.
    pub event_name: String,
    /// Epoch milliseconds, or why the payload has no usable time (`received_at` is used then,
    /// with a warning); `None` when the provider has no event time at all (`received_at`).
    pub event_time: Option<Result<i64, &'static str>>,
    /// The person: the Kafka key.
    pub subject_id: Option<String>,
    pub session_id: Option<String>,
    pub account_id: Option<String>,
    pub source_id: Option<String>,
    pub user: User,
    pub geo: Geo,
    pub client: Client,
    pub attributes: Flattener,
    /// What the provider noticed but did not treat as fatal.
    pub warnings: Vec<String>,
}

/// Turns an authenticated payload into the unified record: the provider's [`Extracted`] fields,
/// then what every record gets — the provider, `received_at`, the event time (or `received_at`
/// and a warning), bounded attributes and warnings, and the raw body.
pub fn normalize(
    provider: &dyn Provider,
    payload: &VerifiedPayload<'_>,
    headers: &[(String, String)],
    received_at: i64,
) -> Result<WebhookEvent, PayloadError> {
    let request = payload.request(headers)?;
    let x = provider.extract(&request)?;
    let mut warnings = Vec::with_capacity(x.warnings.len() + 1);
    let event_time = match x.event_time {
        None => received_at,
        Some(Ok(time)) => time,
        Some(Err(why)) => {
            warnings.push(format!("event_time: {why}; used received_at"));
            received_at
        }
    };
    warnings.extend(x.warnings);
    let attributes = x.attributes.finish(&mut warnings);
    Ok(WebhookEvent {
        event_id: x.event_id,
        provider: provider.name(),
        event_name: x.event_name,
        event_time,
        received_at,
        subject_id: x.subject_id,
        session_id: x.session_id,
        account_id: x.account_id,
        source_id: x.source_id,
        user: x.user.non_empty(),
        geo: x.geo.non_empty(),
        client: x.client.non_empty(),
        attributes,
        warnings,
        raw_payload: payload.raw().to_string(),
        dedupe_key: provider.dedupe_key(&request),
    })
}

/// The reply to a URL-verification handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// `200 text/plain` with this body.
    PlainText(String),
    /// `200 application/json` with `{"challenge": …}`.
    JsonChallenge(String),
    /// A signed "are you there?" (GitHub's `ping`): `200 {"status":"ping"}`, nothing written.
    Ping,
}

/// The body is valid JSON of the wrong shape. `field` is the dotted path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct PayloadError {
    pub field: String,
    pub problem: String,
}

impl PayloadError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The body is not a JSON document at all.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("the body is not valid UTF-8 (first bad byte at offset {})", .0.valid_up_to())]
    Utf8(#[source] std::str::Utf8Error),
    #[error("the body is not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
}

/// A parsed body: either authenticated ([`VerifiedPayload`]) or not yet.
#[derive(Debug)]
pub struct ParsedBody<'a> {
    raw: &'a str,
    json: Value,
}

impl<'a> ParsedBody<'a> {
    /// Parses bytes as a UTF-8 JSON document.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, JsonError> {
        let raw = std::str::from_utf8(bytes).map_err(JsonError::Utf8)?;
        let json = serde_json::from_str(raw).map_err(JsonError::Syntax)?;
        Ok(Self { raw, json })
    }

    /// The top-level object, or the error every provider reports for any other JSON value.
    pub fn object(&self) -> Result<&Map<String, Value>, PayloadError> {
        self.json
            .as_object()
            .ok_or_else(|| PayloadError::new("body", "expected a JSON object"))
    }

    /// What a provider reads: the body and the captured `headers`.
    pub fn request<'s>(
        &'s self,
        headers: &'s [(String, String)],
    ) -> Result<Request<'s>, PayloadError> {
        Ok(Request {
            raw: self.raw,
            body: self.object()?,
            headers,
        })
    }
}

/// A payload whose signature was verified and whose body parsed as JSON. Only
/// [`VerifiedPayload::parse`] makes one, and it needs a [`VerifiedBody`].
#[derive(Debug)]
pub struct VerifiedPayload<'a>(ParsedBody<'a>);

impl<'a> VerifiedPayload<'a> {
    pub fn parse(body: VerifiedBody<'a>) -> Result<Self, JsonError> {
        ParsedBody::parse(body.bytes()).map(Self)
    }

    /// The exact body received.
    pub fn raw(&self) -> &'a str {
        self.0.raw
    }

    pub fn object(&self) -> Result<&Map<String, Value>, PayloadError> {
        self.0.object()
    }

    /// What a provider reads: the body and the captured `headers`.
    pub fn request<'s>(
        &'s self,
        headers: &'s [(String, String)],
    ) -> Result<Request<'s>, PayloadError> {
        self.0.request(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_names_are_unique_and_lowercase() {
        let mut names: Vec<_> = BUILT_IN.iter().map(|p| p.name()).collect();
        assert!(names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_lowercase())));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), BUILT_IN.len());
    }

    #[test]
    fn known_event_names_are_the_names_the_documented_events_normalize_to() {
        use crate::naming::snake_case;
        for provider in BUILT_IN {
            let known = provider.known_event_names();
            assert!(!known.is_empty(), "{}", provider.name());
            for name in known {
                assert_eq!(snake_case(name), *name, "{}", provider.name());
            }
        }
        let livesession = livesession::LiveSession.known_event_names();
        for vendor in [
            "JSError",
            "NetError",
            "ErrorClick",
            "RageClick",
            "Custom",
            "Error",
        ] {
            assert!(
                livesession.contains(&snake_case(vendor).as_str()),
                "{vendor}"
            );
        }
        let seismic = seismic::Seismic.known_event_names();
        for version in [
            "livesend-session-summary-v3",
            "livesend-session-summary-enriched-v3",
            "email-v3",
            "email-enriched-v3",
            "livesend-summary-v2",
            "LivesendExpiredV1",
        ] {
            let name = seismic::event_name_from_version(version);
            assert!(seismic.contains(&name.as_str()), "{version}");
        }
    }

    #[test]
    fn invalid_utf8_and_non_objects_are_told_apart() {
        assert!(matches!(
            ParsedBody::parse(b"{\"a\":\"\xff\"}"),
            Err(JsonError::Utf8(e)) if e.valid_up_to() == 6
        ));
        assert!(matches!(ParsedBody::parse(b"{"), Err(JsonError::Syntax(_))));
        let array = ParsedBody::parse(b"[1]").expect("valid JSON");
        assert_eq!(array.object().unwrap_err().field, "body");
    }
}
