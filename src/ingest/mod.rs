//! The webhook pipeline, independent of HTTP: verify → parse → handshake? → normalize →
//! deduplicate → encode → produce → record the id.
//!
//! A verified delivery that cannot be normalized (not JSON, the wrong shape, a record too large
//! for its topic) is written to the dead-letter topic instead ([`crate::dead_letter`]) and
//! answered `dead_lettered`, unless dead letters are disabled.
//!
//! `hookstream dead-letters replay` (`crate::operations::replay`) writes through
//! [`produce_event`] too, so a replayed event gets the same record, key and headers.

use crate::avro::{self, FrameError, Framing, RegistryError};
use crate::codes::{FailureClass, FailureReason};
use crate::configuration::{ConfigError, Settings};
use crate::dead_letter::DeadLetter;
use crate::dedupe::{Dedupe, Namespace, Unavailable, Verdict};
use crate::error::ApiError;
use crate::event::WebhookEvent;
use crate::kafka::{
    event_headers, Acknowledged, KafkaSink, OutboundMessage, PublishError, Published,
};
use crate::naming;
use crate::providers::{self, Handshake, ParsedBody, Provider, Registry, VerifiedPayload};
use crate::signature::{HeaderSource, Secret, SignatureError, VerifiedBody};
use crate::spool::{Refused, Spool, SpoolError, SpooledRecord};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

mod detached;
use detached::Detached;

/// What happened to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written to `topic` and acknowledged by the broker.
    Accepted {
        event_id: String,
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// Not acknowledged within `spool.after` (or the broker is known to be failing): on local
    /// disk, fsynced, on its way to `topic`.
    Spooled {
        event_id: String,
        topic: String,
        /// Why it was not written at once, when that is known (a refused password).
        why: Option<String>,
    },
    /// Already written within the dedupe window; nothing produced.
    Duplicate { event_id: String },
    /// A URL-verification handshake; nothing produced.
    Handshake(Handshake),
    /// Could not be normalized; kept in the dead-letter topic (acknowledged by the broker), or
    /// already kept there within the dedupe window (`duplicate`: nothing written).
    DeadLettered {
        error: &'static str,
        detail: String,
        duplicate: bool,
    },
}

pub struct Ingest {
    /// The providers served and their secrets: replaced whole when the configuration is
    /// reloaded, while each request keeps the one it started with ([`Ingest::providers`]).
    providers: RwLock<Arc<Providers>>,
    topic_prefix: String,
    writer: Arc<Writer>,
}

/// The providers one configuration serves and their secrets: what a reload replaces.
pub struct Providers {
    /// Every provider of the configuration, built-in or defined there.
    registry: Registry,
    /// Secrets per provider; an empty list means the provider is disabled.
    secrets: HashMap<&'static str, Vec<Secret>>,
}

impl Providers {
    /// `registry`'s providers with the secrets `settings` gives them. `Err` when a provider's
    /// secrets cannot be read (validated configurations never fail).
    pub fn new(settings: &Settings, registry: Registry) -> Result<Self, ConfigError> {
        let secrets = registry
            .iter()
            .map(|p| Ok((p.name(), settings.secrets_for(p)?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self { registry, secrets })
    }

    /// Every provider of the configuration.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The enabled provider called `name`.
    pub fn provider(&self, name: &str) -> Result<&'static dyn Provider, ApiError> {
        let provider = self
            .registry
            .find(name)
            .ok_or_else(|| ApiError::UnknownProvider(name.to_string()))?;
        if self.secrets_of(provider).is_empty() {
            return Err(ApiError::ProviderDisabled(provider.name()));
        }
        Ok(provider)
    }

    /// Names of the providers that have secrets configured.
    pub fn enabled(&self) -> Vec<&'static str> {
        self.registry
            .iter()
            .map(|p| p.name())
            .filter(|n| self.secrets.get(n).is_some_and(|s| !s.is_empty()))
            .collect()
    }

