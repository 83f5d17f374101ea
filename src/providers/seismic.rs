//! Seismic (LiveSend) webhooks.
//!
//! - Signature: `x-seismic-signature`, hex HMAC-SHA256 of the raw body. During secret rotation
//!   `x-seismic-signature-old` carries the signature made with the previous secret; either may match.
//! - Handshake: `{"type":"verification","challenge":…}` (answered as text) or an envelope with
//!   `version: "WebhookChallengeV1"` and `data.challenge` (answered as JSON). Whether Seismic signs
//!   the handshake is undocumented: a signed one must verify, an unsigned one is still answered,
//!   because echoing a short, strictly shaped token discloses nothing and produces nothing.
//! - Event: envelope `version` without its version suffix (`livesend-session-summary-v3` →
//!   `livesend_session_summary`); the full `version` is kept in `attributes["version"]`.
//! - Id: envelope `id`. Time: `occurredAt` (ISO-8601).
//! - Person: first non-empty of `data.UserId`, `data.Email`, `data.Participants[].Email`,
//!   `data.SessionId`; emails lowercased and trimmed.
//! - Keys are PascalCase in session summaries and camelCase in `email-v3`: both are read.
//! - `0001-01-01T00:00:00[Z]` is .NET's `DateTime.MinValue` and means "none"; top-level
//!   `SessionEndedAt` may be `MM/dd/yyyy HH:mm:ss` (UTC).

use super::json::{self, Flattener};
use super::{Extracted, Handshake, PayloadError, Provider, Request, Spec};
use crate::event::{Attribute, Client, Geo, User};
use crate::naming::snake_case;
use crate::signature::{Encoding, SignatureScheme};
use chrono::{DateTime, Datelike, NaiveDateTime};
use serde_json::{Map, Value};

pub const SIGNATURE_HEADER: &str = "x-seismic-signature";
pub const ROTATION_SIGNATURE_HEADER: &str = "x-seismic-signature-old";
/// Longest challenge echoed back.
pub const MAX_CHALLENGE_LEN: usize = 1024;
const CHALLENGE_VERSION: &str = "WebhookChallengeV1";
/// Envelope fields with typed homes (everything else scalar goes to attributes).
const TYPED_ENVELOPE_KEYS: [&str; 5] = ["id", "occurredAt", "tenantId", "data", "version"];

pub struct Seismic;

const SPEC: Spec = Spec {
    name: "seismic",
    signature: SignatureScheme::body_hmac_sha256(
        &[SIGNATURE_HEADER, ROTATION_SIGNATURE_HEADER],
        Encoding::Hex,
    ),
    event_id_keys: &["id"],
};

impl Provider for Seismic {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn known_event_names(&self) -> &'static [&'static str] {
        &[
            "livesend_session_summary",
            "livesend_session_summary_enriched",
            "email",
            "email_enriched",
            "livesend_summary",
            "livesend_expired",
        ]
    }

    fn accepts_unsigned_handshake(&self) -> bool {
        true
    }

    fn handshake(&self, request: &Request<'_>) -> Result<Option<Handshake>, PayloadError> {
        let body = request.body;
        if body.get("type").and_then(Value::as_str) == Some("verification") {
            return challenge(body.get("challenge"), "challenge")
                .map(|c| Some(Handshake::PlainText(c)));
        }
        if body.get("version").and_then(Value::as_str) == Some(CHALLENGE_VERSION) {
            let data = body.get("data").and_then(Value::as_object);
            return challenge(data.and_then(|d| d.get("challenge")), "data.challenge")
                .map(|c| Some(Handshake::JsonChallenge(c)));
        }
        Ok(None)
    }

    fn extract(&self, request: &Request<'_>) -> Result<Extracted, PayloadError> {
        let body = request.body;
        let event_id = json::event_id(body, SPEC.event_id_keys)?;
        let version = json::required_string(body, &["version"], "version")?;
        let event_name = event_name_from_version(&version);
        if event_name.is_empty() {
            return Err(PayloadError::new(
                "version",
                "has no event name before its version suffix",
            ));
        }
        let empty = Map::new();
        let data = match body.get("data") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(d)) => d,
            Some(_) => return Err(PayloadError::new("data", "expected an object")),
        };
        let person = Person::of(data);
        let details = field(data, "ClientDetails").and_then(Value::as_object);
        let mut warnings = Vec::new();
        let attributes = attributes(body, data, &version, &mut warnings);
        Ok(Extracted {
            event_id,
            event_name,
            event_time: Some(
                match body
                    .get("occurredAt")
                    .and_then(Value::as_str)
                    .map(parse_time)
                {
                    Some(Ok(Some(t))) => Ok(t),
                    _ => Err("occurredAt is missing or not a time"),
                },
            ),
            subject_id: person.subject_id(),
            session_id: person.session_id.clone(),
            account_id: json::text(body.get("tenantId")),
            source_id: None,
            user: person.user(),
            geo: geo(details),
            client: client(details),
            attributes,
            warnings,
        })
    }
}

