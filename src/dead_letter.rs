//! Dead letters: correctly signed deliveries that cannot be normalized, kept in Kafka exactly as
//! received instead of being refused into the void.
//!
//! A dead letter is a record in the dead-letter topic (`dead_letter.topic`, by default
//! `{kafka.topic_prefix}.dead_letter`) whose value is the **exact request body**, keyed by the
//! provider's event id when it could be read, with these headers:
//!
//! | header | value |
//! |---|---|
//! | `hookstream-provider` | the provider's name |
//! | `hookstream-error` | the error code a 400 (or 413) would have carried |
//! | `hookstream-error-detail` | the same detail text (never secrets or signatures) |
//! | `hookstream-received-at` | when the request arrived, epoch milliseconds, decimal |
//! | `hookstream-event-id` | the event id, when it could be read |
//! | `content-type` | the request's `Content-Type`, as received |
//! | `hookstream-replay-attempts` | how many replays it failed (absent until the first) |
//! | `hookstream-replay-error` | the error code of its last failed replay (absent until the first; `hookstream-error` keeps the original) |
//! | `hookstream-replay-error-detail` | that replay's detail |
//! | `hookstream-header-NAME` | each request header the provider reads besides its signature (a configured provider's `header:NAME` sources), so a replay reads it too |
//!
//! Only requests whose signature verified are dead-lettered, and only for reasons retrying
//! cannot fix (one of [`crate::codes::DEAD_LETTER_REASONS`]). This module is the letter's format,
//! written by the pipeline and read back by `hookstream dead-letters list|replay`
//! (`crate::operations`).

use crate::codes::ErrorCode;
use crate::kafka::{
    Acknowledged, KafkaSink, OutboundMessage, PublishError, HEADER_EVENT_ID, HEADER_PROVIDER,
};
use rdkafka::message::{Headers, Message};
use std::borrow::Cow;
use strum::IntoEnumIterator;
use tokio::time::Instant;

pub const HEADER_ERROR: &str = "hookstream-error";
pub const HEADER_ERROR_DETAIL: &str = "hookstream-error-detail";
pub const HEADER_RECEIVED_AT: &str = "hookstream-received-at";
pub const HEADER_CONTENT_TYPE: &str = "content-type";
pub const HEADER_REPLAY_ATTEMPTS: &str = "hookstream-replay-attempts";
pub const HEADER_REPLAY_ERROR: &str = "hookstream-replay-error";
pub const HEADER_REPLAY_ERROR_DETAIL: &str = "hookstream-replay-error-detail";
/// Followed by a request header's lowercase name.
pub const HEADER_REQUEST_PREFIX: &str = "hookstream-header-";

/// A delivery to keep in the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub provider: String,
    /// The error code it was kept for when it arrived (one of
    /// [`crate::codes::DEAD_LETTER_REASONS`]); kept as it was when a replay writes it back.
    pub error: Cow<'static, str>,
    pub detail: String,
    /// Why its last replay failed (code, detail), when one did: beside the original error,
    /// never instead of it.
    pub replay_error: Option<(&'static str, String)>,
    /// Epoch milliseconds.
    pub received_at: i64,
    pub event_id: Option<String>,
    pub content_type: Option<Vec<u8>>,
    /// `(lowercase name, value)` of the request headers the provider reads.
    pub request_headers: Vec<(String, String)>,
    /// The exact request body.
    pub body: Vec<u8>,
    /// Replays it failed so far.
    pub replay_attempts: u32,
}

/// The text [`DeadLetter::headers`] writes that the letter does not hold as such.
pub struct HeaderTexts {
    received_at: String,
    attempts: String,
    request_header_keys: Vec<String>,
}