    /// How many secrets `provider` has (a well-formed signature is compared under each).
    pub fn secret_count(&self, provider: &dyn Provider) -> usize {
        self.secrets_of(provider).len()
    }

    fn secrets_of(&self, provider: &dyn Provider) -> &[Secret] {
        self.secrets
            .get(provider.name())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The write half of the pipeline, shared with the task each write runs in.
struct Writer {
    dedupe: Arc<Dedupe>,
    sink: Arc<KafkaSink>,
    framing: Framing,
    /// `None` when dead letters are disabled.
    dead_letter_topic: Option<String>,
    /// The one deadline of a request's write: claim, topic, framing, enqueue and ack together.
    ack_timeout: Duration,
    /// Sent as `Retry-After` with 503s.
    retry_after: Duration,
    /// The durable spool, when enabled, and how long a write waits for the broker before its
    /// record is spooled instead (`spool.after`).
    spool: Option<(Arc<Spool>, Duration)>,
}

/// Where a verified body went before any write.
enum Prepared {
    Handshake(Handshake),
    Event(Box<WebhookEvent>),
}

/// Why a verified body yields no event.
enum Unusable {
    /// A malformed handshake: answered with the error, never dead-lettered.
    Refused(ApiError),
    /// Not JSON, or not the provider's shape: a dead letter.
    Unprocessable {
        error: ApiError,
        event_id: Option<String>,
    },
}

impl Ingest {
    /// `Err` when a provider's secrets cannot be read (validated configurations never fail).
    /// `spool`: the server's spool, when enabled (never a command's: one process owns it).
    pub(crate) fn new(
        settings: &Settings,
        registry: Registry,
        sink: Arc<KafkaSink>,
        framing: Framing,
        dedupe: Arc<Dedupe>,
        spool: Option<Arc<Spool>>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            providers: RwLock::new(Arc::new(Providers::new(settings, registry)?)),
            topic_prefix: settings.kafka.topic_prefix.clone(),
            writer: Arc::new(Writer {
                dedupe,
                sink,
                framing,
                dead_letter_topic: settings
                    .dead_letter
                    .enabled
                    .then(|| settings.dead_letter.topic(&settings.kafka.topic_prefix)),
                ack_timeout: settings.kafka.ack_timeout,
                retry_after: settings.server.retry_after,
                spool: spool.map(|spool| (spool, settings.spool.after)),
            }),
        })
    }

    /// The providers served now and their secrets. A request takes them once, when it starts,
    /// and finishes with them whatever a reload does meanwhile.
    pub fn providers(&self) -> Arc<Providers> {
        self.providers.read().clone()
    }

    /// Serves `providers` from now on (requests already started keep theirs).
    pub fn replace_providers(&self, providers: Providers) {
        *self.providers.write() = Arc::new(providers);
    }

