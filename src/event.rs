//! The unified record every provider's payload is normalized into.
//!
//! It mirrors `avro/webhook_event.avsc` field for field; `crate::avro` turns it into an Avro datum.
//! It also serializes to JSON, which is how golden fixtures describe expected records.

use serde::Serialize;
use std::collections::BTreeMap;

/// One webhook delivery, normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEvent {
    /// The provider's unique id for this event; the deduplication key.
    pub event_id: String,
    /// Registered provider name (an Avro enum symbol).
    pub provider: &'static str,
    /// snake_case event name, as used in the topic.
    pub event_name: String,
    /// When the event happened, epoch milliseconds.
    pub event_time: i64,
    /// When hookstream received the request, epoch milliseconds.
    pub received_at: i64,
    /// The person the event is about; also the Kafka message key.
    pub subject_id: Option<String>,
    pub session_id: Option<String>,
    pub account_id: Option<String>,
    pub source_id: Option<String>,
    pub user: Option<User>,
    pub geo: Option<Geo>,
    pub client: Option<Client>,
    /// Event-specific scalars, flattened with dotted paths.
    pub attributes: BTreeMap<String, Attribute>,
    /// Things normalization noticed but did not treat as fatal (a property whose value disagrees
    /// with its type suffix, a missing timestamp, truncated attributes).
    pub warnings: Vec<String>,
    /// The exact body received.
    pub raw_payload: String,
    /// What deduplication keys on instead of `event_id`, when that is not covered by the
    /// signature ([`crate::providers::Provider::dedupe_key`]). Not part of the record.
    #[serde(skip)]
    pub dedupe_key: Option<String>,
}

impl WebhookEvent {
    /// The id deduplication keys on: [`WebhookEvent::dedupe_key`] when set, else `event_id`.
    pub fn dedupe_id(&self) -> &str {
        self.dedupe_key.as_deref().unwrap_or(&self.event_id)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct User {
    pub id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Geo {
    pub country_code: Option<String>,
    pub country: Option<String>,
    pub region: Option<String>,
    pub city: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Client {
    pub user_agent: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device_type: Option<String>,
    pub device_model: Option<String>,
    pub ip_address: Option<String>,
    pub locale: Option<String>,
    pub page_url: Option<String>,
    pub referrer: Option<String>,
}

/// A scalar attribute value: the Avro union `["null","string","long","double","boolean"]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Attribute {
    Null,
    String(String),
    Long(i64),
    Double(f64),
    Boolean(bool),
}

impl Attribute {
    /// The scalar a JSON value holds, or `None` for arrays and objects.
    pub fn from_json(value: &serde_json::Value) -> Option<Attribute> {
        use serde_json::Value;
        Some(match value {
            Value::Null => Attribute::Null,
            Value::Bool(b) => Attribute::Boolean(*b),
            Value::String(s) => Attribute::String(s.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Attribute::Long(i),
                // u64 above i64::MAX and fractions become doubles; serde_json always has an f64.
                None => Attribute::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::Array(_) | Value::Object(_) => return None,
        })
    }
}

impl Geo {
    /// `None` when every field is empty, so consumers see `null` rather than an empty record.
    pub fn non_empty(self) -> Option<Geo> {
        (self != Geo::default()).then_some(self)
    }
}

impl User {
    pub fn non_empty(self) -> Option<User> {
        (self != User::default()).then_some(self)
    }
}

impl Client {
    pub fn non_empty(self) -> Option<Client> {
        (self != Client::default()).then_some(self)
    }
}
