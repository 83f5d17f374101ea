//! One message as the sink writes it: its topic, key, value and headers, the librdkafka record
//! made of it, and its size as librdkafka checks it against `message.max.bytes`.

use crate::configuration::KafkaSettings;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

/// Kafka headers set on every message.
pub(crate) const HEADER_PROVIDER: &str = "hookstream-provider";
const HEADER_EVENT_NAME: &str = "hookstream-event-name";
pub(crate) const HEADER_EVENT_ID: &str = "hookstream-event-id";

/// One message to write.
#[derive(Clone, Copy)]
pub(crate) struct OutboundMessage<'a> {
    pub topic: &'a str,
    pub key: Option<&'a str>,
    pub value: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Metric labels: the provider, and the event name of an event record (`None` for dead
    /// letters and the readiness canary, which are not counted as produced events).
    pub provider: &'static str,
    pub event_name: Option<&'a str>,
}

/// The headers of an event record.
pub(crate) fn event_headers<'a>(
    provider: &'a str,
    event_name: &'a str,
    event_id: &'a str,
) -> [(&'static str, &'a [u8]); 3] {
    [
        (HEADER_PROVIDER, provider.as_bytes()),
        (HEADER_EVENT_NAME, event_name.as_bytes()),
        (HEADER_EVENT_ID, event_id.as_bytes()),
    ]
}

/// The librdkafka record for `msg`.
pub(super) fn record<'a>(msg: &'a OutboundMessage<'a>) -> FutureRecord<'a, str, [u8]> {
    let headers = msg.headers.iter().fold(
        OwnedHeaders::new_with_capacity(msg.headers.len()),
        |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: Some(*value),
            })
        },
    );
    let record = FutureRecord::to(msg.topic)
        .payload(msg.value)
        .headers(headers);
    match msg.key {
        Some(key) => record.key(key),
        None => record,
    }
}

/// librdkafka's `message.max.bytes` for these settings (its default unless `kafka.options`
/// sets it).
pub(super) fn max_message_bytes(settings: &KafkaSettings) -> usize {
    settings
        .options
        .iter()
        .find(|(key, _)| key.as_str() == "message.max.bytes")
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(1_000_000)
}

/// The size librdkafka checks against `message.max.bytes` at enqueue: key, value and
/// serialized headers, plus the largest record overhead of the v2 message format (length,
/// attributes, timestamp and offset deltas, key and value lengths, header count: 36 bytes).
pub(super) fn wire_size(msg: &OutboundMessage<'_>) -> usize {
    const MAX_OVERHEAD: usize = 5 + 1 + 10 + 5 + 5 + 5 + 5;
    let varint = |n: usize| {
        // Zigzag, then base 128.
        let mut v = (n as u64) << 1;
        let mut len = 1;
        while v >= 0x80 {
            v >>= 7;
            len += 1;
        }
        len
    };
    let headers: usize = msg
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.len() + varint(name.len()) + varint(value.len()))
        .sum();
    MAX_OVERHEAD + msg.key.map_or(0, str::len) + msg.value.len() + headers
}