    /// The enabled provider called `name`, of the providers served now.
    pub fn provider(&self, name: &str) -> Result<&'static dyn Provider, ApiError> {
        self.providers().provider(name)
    }

    /// Names of the providers that have secrets configured now.
    pub fn enabled_providers(&self) -> Vec<&'static str> {
        self.providers().enabled()
    }

    /// Measures the dedupe cache: its size and horizon, and a warning when the horizon is short.
    /// Updates the gauges that are read rather than counted (dedupe and spool sizes), for a
    /// scrape: the spool's forwarder measures too, but it may be waiting out a dead broker.
    pub fn measure(&self) {
        self.writer.dedupe.measure();
        if let Some((spool, _)) = &self.writer.spool {
            spool.measure();
        }
    }

    /// Writes a replayed dead letter's event exactly as a delivery's: the same dedupe, topic,
    /// record, key and headers, within one `kafka.ack_timeout`.
    pub(crate) async fn write_replayed(
        &self,
        event: &WebhookEvent,
    ) -> Result<Written, ProduceError> {
        let topic = naming::topic_name(&self.topic_prefix, event.provider, &event.event_name);
        let deadline = Instant::now() + self.writer.ack_timeout;
        self.writer.write_event(event, topic, deadline).await
    }

    /// Runs one request body through the pipeline, verified with the secrets of `providers`
    /// (those the request started with). `Ok` means the provider may stop retrying. `event_id`
    /// is set as soon as the body's event id is known, so that the request's log line can name
    /// it whatever the outcome.
    pub async fn ingest(
        &self,
        providers: &Providers,
        provider: &'static dyn Provider,
        headers: &dyn HeaderSource,
        body: &[u8],
        received_at: i64,
        event_id: &mut Option<String>,
    ) -> Result<Outcome, ApiError> {
        let verified =
            match provider
                .signature()
                .verify(headers, body, providers.secrets_of(provider))
            {
                Ok(verified) => verified,
                Err(SignatureError::Missing(header)) if provider.accepts_unsigned_handshake() => {
                    return unsigned_handshake(provider, body)
                        .unwrap_or(Err(SignatureError::Missing(header).into()));
                }
                Err(e) => return Err(e.into()),
            };
        let content_type = headers.header("content-type").map(<[u8]>::to_vec);
        let request_headers = capture(provider, headers);
        let writer = self.writer.clone();
        // Writes run to their end. If the client disconnects, the HTTP layer drops this future,
        // but the write goes on (in a task of its own, [`Detached`]) until its outcome is known,
        // holding the dedupe claim — so a retry waits for that outcome instead of producing a
        // second copy.
        let write = match prepare(provider, verified, &request_headers, received_at) {
            Ok(Prepared::Handshake(handshake)) => return Ok(Outcome::Handshake(handshake)),
            Ok(Prepared::Event(event)) => {
                *event_id = Some(event.event_id.clone());
                let topic =
                    naming::topic_name(&self.topic_prefix, provider.name(), &event.event_name);
                let span = write_span(provider, Some(&event.event_id));
                Detached::new(
                    async move {
                        writer
                            .write(*event, topic, content_type, request_headers)
                            .await
                    }
                    .instrument(span),
                )
            }
            Err(Unusable::Refused(error)) => return Err(error),
            Err(Unusable::Unprocessable {
                error,
                event_id: id,
            }) if writer.dead_letter_topic.is_none() => {
                *event_id = id;
                return Err(error);
            }
            Err(Unusable::Unprocessable {
                error,
                event_id: id,
            }) => {
                let letter = DeadLetter {
                    provider: provider.name().to_string(),
                    error: error.code().as_str().into(),
                    replay_error: None,
                    detail: error.to_string(),
                    received_at,
                    event_id: id,
                    content_type,
                    request_headers,
                    body: body.to_vec(),
                    replay_attempts: 0,
                };
                event_id.clone_from(&letter.event_id);
                let span = write_span(provider, letter.event_id.as_deref());
                let deadline = Instant::now() + writer.ack_timeout;
                Detached::new(
                    async move {
                        writer
                            .dead_letter(provider.name(), letter, error, deadline)
                            .await
                    }
                    .instrument(span),
                )
            }
        };
        write.await.map_err(|_| ApiError::WriteTask)?
    }
}

/// The span of a request's write, for what is logged while it runs (at `debug`: an `info` span
/// per request costs several percent of a busy server's CPU, and the request's own log line
/// names the provider and event id anyway).
fn write_span(provider: &dyn Provider, event_id: Option<&str>) -> tracing::Span {
    tracing::debug_span!("webhook", provider = provider.name(), event_id)
}

/// Longest value of a captured request header, in bytes (the HTTP server bounds headers too;
/// this bounds what a dead letter keeps).
const MAX_CAPTURED_HEADER_BYTES: usize = 1024;