/// Who an event is about, as Seismic says it.
struct Person {
    user_id: Option<String>,
    /// Trimmed and lowercased; `None` when empty.
    email: Option<String>,
    /// The first participant's (the viewer's) email.
    participant_email: Option<String>,
    session_id: Option<String>,
}

impl Person {
    fn of(data: &Map<String, Value>) -> Self {
        let email = |v: Option<&Value>| {
            json::text(v)
                .map(|e| e.trim().to_lowercase())
                .filter(|e| !e.is_empty())
        };
        Self {
            user_id: json::text(field(data, "UserId")),
            email: email(field(data, "Email")),
            participant_email: field(data, "Participants")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .find_map(|p| email(field(p, "Email"))),
            session_id: json::text(field(data, "SessionId")),
        }
    }

    /// The Kafka key: user, else email, else the viewer's email, else the session.
    fn subject_id(&self) -> Option<String> {
        self.user_id
            .clone()
            .or_else(|| self.email.clone())
            .or_else(|| self.participant_email.clone())
            .or_else(|| self.session_id.clone())
    }

    fn user(&self) -> User {
        User {
            id: self.user_id.clone(),
            name: None,
            email: self
                .email
                .clone()
                .or_else(|| self.participant_email.clone()),
        }
    }
}

fn detail(details: Option<&Map<String, Value>>, key: &str) -> Option<String> {
    details.and_then(|d| json::text(field(d, key)))
}

fn geo(details: Option<&Map<String, Value>>) -> Geo {
    let number = |key| details.and_then(|d| json::number(field(d, key)));
    Geo {
        country: detail(details, "Country"),
        region: detail(details, "State"),
        city: detail(details, "City"),
        latitude: number("GeolocationLatitude"),
        longitude: number("GeolocationLongitude"),
        ..Geo::default()
    }
}

fn client(details: Option<&Map<String, Value>>) -> Client {
    Client {
        browser: detail(details, "Browser"),
        browser_version: detail(details, "BrowserVersion"),
        os: detail(details, "OperatingSystem"),
        os_version: detail(details, "OperatingSystemVersion"),
        device_type: detail(details, "DeviceType"),
        ip_address: detail(details, "IpAddress"),
        locale: detail(details, "Locale"),
        ..Client::default()
    }
}

/// The full `version`, then the top-level scalars of the envelope and of `data` as snake_case
/// attributes; `…At` fields become epoch milliseconds.
fn attributes(
    body: &Map<String, Value>,
    data: &Map<String, Value>,
    version: &str,
    warnings: &mut Vec<String>,
) -> Flattener {
    let mut attrs = Flattener::default();
    attrs.put("version", Attribute::String(version.to_string()));
    for (key, value) in body.iter().chain(data.iter()) {
        if TYPED_ENVELOPE_KEYS.contains(&key.as_str()) {
            continue;
        }
        let Some(scalar) = Attribute::from_json(value) else {
            continue; // nested arrays and objects stay in raw_payload
        };
        let name = snake_case(key);
        let scalar = if key.ends_with("At") {
            date_attribute(&name, scalar, warnings)
        } else {
            scalar
        };
        attrs.put(name, scalar);
    }
    attrs
}

/// A PascalCase key (ASCII, as every key read here), or its camelCase spelling.
fn field<'a>(obj: &'a Map<String, Value>, pascal: &str) -> Option<&'a Value> {
    obj.get(pascal).or_else(|| {
        let mut camel = [0u8; 64];
        let bytes = pascal.as_bytes();
        let camel = camel.get_mut(..bytes.len())?;
        camel.copy_from_slice(bytes);
        camel.first_mut()?.make_ascii_lowercase();
        obj.get(std::str::from_utf8(camel).ok()?)
    })
}

/// `livesend-session-summary-v3` → `livesend_session_summary`; `LivesendExpiredV1` →
/// `livesend_expired`; `email-v3` → `email`. Versions without a suffix are kept whole.
pub fn event_name_from_version(version: &str) -> String {
    let trimmed = version.trim();
    let without_digits = trimmed.trim_end_matches(|c: char| c.is_ascii_digit());
    let base = if without_digits.len() < trimmed.len() {
        without_digits
            .strip_suffix(['v', 'V'])
            .map(|b| b.trim_end_matches(['-', '_', '.']))
            .filter(|b| !b.is_empty())
            .unwrap_or(trimmed)
    } else {
        trimmed
    };
    snake_case(base).replace('-', "_")
}

/// A string that is not any of the time formats Seismic uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnrecognizedTime;

