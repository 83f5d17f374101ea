//! LiveSession `session.event` webhooks.
//!
//! - Signature: `LiveSession-Signature`, base64 HMAC-SHA256 of the raw body.
//! - Event: `payload.event_name` (`JSError`, `NetError`, `ErrorClick`, `RageClick`, `Custom`,
//!   the older `Error`, and undocumented kinds, which are ingested generically).
//! - Id: `message_id`. Person: `payload.visitor.id`, else `payload.visitor.email`.
//! - Time: `payload.time`, whose unit is undocumented (the docs show both a 10-digit value and an
//!   11-digit typo): 10 digits are seconds, 13 milliseconds, anything else falls back to
//!   `created_at` (seconds).

use super::json::{self, Flattener};
use super::{Extracted, PayloadError, Provider, Request, Spec};
use crate::event::{Attribute, Client, Geo, User};
use crate::naming::snake_case;
use crate::signature::{Encoding, SignatureScheme};
use serde_json::{Map, Value};

pub const SIGNATURE_HEADER: &str = "LiveSession-Signature";

/// Keys of `payload` that have typed homes in the record instead of attributes.
const TYPED_PAYLOAD_KEYS: [&str; 3] = ["event_name", "time", "visitor"];
/// Envelope fields kept as attributes.
const ENVELOPE_ATTRIBUTES: [&str; 3] = ["webhook_id", "webhook_type", "api_version"];
/// Longest value a `_str` custom property may have.
const MAX_STR_PROPERTY: usize = 256;

pub struct LiveSession;

const SPEC: Spec = Spec {
    name: "livesession",
    signature: SignatureScheme::body_hmac_sha256(&[SIGNATURE_HEADER], Encoding::Base64),
    event_id_keys: &["message_id"],
};

impl Provider for LiveSession {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn known_event_names(&self) -> &'static [&'static str] {
        &[
            "js_error",
            "net_error",
            "error_click",
            "rage_click",
            "custom",
            "error",
        ]
    }

    fn extract(&self, request: &Request<'_>) -> Result<Extracted, PayloadError> {
        let body = request.body;
        let event_id = json::event_id(body, SPEC.event_id_keys)?;
        let inner = json::required_object(body, "payload", "payload")?;
        let raw_name = json::required_string(inner, &["event_name"], "payload.event_name")?;
        let visitor = inner.get("visitor").unwrap_or(&Value::Null);
        let user = User {
            id: json::text_at(visitor, &["id"]),
            name: json::text_at(visitor, &["name"]),
            email: json::text_at(visitor, &["email"]),
        };
        let mut warnings = Vec::new();
        if let Some(properties) = inner.get("properties").and_then(Value::as_object) {
            check_property_types(properties, &mut warnings);
        }
        Ok(Extracted {
            event_id,
            event_name: snake_case(&raw_name),
            event_time: Some(json::first_epoch_millis(
                [inner.get("time"), body.get("created_at")],
                "neither payload.time nor created_at is a usable epoch time",
            )),
            subject_id: user.id.clone().or_else(|| user.email.clone()),
            session_id: None,
            account_id: json::text(body.get("account_id")),
            source_id: json::text(body.get("website_id")),
            user,
            geo: Geo {
                country_code: json::text_at(visitor, &["geolocation", "country_code"]),
                region: json::text_at(visitor, &["geolocation", "region"]),
                city: json::text_at(visitor, &["geolocation", "city"]),
                ..Geo::default()
            },
            client: Client::default(),
            attributes: attributes(body, inner, visitor),
            warnings,
        })
    }
}

/// Envelope fields, the event's own fields (`payload` minus the typed ones) and visitor params.
fn attributes(body: &Map<String, Value>, inner: &Map<String, Value>, visitor: &Value) -> Flattener {
    let mut attrs = Flattener::default();
    for key in ENVELOPE_ATTRIBUTES {
        if let Some(v) = body.get(key).and_then(Attribute::from_json) {
            attrs.put(key, v);
        }
    }
    for (key, value) in inner {
        if TYPED_PAYLOAD_KEYS.contains(&key.as_str()) {
            continue;
        }
        // The ErrorClick examples spell it `messsage`; the OpenAPI spec says `message`.
        let key = if key == "messsage" && !inner.contains_key("message") {
            "message"
        } else {
            key.as_str()
        };
        attrs.flatten(key, value);
    }
    for param in visitor
        .get("params")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(name), Some(value)) = (
            json::text_at(param, &["name"]),
            param.get("value").and_then(Attribute::from_json),
        ) {
            attrs.put(format!("visitor.params.{name}"), value);
        }
    }
    attrs
}

/// Custom event properties carry their type in a suffix (`_str`, `_int`, `_float`, `_bool`).
/// A value that disagrees is still kept; it is flagged so consumers can tell.
fn check_property_types(properties: &Map<String, Value>, warnings: &mut Vec<String>) {
    for (key, value) in properties {
        let expected = if key.ends_with("_str") {
            "a string of at most 256 characters"
        } else if key.ends_with("_int") {
            "an integer"
        } else if key.ends_with("_float") {
            "a number"
        } else if key.ends_with("_bool") {
            "a boolean"
        } else {
            "a string, number or boolean"
        };
        let fits = if key.ends_with("_str") {
            value
                .as_str()
                .is_some_and(|s| s.chars().count() <= MAX_STR_PROPERTY)
        } else if key.ends_with("_int") {
            value.is_i64() || value.is_u64()
        } else if key.ends_with("_float") {
            value.is_number()
        } else if key.ends_with("_bool") {
            value.is_boolean()
        } else {
            value.is_string() || value.is_number() || value.is_boolean()
        };
        if !fits {
            warnings.push(format!(
                "properties.{}: expected {expected}, got {}",
                json::clipped(key),
                json_type(value)
            ));
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "an integer",
        Value::String(s) if s.chars().count() > MAX_STR_PROPERTY => "a string that is too long",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