/// The headers `provider` reads besides its signature, as text (lowercase names).
fn capture(provider: &dyn Provider, headers: &dyn HeaderSource) -> Vec<(String, String)> {
    provider
        .request_headers()
        .iter()
        .filter_map(|name| {
            let value = headers.header(name)?;
            let value = &value[..value.len().min(MAX_CAPTURED_HEADER_BYTES)];
            Some((
                (*name).to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })
        .collect()
}

/// Parses, recognizes a handshake, or normalizes a verified body.
fn prepare(
    provider: &dyn Provider,
    verified: VerifiedBody<'_>,
    headers: &[(String, String)],
    received_at: i64,
) -> Result<Prepared, Unusable> {
    let unprocessable = |error: ApiError, event_id| Unusable::Unprocessable { error, event_id };
    let payload = VerifiedPayload::parse(verified).map_err(|e| unprocessable(e.into(), None))?;
    let request = payload
        .request(headers)
        .map_err(|e| unprocessable(e.into(), None))?;
    if let Some(handshake) = provider
        .handshake(&request)
        .map_err(|e| Unusable::Refused(e.into()))?
    {
        return Ok(Prepared::Handshake(handshake));
    }
    providers::normalize(provider, &payload, headers, received_at)
        .map(|event| Prepared::Event(Box::new(event)))
        .map_err(|e| unprocessable(e.into(), provider.event_id(&request)))
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
    async fn write(
        &self,
        event: WebhookEvent,
        topic: String,
        content_type: Option<Vec<u8>>,
        request_headers: Vec<(String, String)>,
    ) -> Result<Outcome, ApiError> {
        let deadline = Instant::now() + self.ack_timeout;
        match self.write_event(&event, topic, deadline).await {
            Ok(Written::Accepted { ack, topic }) => Ok(Outcome::Accepted {
                event_id: event.event_id,
                topic,
                partition: ack.partition,
                offset: ack.offset,
            }),
            Ok(Written::Spooled { topic, why }) => Ok(Outcome::Spooled {
                event_id: event.event_id,
                topic,
                why,
            }),
            Ok(Written::Duplicate) => Ok(Outcome::Duplicate {
                event_id: event.event_id,
            }),
            Err(ProduceError::Publish(e)) if e.class() == FailureClass::TooLarge => {
                // The record is too large for its topic: keep the body alone as a dead letter.
                let error = self.unavailable(e);
                let letter = DeadLetter {
                    provider: event.provider.to_string(),
                    error: error.code().as_str().into(),
                    replay_error: None,
                    detail: error.to_string(),
                    received_at: event.received_at,
                    event_id: Some(event.event_id),
                    content_type,
                    request_headers,
                    body: event.raw_payload.into_bytes(),
                    replay_attempts: 0,
                };
                self.dead_letter(event.provider, letter, error, deadline)
                    .await
            }
            Err(e) => Err(self.rejection(e)),
        }
    }

    /// Claims the event's id, produces the event to `topic` (or its provider's overflow topic,
    /// past `kafka.max_topics_per_provider`) and records the id, by `deadline`. Any error
    /// releases the claim, so the provider's retry (or the next replay) gets a fresh attempt.
    async fn write_event(
        &self,
        event: &WebhookEvent,
        topic: String,
        deadline: Instant,
    ) -> Result<Written, ProduceError> {
        // Duplicates are decided before any encoding work.
        let claim = match tokio::time::timeout_at(
            deadline,
            self.dedupe
                .claim(Namespace::Event, event.provider, event.dedupe_id()),
        )
        .await
        {
            Ok(Ok(Verdict::Duplicate)) => return Ok(Written::Duplicate),
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
        let topic = self
            .sink
            .event_topic(event.provider, topic, listed_by)
            .await;
        let Some((spool, after)) = &self.spool else {
            let ack = produce_event(&self.sink, &self.framing, event, &topic, deadline).await?;
            claim.commit().await;
            return Ok(Written::Accepted { ack, topic });
        };
        let value = encode_value(&self.framing, event, &topic, deadline).await?;
        let headers = event_headers(event.provider, &event.event_name, &event.event_id);
        let msg = OutboundMessage {
            topic: &topic,
            key: event.subject_id.as_deref(),
            value: &value,
            headers: &headers,
            provider: event.provider,
            event_name: Some(&event.event_name),
        };
        match self.write_or_spool(spool, *after, msg, deadline).await? {
            Durable::Acked(ack) => {
                claim.commit().await;
                Ok(Written::Accepted { ack, topic })
            }
            Durable::Spooled { why } => {
                // Spooled counts as accepted: a redelivery is a duplicate.
                claim.commit().await;
                Ok(Written::Spooled { topic, why })
            }
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
    async fn dead_letter(
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
        let published = match &self.spool {
            Some((spool, after)) => {
                let texts = letter.texts();
                let msg = OutboundMessage {
                    topic,
                    key: letter.event_id.as_deref(),
                    value: &letter.body,
                    headers: &letter.headers(&texts),
                    provider,
                    event_name: None,
                };
                self.write_or_spool(spool, *after, msg, deadline)
                    .await
                    .map(|_| ())
                    .map_err(|e| match e {
                        ProduceError::Publish(e) => e,
                        ProduceError::Spool(spooled) => PublishError::new(
                            FailureReason::BrokerUnavailable,
                            format!("the broker did not acknowledge in time, and {spooled}"),
                        ),
                        other => PublishError::new(FailureReason::ClientError, other.to_string()),
                    })
            }
            None => letter
                .publish(&self.sink, topic, provider, deadline)
                .await
                .map(|_| ()),
        };
        match published {
            Ok(()) => {
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

/// What writing an event did.
#[derive(Debug, Clone)]
pub(crate) enum Written {
    /// Acknowledged, in `topic` (the event's own, or its provider's overflow topic).
    Accepted { ack: Acknowledged, topic: String },
    /// On disk in the spool, on its way to `topic`; `why` it was not written at once, when
    /// known.
    Spooled { topic: String, why: Option<String> },
    /// Already written within the dedupe window: nothing written.
    Duplicate,
}

/// Why [`produce_event`] wrote nothing.
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

/// Encodes and frames `event`, then produces it to `topic` by `deadline`: the same record, key
/// and headers whether the event arrives now or is replayed from the dead-letter topic.
pub(crate) async fn produce_event(
    sink: &KafkaSink,
    framing: &Framing,
    event: &WebhookEvent,
    topic: &str,
    deadline: Instant,
) -> Result<Acknowledged, ProduceError> {
    let value = encode_value(framing, event, topic, deadline).await?;
    sink.publish(
        OutboundMessage {
            topic,
            key: event.subject_id.as_deref(),
            value: &value,
            headers: &event_headers(event.provider, &event.event_name, &event.event_id),
            provider: event.provider,
            event_name: Some(&event.event_name),
        },
        deadline,
    )
    .await
    .map_err(ProduceError::Publish)
}

/// The event's framed value for `topic`, by `deadline` (a registry lookup may be needed).
async fn encode_value(
    framing: &Framing,
    event: &WebhookEvent,
    topic: &str,
    deadline: Instant,
) -> Result<Vec<u8>, ProduceError> {
    match tokio::time::timeout_at(deadline, avro::encode_framed(framing, topic, event)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(FrameError::Encode(e))) => Err(ProduceError::Encode(e)),
        Ok(Err(FrameError::Registry(e))) => Err(ProduceError::Registry(e)),
        Err(_) => Err(ProduceError::Registry(RegistryError::Timeout)),
    }
}

/// A request without a signature header is answered only if it is a well-formed handshake.
/// `None`: not a handshake (the caller reports the missing signature).
fn unsigned_handshake(provider: &dyn Provider, body: &[u8]) -> Option<Result<Outcome, ApiError>> {
    let parsed = ParsedBody::parse(body).ok()?;
    let request = parsed.request(&[]).ok()?;
    match provider.handshake(&request) {
        Ok(Some(handshake)) => Some(Ok(Outcome::Handshake(handshake))),
        Ok(None) => None,
        Err(e) => Some(Err(e.into())),
    }
}
