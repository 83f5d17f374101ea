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
use super::{Handshake, PayloadError, Provider, VerifiedPayload};
use crate::event::{Attribute, Client, Geo, User, WebhookEvent};
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

impl Provider for Seismic {
    fn name(&self) -> &'static str {
        "seismic"
    }

    fn signature(&self) -> SignatureScheme {
        SignatureScheme {
            headers: &[SIGNATURE_HEADER, ROTATION_SIGNATURE_HEADER],
            encoding: Encoding::Hex,
        }
    }

    fn event_id_keys(&self) -> &'static [&'static str] {
        &["id"]
    }

    fn accepts_unsigned_handshake(&self) -> bool {
        true
    }

    fn handshake(&self, body: &Map<String, Value>) -> Result<Option<Handshake>, PayloadError> {
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

    fn normalize(
        &self,
        payload: &VerifiedPayload<'_>,
        received_at: i64,
    ) -> Result<WebhookEvent, PayloadError> {
        let body = payload.object()?;
        let event_id = json::event_id(body, self.event_id_keys())?;
        let version = json::required_text(body, &["version"], "version")?;
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
        let mut warnings = Vec::new();

        let event_time = match body
            .get("occurredAt")
            .and_then(Value::as_str)
            .map(parse_time)
        {
            Some(Ok(Some(t))) => t,
            _ => {
                warnings.push(
                    "event_time: occurredAt is missing or not a time; used received_at".to_string(),
                );
                received_at
            }
        };

        let user_id = json::text(field(data, "UserId"));
        let email = json::text(field(data, "Email")).map(|e| normalize_email(&e));
        let participant_email = field(data, "Participants")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_object())
            .find_map(|p| json::text(field(p, "Email")))
            .map(|e| normalize_email(&e))
            .filter(|e| !e.is_empty());
        let session_id = json::text(field(data, "SessionId"));
        let subject_id = user_id
            .clone()
            .or_else(|| email.clone().filter(|e| !e.is_empty()))
            .or_else(|| participant_email.clone())
            .or_else(|| session_id.clone());

        let details = field(data, "ClientDetails").and_then(Value::as_object);
        let detail = |key: &str| details.and_then(|d| json::text(field(d, key)));
        let geo = Geo {
            country: detail("Country"),
            region: detail("State"),
            city: detail("City"),
            latitude: details.and_then(|d| json::number(field(d, "GeolocationLatitude"))),
            longitude: details.and_then(|d| json::number(field(d, "GeolocationLongitude"))),
            ..Geo::default()
        };
        let client = Client {
            browser: detail("Browser"),
            browser_version: detail("BrowserVersion"),
            os: detail("OperatingSystem"),
            os_version: detail("OperatingSystemVersion"),
            device_type: detail("DeviceType"),
            ip_address: detail("IpAddress"),
            locale: detail("Locale"),
            ..Client::default()
        };

        let mut attrs = Flattener::default();
        attrs.put("version", Attribute::String(version.clone()));
        for (key, value) in body.iter().chain(data.iter()) {
            if TYPED_ENVELOPE_KEYS.contains(&key.as_str()) {
                continue;
            }
            let Some(scalar) = Attribute::from_json(value) else {
                continue; // nested arrays and objects stay in raw_payload
            };
            let name = snake_case(key);
            let scalar = if key.ends_with("At") {
                date_attribute(&name, scalar, &mut warnings)
            } else {
                scalar
            };
            attrs.put(name, scalar);
        }

        Ok(WebhookEvent {
            event_id,
            provider: self.name(),
            event_name,
            event_time,
            received_at,
            subject_id,
            session_id,
            account_id: json::text(body.get("tenantId")),
            source_id: None,
            user: User {
                id: user_id,
                name: None,
                email: email.filter(|e| !e.is_empty()).or(participant_email),
            }
            .non_empty(),
            geo: geo.non_empty(),
            client: client.non_empty(),
            attributes: attrs.finish(&mut warnings),
            warnings,
            raw_payload: payload.raw().to_string(),
        })
    }
}

/// A PascalCase key, or its camelCase spelling.
fn field<'a>(obj: &'a Map<String, Value>, pascal: &str) -> Option<&'a Value> {
    obj.get(pascal).or_else(|| {
        let mut chars = pascal.chars();
        let camel: String = chars
            .next()
            .map(|c| c.to_lowercase().chain(chars).collect())
            .unwrap_or_default();
        obj.get(&camel)
    })
}

fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
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
            s.handshake(legacy.as_object().unwrap()),
            Ok(Some(Handshake::PlainText("abc-123".into())))
        );
        assert_eq!(
            s.handshake(envelope.as_object().unwrap()),
            Ok(Some(Handshake::JsonChallenge("xyz".into())))
        );
        assert_eq!(
            s.handshake(json!({"version": "email-v3"}).as_object().unwrap()),
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
            assert!(s.handshake(body.as_object().unwrap()).is_err(), "{bad}");
        }
        let ok = json!({"type": "verification", "challenge": "a".repeat(1024)});
        assert!(s.handshake(ok.as_object().unwrap()).is_ok());
    }
}