impl DeadLetter {
    /// The record's headers; `texts` holds what they say as text ([`DeadLetter::texts`]).
    pub fn headers<'a>(&'a self, texts: &'a HeaderTexts) -> Vec<(&'a str, &'a [u8])> {
        let (received_at, attempts) = (&texts.received_at, &texts.attempts);
        let mut headers = vec![
            (HEADER_PROVIDER, self.provider.as_bytes()),
            (HEADER_ERROR, self.error.as_bytes()),
            (HEADER_ERROR_DETAIL, self.detail.as_bytes()),
            (HEADER_RECEIVED_AT, received_at.as_bytes()),
        ];
        if let Some((code, detail)) = &self.replay_error {
            headers.push((HEADER_REPLAY_ERROR, code.as_bytes()));
            headers.push((HEADER_REPLAY_ERROR_DETAIL, detail.as_bytes()));
        }
        if let Some(id) = &self.event_id {
            headers.push((HEADER_EVENT_ID, id.as_bytes()));
        }
        if let Some(content_type) = &self.content_type {
            headers.push((HEADER_CONTENT_TYPE, content_type.as_slice()));
        }
        if self.replay_attempts > 0 {
            headers.push((HEADER_REPLAY_ATTEMPTS, attempts.as_bytes()));
        }
        for (key, (_, value)) in texts.request_header_keys.iter().zip(&self.request_headers) {
            headers.push((key, value.as_bytes()));
        }
        headers
    }

    /// Writes this letter to `topic` by `deadline`, keyed by its event id. `label` is the
    /// provider metric label (a registered name, never one read from a record).
    pub async fn publish(
        &self,
        sink: &KafkaSink,
        topic: &str,
        label: &'static str,
        deadline: Instant,
    ) -> Result<Acknowledged, PublishError> {
        let texts = self.texts();
        sink.publish(
            OutboundMessage {
                topic,
                key: self.event_id.as_deref(),
                value: &self.body,
                headers: &self.headers(&texts),
                provider: label,
                event_name: None,
            },
            deadline,
        )
        .await
    }

    /// The text [`DeadLetter::headers`] needs.
    pub fn texts(&self) -> HeaderTexts {
        HeaderTexts {
            received_at: self.received_at.to_string(),
            attempts: self.replay_attempts.to_string(),
            request_header_keys: self
                .request_headers
                .iter()
                .map(|(name, _)| format!("{HEADER_REQUEST_PREFIX}{name}"))
                .collect(),
        }
    }
}

/// A dead letter read back from the topic. Fields are as found: the topic is hookstream's, but a
/// record may have been written by an older version or by hand.
#[derive(Debug, Clone)]
pub struct StoredDeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub provider: Option<String>,
    pub error: Option<String>,
    pub detail: Option<String>,
    /// Why its last replay failed, when one did.
    pub replay_error: Option<String>,
    pub replay_error_detail: Option<String>,
    pub received_at: Option<i64>,
    pub event_id: Option<String>,
    pub content_type: Option<String>,
    /// `(lowercase name, value)` of the request headers kept with it.
    pub request_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Replays it failed so far.
    pub replay_attempts: u32,
}

impl StoredDeadLetter {
    pub fn from_message(message: &impl Message) -> Self {
        let header = |name: &str| {
            message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        Self {
            partition: message.partition(),
            offset: message.offset(),
            provider: header(HEADER_PROVIDER),
            error: header(HEADER_ERROR),
            detail: header(HEADER_ERROR_DETAIL),
            replay_error: header(HEADER_REPLAY_ERROR),
            replay_error_detail: header(HEADER_REPLAY_ERROR_DETAIL),
            received_at: header(HEADER_RECEIVED_AT).and_then(|t| t.trim().parse().ok()),
            event_id: header(HEADER_EVENT_ID),
            content_type: header(HEADER_CONTENT_TYPE),
            request_headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .filter_map(|h| {
                            let name = h.key.strip_prefix(HEADER_REQUEST_PREFIX)?;
                            Some((
                                name.to_string(),
                                String::from_utf8_lossy(h.value?).into_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            body: message.payload().unwrap_or_default().to_vec(),
            replay_attempts: header(HEADER_REPLAY_ATTEMPTS)
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// This letter to write again at the end of the topic, its original error and detail as
    /// they were: with the error its replay fails with now (`None`: not tried — its provider is
    /// not served here — so its last replay error stays as it was) and `attempts` replays
    /// failed.
    pub fn requeued(&self, now: Option<(&'static str, String)>, attempts: u32) -> DeadLetter {
        let replay_error = now.or_else(|| {
            let code = self.replay_error.as_deref().and_then(known_code)?;
            Some((code, self.replay_error_detail.clone().unwrap_or_default()))
        });
        DeadLetter {
            provider: self.provider.clone().unwrap_or_default(),
            error: Cow::Owned(self.error.clone().unwrap_or_default()),
            detail: self.detail.clone().unwrap_or_default(),
            replay_error,
            received_at: self.received_at.unwrap_or_default(),
            event_id: self.event_id.clone(),
            content_type: self.content_type.clone().map(String::into_bytes),
            request_headers: self.request_headers.clone(),
            body: self.body.clone(),
            replay_attempts: attempts,
        }
    }

    /// As one JSON object (the body as text, invalid UTF-8 replaced).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "partition": self.partition,
            "offset": self.offset,
            "provider": self.provider,
            "error": self.error,
            "detail": self.detail,
            "replay_error": self.replay_error,
            "replay_error_detail": self.replay_error_detail,
            "received_at": self.received_at,
            "event_id": self.event_id,
            "content_type": self.content_type,
            "request_headers": self
                .request_headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>(),
            "replay_attempts": self.replay_attempts,
            "body": String::from_utf8_lossy(&self.body),
        })
    }
}

/// The error code `text` names, as the static string every code is.
fn known_code(text: &str) -> Option<&'static str> {
    ErrorCode::iter()
        .map(ErrorCode::as_str)
        .find(|c| *c == text)
}