/// A time as Seismic writes it. `Ok(None)` is the .NET "no value" sentinel (year 1).
pub fn parse_time(s: &str) -> Result<Option<i64>, UnrecognizedTime> {
    let s = s.trim();
    let parsed = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.naive_utc()
    } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        t // no zone: Seismic's timestamps are UTC
    } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%m/%d/%Y %H:%M:%S") {
        t // US month/day/year, UTC
    } else {
        return Err(UnrecognizedTime);
    };
    if parsed.year() <= 1 {
        return Ok(None);
    }
    Ok(Some(parsed.and_utc().timestamp_millis()))
}

/// `…At` fields become epoch milliseconds; sentinels become null; anything unparseable stays as
/// sent, flagged.
fn date_attribute(name: &str, value: Attribute, warnings: &mut Vec<String>) -> Attribute {
    let Attribute::String(s) = &value else {
        return value;
    };
    match parse_time(s) {
        Ok(Some(ms)) => Attribute::Long(ms),
        Ok(None) => Attribute::Null,
        Err(UnrecognizedTime) => {
            warnings.push(format!(
                "{name}: {} is not a recognized time; kept as text",
                json::quoted(s)
            ));
            value
        }
    }
}

/// A challenge of the expected shape: 1–1024 characters of `[A-Za-z0-9._~+/=:-]`.
fn challenge(value: Option<&Value>, path: &str) -> Result<String, PayloadError> {
    let Some(Value::String(c)) = value else {
        return Err(PayloadError::new(path, "missing or not a string"));
    };
    let well_formed = (1..=MAX_CHALLENGE_LEN).contains(&c.len())
        && c.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "._~+/=:-".contains(ch));
    if !well_formed {
        return Err(PayloadError::new(
            path,
            format!("expected 1 to {MAX_CHALLENGE_LEN} characters of [A-Za-z0-9._~+/=:-]"),
        ));
    }
    Ok(c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_suffixes_are_removed() {
        let cases = [
            ("livesend-session-summary-v3", "livesend_session_summary"),
            (
                "livesend-session-summary-enriched-v3",
                "livesend_session_summary_enriched",
            ),
            ("email-v3", "email"),
            ("email-enriched-v3", "email_enriched"),
            ("livesend-summary-v2", "livesend_summary"),
            ("LivesendExpiredV1", "livesend_expired"),
            ("brand-new-thing", "brand_new_thing"),
            ("Reserved", "reserved"),
            ("v2", "v2"),
        ];
        for (version, name) in cases {
            assert_eq!(event_name_from_version(version), name, "{version}");
        }
    }

    #[test]
    fn seismic_times_parse_and_sentinels_are_none() {
        assert_eq!(
            parse_time("2024-07-14T14:03:52.679592+00:00"),
            Ok(Some(1_720_965_832_679))
        );
        assert_eq!(
            parse_time("2024-07-14T14:03:45Z"),
            Ok(Some(1_720_965_825_000))
        );
        assert_eq!(
            parse_time("2024-07-14T16:03:45+02:00"),
            Ok(Some(1_720_965_825_000))
        );
        assert_eq!(
            parse_time("07/14/2024 14:03:45"),
            Ok(Some(1_720_965_825_000))
        );
        assert_eq!(
            parse_time("2024-07-14T14:03:45"),
            Ok(Some(1_720_965_825_000))
        );
        assert_eq!(parse_time("0001-01-01T00:00:00"), Ok(None));
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), Ok(None));
        assert_eq!(parse_time("yesterday"), Err(UnrecognizedTime));
    }

    #[test]
    fn both_handshake_formats_are_recognized() {
        let legacy = json!({"type": "verification", "challenge": "abc-123"});
        let envelope = json!({"version": "WebhookChallengeV1", "data": {"challenge": "xyz"}});
        let s = Seismic;
        assert_eq!(
            s.handshake(&Request::of(legacy.as_object().unwrap())),
            Ok(Some(Handshake::PlainText("abc-123".into())))
        );
        assert_eq!(
            s.handshake(&Request::of(envelope.as_object().unwrap())),
            Ok(Some(Handshake::JsonChallenge("xyz".into())))
        );
        assert_eq!(
            s.handshake(&Request::of(
                json!({"version": "email-v3"}).as_object().unwrap()
            )),
            Ok(None)
        );
    }

    #[test]
    fn odd_challenges_are_refused() {
        let s = Seismic;
        for bad in [
            json!(""),
            json!("<script>"),
            json!(42),
            json!("a".repeat(1025)),
            json!("a b"),
        ] {
            let body = json!({"type": "verification", "challenge": bad});
            assert!(
                s.handshake(&Request::of(body.as_object().unwrap()))
                    .is_err(),
                "{bad}"
            );
        }
        let ok = json!({"type": "verification", "challenge": "a".repeat(1024)});
        assert!(s.handshake(&Request::of(ok.as_object().unwrap())).is_ok());
    }
}
