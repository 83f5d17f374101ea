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
//!
//! Only requests whose signature verified are dead-lettered, and only for reasons retrying
//! cannot fix (one of [`crate::codes::DEAD_LETTER_REASONS`]). This module is the letter's format,
//! written by the pipeline and read back by `hookstream dead-letters list|replay`
//! (`crate::operations`).

use crate::kafka::{HEADER_EVENT_ID, HEADER_PROVIDER};
use rdkafka::message::{Headers, Message};

pub const HEADER_ERROR: &str = "hookstream-error";
pub const HEADER_ERROR_DETAIL: &str = "hookstream-error-detail";
pub const HEADER_RECEIVED_AT: &str = "hookstream-received-at";
pub const HEADER_CONTENT_TYPE: &str = "content-type";

/// A delivery to keep in the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub provider: &'static str,
    /// The error code (one of [`crate::codes::DEAD_LETTER_REASONS`]).
    pub error: &'static str,
    pub detail: String,
    /// Epoch milliseconds.
    pub received_at: i64,
    pub event_id: Option<String>,
    pub content_type: Option<Vec<u8>>,
    /// The exact request body.
    pub body: Vec<u8>,
}

impl DeadLetter {
    /// The record's headers; `received_at` is the decimal text of [`DeadLetter::received_at`].
    pub fn headers<'a>(&'a self, received_at: &'a str) -> Vec<(&'static str, &'a [u8])> {
        let mut headers = vec![
            (HEADER_PROVIDER, self.provider.as_bytes()),
            (HEADER_ERROR, self.error.as_bytes()),
            (HEADER_ERROR_DETAIL, self.detail.as_bytes()),
            (HEADER_RECEIVED_AT, received_at.as_bytes()),
        ];
        if let Some(id) = &self.event_id {
            headers.push((HEADER_EVENT_ID, id.as_bytes()));
        }
        if let Some(content_type) = &self.content_type {
            headers.push((HEADER_CONTENT_TYPE, content_type.as_slice()));
        }
        headers
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
    pub received_at: Option<i64>,
    pub event_id: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
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
            received_at: header(HEADER_RECEIVED_AT).and_then(|t| t.trim().parse().ok()),
            event_id: header(HEADER_EVENT_ID),
            content_type: header(HEADER_CONTENT_TYPE),
            body: message.payload().unwrap_or_default().to_vec(),
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
            "received_at": self.received_at,
            "event_id": self.event_id,
            "content_type": self.content_type,
            "body": String::from_utf8_lossy(&self.body),
        })
    }
}
