//! The write half of the pipeline: deduplicate, build the record, write it — to the broker, or
//! to the spool when the broker is slow — and record the id; a delivery that cannot be written
//! as an event is kept as a dead letter. Everything within one deadline (`kafka.ack_timeout`).

use super::record::EventRecord;
use super::Outcome;
use crate::avro::{self, Framing, RegistryError};
use crate::codes::{FailureClass, FailureReason};
use crate::dead_letter::DeadLetter;
use crate::dedupe::{Dedupe, Namespace, Unavailable, Verdict};
use crate::error::ApiError;
use crate::event::WebhookEvent;
use crate::kafka::{Acknowledged, KafkaSink, OutboundMessage, PublishError, Published};
use crate::spool::{Refused, Spool, SpoolError, SpooledRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The write half of the pipeline, shared with the task each write runs in.
pub(super) struct Writer {
    pub(super) dedupe: Arc<Dedupe>,
    pub(super) sink: Arc<KafkaSink>,
    pub(super) framing: Framing,
    /// `None` when dead letters are disabled.
    pub(super) dead_letter_topic: Option<String>,
    /// The one deadline of a request's write: claim, topic, framing, enqueue and ack together.
    pub(super) ack_timeout: Duration,
    /// Sent as `Retry-After` with 503s.
    pub(super) retry_after: Duration,
    /// The durable spool, when enabled, and how long a write waits for the broker before its
    /// record is spooled instead (`spool.after`).
    pub(super) spool: Option<(Arc<Spool>, Duration)>,
}

/// What a delivery brought besides its body, kept with it should it become a dead letter.
pub(super) struct Envelope {
    /// Epoch milliseconds.
    pub received_at: i64,
    pub content_type: Option<Vec<u8>>,
    /// `(lowercase name, value)` of the request headers the provider reads.
    pub request_headers: Vec<(String, String)>,
}

impl Envelope {
    /// The dead letter of a delivery that failed with `error`.
    pub(super) fn letter(
        self,
        provider: &str,
        error: &ApiError,
        event_id: Option<String>,
        body: Vec<u8>,
    ) -> DeadLetter {
        DeadLetter {
            provider: provider.to_string(),
            error: error.code().as_str().into(),
            replay_error: None,
            detail: error.to_string(),
            received_at: self.received_at,
            event_id,
            content_type: self.content_type,
            request_headers: self.request_headers,
            body,
            replay_attempts: 0,
        }
    }
}

impl Writer {
    fn unavailable(&self, source: PublishError) -> ApiError {
        ApiError::Publish {
            source,
            retry_after: self.retry_after,
        }
    }

    fn rejection(&self, error: ProduceError) -> ApiError {
        match error {
            ProduceError::Encode(e) => ApiError::Encode(e),
            ProduceError::Registry(source) => ApiError::SchemaRegistry {
                source,
                retry_after: self.retry_after,
            },
            ProduceError::Publish(source) => self.unavailable(source),
            ProduceError::Dedupe(source) => ApiError::DedupeUnavailable {
                source,
                retry_after: self.retry_after,
            },
            ProduceError::Spool(e) => self.unavailable(PublishError::new(
                FailureReason::BrokerUnavailable,
                format!("the broker did not acknowledge in time, and {e}; nothing was kept"),
            )),
        }
    }

    /// Deduplicate, encode, frame, produce and record the id, all within one deadline; a record
    /// too large for its topic is kept as a dead letter.
    pub(super) async fn write(
        &self,
        event: WebhookEvent,
        topic: String,
        envelope: Envelope,
    ) -> Result<Outcome, ApiError> {
        let deadline = Instant::now() + self.ack_timeout;
        match self.write_event(&event, topic, deadline).await {
            Ok(outcome) => Ok(outcome),
            Err(ProduceError::Publish(e)) if e.class() == FailureClass::TooLarge => {
                // The record is too large for its topic: keep the body alone as a dead letter.
                let error = self.unavailable(e);
                let letter = envelope.letter(
                    event.provider,
                    &error,
                    Some(event.event_id),
                    event.raw_payload.into_bytes(),
                );
                self.dead_letter(event.provider, letter, error, deadline)
                    .await
            }
            Err(e) => Err(self.rejection(e)),
        }
    }

    /// Claims the event's id, builds its record (its topic decided: the event's own, or its
    /// provider's overflow topic) and writes it, then records the id, by `deadline`: accepted,
    /// spooled or a duplicate. Any error releases the claim, so the provider's retry (or the
    /// next replay) gets a fresh attempt.
    pub(super) async fn write_event(
        &self,
        event: &WebhookEvent,
        topic: String,
        deadline: Instant,
    ) -> Result<Outcome, ProduceError> {
        // Duplicates are decided before any encoding work.
        let claim = match tokio::time::timeout_at(
            deadline,
            self.dedupe
                .claim(Namespace::Event, event.provider, event.dedupe_id()),
        )
        .await
        {
            Ok(Ok(Verdict::Duplicate)) => {
                return Ok(Outcome::Duplicate {
                    event_id: event.event_id.clone(),
                })
            }
            Ok(Ok(Verdict::Claimed(claim))) => claim,
            Ok(Err(unavailable)) => return Err(ProduceError::Dedupe(unavailable)),
            Err(_) => return Err(ProduceError::Publish(claim_timed_out())),
        };
        // With the spool, the broker gets `spool.after` to answer the topic listing too, so that
        // a broker that is away leaves the append its share of the deadline.
        let listed_by = match &self.spool {
            Some((_, after)) => deadline.min(Instant::now() + *after),
            None => deadline,
        };
        let record =
            EventRecord::build(&self.sink, &self.framing, event, topic, listed_by, deadline)
                .await?;
        let outcome = match self.write_durably(record.message(), deadline).await? {
            Durable::Acked(ack) => Outcome::Accepted {
                event_id: event.event_id.clone(),
                topic: record.topic,
                partition: ack.partition,
                offset: ack.offset,
            },
            Durable::Spooled { why } => Outcome::Spooled {
                event_id: event.event_id.clone(),
                topic: record.topic,
                why,
            },
        };
        // Spooled counts as accepted: a redelivery is a duplicate.
        claim.commit().await;
        Ok(outcome)
    }

    /// Writes `msg` by `deadline`: to the broker, acknowledged; or, with the spool, to the spool
    /// when the broker is slow ([`Writer::write_or_spool`]).
    async fn write_durably(
        &self,
        msg: OutboundMessage<'_>,
        deadline: Instant,
    ) -> Result<Durable, ProduceError> {
        match &self.spool {
            Some((spool, after)) => self.write_or_spool(spool, *after, msg, deadline).await,
            None => Ok(Durable::Acked(self.sink.publish(msg, deadline).await?)),
        }
    }

    /// Writes `msg`, waiting `after` for the broker's acknowledgement, and spools it if none
    /// came by then (at once while writes are known to fail). One write, one outcome:
    /// - a record the producer would refuse is refused now, as in fair weather (413);
    /// - the spool's room is reserved before the first write starts: without room, the webhook
    ///   is written as without a spool (its answer waits for the write's outcome, by
    ///   `deadline`), so a 503 never leaves a write behind it;
    /// - a first write still in flight when the record is spooled is settled by the spool.
    async fn write_or_spool(
        &self,
        spool: &Arc<Spool>,
        after: Duration,
        msg: OutboundMessage<'_>,
        deadline: Instant,
    ) -> Result<Durable, ProduceError> {
        self.sink.check_size(&msg)?;
        let attempt = !self.sink.writes_failing();
        let record = SpooledRecord::new(
            msg.provider,
            msg.event_name,
            msg.topic,
            msg.key,
            msg.value.to_vec(),
            msg.headers,
            attempt,
        );
        let reservation = match spool.reserve(&record) {
            Ok(reservation) => reservation,
            // No room: written as without a spool, or (writes known to fail) refused at once.
            Err(error) if attempt => {
                return match self.sink.publish(msg, deadline).await {
                    Ok(ack) => Ok(Durable::Acked(ack)),
                    Err(e) if e.class() == FailureClass::Retriable => Err(ProduceError::Publish(
                        PublishError::new(e.reason, format!("{e}, and {error}; nothing was kept")),
                    )),
                    Err(e) => Err(ProduceError::Publish(e)),
                };
            }
            Err(error) => return Err(ProduceError::Spool(error)),
        };
        let mut first_attempt = None;
        let mut why = self
            .sink
            .client_blocking()
            .map(|failure| failure.to_string());
        // While writes are known to fail, spooled at once: waiting `after` for each would let
        // a few connections carry only a few webhooks a second.
        if attempt {
            match self
                .sink
                .publish_or_wait(msg, Instant::now() + after, deadline)
                .await
            {
                Ok(Published::Acked(ack)) => return Ok(Durable::Acked(ack)),
                Ok(Published::Waiting(first)) => first_attempt = Some(first),
                Err(e) if e.class() != FailureClass::Retriable => {
                    return Err(ProduceError::Publish(e))
                }
                Err(e) => why = Some(e.to_string()),
            }
        }
        match spool.append(reservation, first_attempt, deadline).await {
            Ok(()) => Ok(Durable::Spooled { why }),
            // The disk failed under a record with room reserved: the answer is the first
            // write's, if it comes by the deadline.
            Err(Refused {
                error,
                first_attempt: Some(first),
            }) => match tokio::time::timeout_at(deadline, first).await {
                Ok(Ok(ack)) => Ok(Durable::Acked(ack)),
                Ok(Err(e)) => Err(ProduceError::Publish(PublishError::new(
                    e.reason,
                    format!("{e}; and {error}; nothing was kept"),
                ))),
                Err(_) => Err(ProduceError::Spool(error)),
            },
            Err(Refused { error, .. }) => Err(ProduceError::Spool(error)),
        }
    }

    /// Claims `event_id` in `namespace`, waiting for another delivery's write of it until
    /// `deadline`.
    async fn claim(
        &self,
        namespace: Namespace,
        provider: &'static str,
        event_id: &str,
        deadline: Instant,
    ) -> Result<Verdict, ApiError> {
        match tokio::time::timeout_at(deadline, self.dedupe.claim(namespace, provider, event_id))
            .await
        {
            Ok(Ok(verdict)) => Ok(verdict),
            Ok(Err(unavailable)) => Err(self.rejection(ProduceError::Dedupe(unavailable))),
            Err(_) => Err(self.unavailable(claim_timed_out())),
        }
    }

    /// Writes `letter` to the dead-letter topic by `deadline`; without one (disabled), or when
    /// even the body alone is too large for it, the answer is `original`. A letter whose event
    /// id was kept within the dedupe window is not written again.
    pub(super) async fn dead_letter(
        &self,
        provider: &'static str,
        letter: DeadLetter,
        original: ApiError,
        deadline: Instant,
    ) -> Result<Outcome, ApiError> {
        let code = original.code().as_str();
        let Some(topic) = &self.dead_letter_topic else {
            return Err(original);
        };
        // Dropped without a commit on any early return: the provider's retry tries again.
        let claim = match &letter.event_id {
            Some(id) => match self
                .claim(Namespace::DeadLetter, provider, id, deadline)
                .await?
            {
                Verdict::Duplicate => {
                    return Ok(Outcome::DeadLettered {
                        error: code,
                        detail: letter.detail,
                        duplicate: true,
                    })
                }
                Verdict::Claimed(claim) => Some(claim),
            },
            None => None,
        };
        let texts = letter.texts();
        let msg = OutboundMessage {
            topic,
            key: letter.event_id.as_deref(),
            value: &letter.body,
            headers: &letter.headers(&texts),
            provider,
            event_name: None,
        };
        let written = self
            .write_durably(msg, deadline)
            .await
            .map_err(|e| match e {
                ProduceError::Publish(e) => e,
                ProduceError::Spool(spooled) => PublishError::new(
                    FailureReason::BrokerUnavailable,
                    format!("the broker did not acknowledge in time, and {spooled}"),
                ),
                other => PublishError::new(FailureReason::ClientError, other.to_string()),
            });
        match written {
            Ok(_) => {
                if let Some(claim) = claim {
                    claim.commit().await;
                }
                Ok(Outcome::DeadLettered {
                    error: code,
                    detail: letter.detail,
                    duplicate: false,
                })
            }
            Err(e) if e.class() == FailureClass::TooLarge => Err(original),
            Err(e) => Err(self.unavailable(e)),
        }
    }
}

/// Another delivery of the same id held its claim past the deadline.
fn claim_timed_out() -> PublishError {
    PublishError::new(
        FailureReason::Deadline,
        "another delivery of this event is still being written; nothing was written",
    )
}

/// Where a write that may be spooled ended.
enum Durable {
    /// Acknowledged by the broker.
    Acked(Acknowledged),
    /// On disk in the spool (its first write, if still in flight, settled by the spool).
    Spooled {
        /// Why the broker did not take it first, when known.
        why: Option<String>,
    },
}

/// Why an event's write wrote nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProduceError {
    /// The record does not match the schema: a bug in hookstream.
    #[error(transparent)]
    Encode(avro::EncodeError),
    #[error(transparent)]
    Registry(RegistryError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The shared deduplication store could not be asked (`on_unavailable = "reject"`).
    #[error(transparent)]
    Dedupe(Unavailable),
    /// Not acknowledged in time, and the spool could not take it (full, or unwritable).
    #[error(transparent)]
    Spool(SpoolError),
}
