//! The message builder: one step turns a normalized event into the message to write — its topic
//! (the event's own, or its provider's overflow topic past `kafka.max_topics_per_provider`), key,
//! headers and encoded value — before anything is written. A delivery and a replayed dead letter
//! are built alike, so a replayed event gets the same record, key and headers.

use super::ProduceError;
use crate::avro::{self, FrameError, Framing, RegistryError};
use crate::event::WebhookEvent;
use crate::kafka::{event_headers, KafkaSink, OutboundMessage};
use tokio::time::Instant;

/// An event made into the message to write.
pub(super) struct EventRecord<'e> {
    event: &'e WebhookEvent,
    /// Decided once, here: the event's own topic, or its provider's overflow topic.
    pub topic: String,
    /// The Avro record, framed (single-object encoding, or the Schema Registry's wire format).
    value: Vec<u8>,
    headers: [(&'static str, &'e [u8]); 3],
}

impl<'e> EventRecord<'e> {
    /// `event`'s message for its `topic` (the overflow topic instead when its provider is at its
    /// topic cap, the cluster's topics listed by `listed_by`), encoded by `deadline` (a Schema
    /// Registry lookup may be needed).
    pub(super) async fn build(
        sink: &KafkaSink,
        framing: &Framing,
        event: &'e WebhookEvent,
        topic: String,
        listed_by: Instant,
        deadline: Instant,
    ) -> Result<Self, ProduceError> {
        let topic = sink.event_topic(event.provider, topic, listed_by).await;
        let value =
            match tokio::time::timeout_at(deadline, avro::encode_framed(framing, &topic, event))
                .await
            {
                Ok(Ok(value)) => value,
                Ok(Err(FrameError::Encode(e))) => return Err(ProduceError::Encode(e)),
                Ok(Err(FrameError::Registry(e))) => return Err(ProduceError::Registry(e)),
                Err(_) => return Err(ProduceError::Registry(RegistryError::Timeout)),
            };
        Ok(Self {
            event,
            topic,
            value,
            headers: event_headers(event.provider, &event.event_name, &event.event_id),
        })
    }

    /// The message the sink writes: keyed by the person, with the event's headers.
    pub(super) fn message(&self) -> OutboundMessage<'_> {
        OutboundMessage {
            topic: &self.topic,
            key: self.event.subject_id.as_deref(),
            value: &self.value,
            headers: &self.headers,
            provider: self.event.provider,
            event_name: Some(&self.event.event_name),
        }
    }
}
