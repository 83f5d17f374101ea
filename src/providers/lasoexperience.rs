//! LasoExperience event webhooks.
//!
//! - Signature: `x-signature`, hex HMAC-SHA256 of the raw body (either case accepted).
//! - Event: `event`, any string (`user_login`, `screen_view`, `content_view_activity`, …).
//! - Id: `insertId` ("guaranteed unique", may arrive more than once).
//! - Person: `distinctId`, else `deviceMetadata.device.deviceId`, else `sessionId`.
//! - Time: `time`, epoch milliseconds (10 digits are taken as seconds), else `metadata.time`.
//! - Their curl example drifts to snake_case (`session_id`, `properties`): both spellings are read.
//! - `metadata.location.ll` is an object `{"0": lat, "1": lon}` (an array is accepted too).

use super::json::{self, Flattener};
use super::{Extracted, PayloadError, Provider, Request, Spec};
use crate::event::{Attribute, Client, Geo, User};
use crate::naming::snake_case;
use crate::signature::{Encoding, SignatureScheme};
use serde_json::{Map, Value};

pub const SIGNATURE_HEADER: &str = "x-signature";

pub struct LasoExperience;

const SPEC: Spec = Spec {
    name: "lasoexperience",
    signature: SignatureScheme::body_hmac_sha256(&[SIGNATURE_HEADER], Encoding::Hex),
    event_id_keys: &["insertId", "insert_id"],
};

impl Provider for LasoExperience {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }

    fn known_event_names(&self) -> &'static [&'static str] {
        &[
            "user_login",
            "screen_view",
            "content_view_activity",
            "event_view",
            "home_cta_click",
        ]
    }

    fn extract(&self, request: &Request<'_>) -> Result<Extracted, PayloadError> {
        let body = request.body;
        let raw_name = json::required_string(body, &["event"], "event")?;
        let event_id = json::event_id(body, SPEC.event_id_keys)?;
        let device = json::at_key(body, &["deviceMetadata", "device"]).unwrap_or(&Value::Null);
        let meta = body.get("metadata").unwrap_or(&Value::Null);
        let distinct_id = json::text(json::first(body, &["distinctId", "distinct_id"]));
        let session_id = json::text(json::first(body, &["sessionId", "session_id"]))
            .or_else(|| json::text(json::at_key(body, &["deviceMetadata", "sessionId"])))
            .or_else(|| {
                json::text(json::at_key(
                    body,
                    &["deviceMetadata", "session", "sessionId"],
                ))
            });
        Ok(Extracted {
            event_id,
            event_name: snake_case(&raw_name),
            event_time: Some(json::first_epoch_millis(
                [body.get("time"), meta.get("time")],
                "neither time nor metadata.time is a usable epoch time",
            )),
            subject_id: distinct_id
                .clone()
                .or_else(|| json::text_at(device, &["deviceId"]))
                .or_else(|| session_id.clone()),
            session_id,
            account_id: json::text(json::first(body, &["propertyId", "property_id"])),
            source_id: None,
            user: User {
                id: distinct_id,
                ..User::default()
            },
            geo: geo(meta, device),
            client: client(meta, device),
            attributes: attributes(body),
            warnings: Vec::new(),
        })
    }
}

/// `metadata.location`, with the device's time zone as a fallback.
fn geo(meta: &Value, device: &Value) -> Geo {
    let location = meta.get("location").unwrap_or(&Value::Null);
    let (latitude, longitude) = lat_lon(location.get("ll"));
    Geo {
        country_code: json::text_at(location, &["country"]),
        region: json::text_at(location, &["region"]),
        city: json::text_at(location, &["city"]),
        latitude,
        longitude,
        timezone: json::text_at(location, &["timezone"])
            .or_else(|| json::text_at(device, &["timezone", "timeZone"])),
        ..Geo::default()
    }
}

/// Web `metadata` first, the mobile `deviceMetadata.device` where the web has nothing.
fn client(meta: &Value, device: &Value) -> Client {
    Client {
        user_agent: json::text_at(meta, &["ua"]),
        browser: json::text_at(meta, &["browser", "name"]),
        browser_version: json::text_at(meta, &["browser", "version"]),
        os: json::text_at(meta, &["os", "name"]).or_else(|| json::text_at(device, &["os"])),
        os_version: json::text_at(meta, &["os", "version"])
            .or_else(|| json::text_at(device, &["systemVersion"])),
        device_type: json::text_at(device, &["deviceType"]),
        device_model: json::text_at(meta, &["device", "model"])
            .or_else(|| json::text_at(device, &["model"])),
        ip_address: json::text_at(meta, &["ipAddress"]),
        locale: json::text_at(meta, &["acceptLanguage"]),
        page_url: json::text_at(meta, &["url"]),
        referrer: json::text_at(meta, &["referer"]),
    }
}

/// Every scalar of the event's `payload` (`properties` in their curl example), and a few context
/// fields.
fn attributes(body: &Map<String, Value>) -> Flattener {
    let mut attrs = Flattener::default();
    if let Some(event_payload) = json::first(body, &["payload", "properties"]) {
        attrs.flatten("payload", event_payload);
    }
    for (key, path) in [
        ("platform", &["deviceMetadata", "platform"][..]),
        ("app_version", &["deviceMetadata", "app", "appVersion"][..]),
        ("page_type", &["metadata", "pageType"][..]),
        ("survey_id", &["metadata", "surveyId"][..]),
    ] {
        if let Some(v) = json::at_key(body, path).and_then(Attribute::from_json) {
            attrs.put(key, v);
        }
    }
    attrs
}

/// `ll` as `{"0": lat, "1": lon}` (what they send) or `[lat, lon]`.
fn lat_lon(ll: Option<&Value>) -> (Option<f64>, Option<f64>) {
    match ll {
        Some(Value::Object(o)) => (json::number(o.get("0")), json::number(o.get("1"))),
        Some(Value::Array(a)) => (json::number(a.first()), json::number(a.get(1))),
        _ => (None, None),
    }
}
