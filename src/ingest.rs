//! The webhook pipeline, independent of HTTP: verify → parse → handshake? → normalize →
//! deduplicate → encode → produce → record the id.

use crate::avro::{self, Framing, RegistryError};
use crate::configuration::Settings;
use crate::dedupe::{DedupeCache, Verdict};
use crate::error::ApiError;
use crate::event::WebhookEvent;
use crate::kafka::{FailureReason, KafkaSink, OutboundMessage, PublishError};
use crate::naming;
use crate::providers::{self, Handshake, ParsedBody, Provider, VerifiedPayload};
use crate::signature::{HeaderSource, Secret, SignatureError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What happened to an accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written to `topic` and acknowledged by the broker.
    Accepted { event_id: String, topic: String },
    /// Already written within the dedupe window; nothing produced.
    Duplicate { event_id: String },
    /// A URL-verification handshake; nothing produced.
    Handshake(Handshake),
}

pub struct Ingest {
    /// Secrets per registered provider; an empty list means the provider is disabled.
    secrets: HashMap<&'static str, Vec<Secret>>,
    topic_prefix: String,
    writer: Arc<Writer>,
}

/// The write half of the pipeline, shared with the task each write runs in.
struct Writer {
    dedupe: DedupeCache,
    sink: Arc<KafkaSink>,
    framing: Framing,
    /// The one deadline of a request's write: claim, topic, framing, enqueue and ack together.
    ack_timeout: Duration,
    /// Sent as `Retry-After` with 503s.
    retry_after: Duration,
}

impl Ingest {
    pub fn new(settings: &Settings, sink: Arc<KafkaSink>, framing: Framing) -> Self {
        let secrets = providers::REGISTRY
            .iter()
            .map(|p| (p.name(), settings.secrets_for(p.name())))
            .collect();
        Self {
            secrets,
            topic_prefix: settings.kafka.topic_prefix.clone(),
            writer: Arc::new(Writer {
                dedupe: DedupeCache::new(settings.dedupe.window, settings.dedupe.max_entries),
                sink,
                framing,
                ack_timeout: settings.kafka.ack_timeout,
                retry_after: settings.server.retry_after,
            }),
        }
    }

    /// The enabled provider called `name`.
    pub fn provider(&self, name: &str) -> Result<&'static dyn Provider, ApiError> {
        let provider =
            providers::find(name).ok_or_else(|| ApiError::UnknownProvider(name.to_string()))?;
        if self.secrets_of(provider).is_empty() {
            return Err(ApiError::ProviderDisabled(provider.name()));
        }
        Ok(provider)
    }

    /// Names of the providers that have secrets configured.
    pub fn enabled_providers(&self) -> Vec<&'static str> {
        providers::REGISTRY
            .iter()
            .map(|p| p.name())
            .filter(|n| self.secrets.get(n).is_some_and(|s| !s.is_empty()))
            .collect()
    }

    pub fn dedupe_len(&self) -> usize {
        self.writer.dedupe.len()
    }

    fn secrets_of(&self, provider: &dyn Provider) -> &[Secret] {
        self.secrets
            .get(provider.name())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Runs one request body through the pipeline. `Ok` means the provider may stop retrying.
    pub async fn ingest(
        &self,
        provider: &'static dyn Provider,
        headers: &dyn HeaderSource,
        body: &[u8],
        received_at: i64,
    ) -> Result<Outcome, ApiError> {
        let verified = match provider
            .signature()
            .verify(headers, body, self.secrets_of(provider))
        {
            Ok(verified) => verified,
            Err(SignatureError::Missing(header)) if provider.accepts_unsigned_handshake() => {
                return unsigned_handshake(provider, body)
                    .unwrap_or(Err(SignatureError::Missing(header).into()));
            }
            Err(e) => return Err(e.into()),
        };
        let payload = VerifiedPayload::parse(verified)?;
        if let Some(handshake) = provider.handshake(payload.object()?)? {
            return Ok(Outcome::Handshake(handshake));
        }
        let event = provider.normalize(&payload, received_at)?;
        let topic = naming::topic_name(&self.topic_prefix, provider.name(), &event.event_name);
        // The write runs as a task of its own. If the client disconnects, the HTTP layer drops
        // this future, but the write goes on until its outcome is known, holding the dedupe
        // claim — so a retry waits for that outcome instead of producing a second copy.
        let writer = self.writer.clone();
        tokio::spawn(async move { writer.write(event, topic).await })
            .await
            .map_err(|e| ApiError::Internal(format!("the write task failed: {e}")))?
    }
}

impl Writer {
    /// Deduplicate, encode, frame, produce and record the id, all within one deadline.
    async fn write(&self, event: WebhookEvent, topic: String) -> Result<Outcome, ApiError> {
        let deadline = Instant::now() + self.ack_timeout;
        let unavailable = |source| ApiError::Publish {
            source,
            retry_after: self.retry_after,
        };
        // Duplicates are decided before any encoding work.
        let claim = match tokio::time::timeout_at(
            deadline,
            self.dedupe.claim(event.provider, &event.event_id),
        )
        .await
        {
            Ok(Verdict::Duplicate) => {
                tracing::info!(provider = event.provider, event_id = %event.event_id, "duplicate");
                return Ok(Outcome::Duplicate {
                    event_id: event.event_id,
                });
            }
            Ok(Verdict::Claimed(claim)) => claim,
            Err(_) => {
                return Err(unavailable(PublishError::new(
                    FailureReason::Deadline,
                    "another delivery of this event is still being written; nothing was written",
                )))
            }
        };
        // Any early return below drops the claim, which releases the id for the provider's retry.
        let datum = avro::encode_datum(&event).map_err(|e| ApiError::Internal(e.to_string()))?;
        let value =
            match tokio::time::timeout_at(deadline, self.framing.frame(&topic, &datum)).await {
                Ok(framed) => framed,
                Err(_) => Err(RegistryError::Unreachable(
                    "no answer within kafka.ack_timeout".into(),
                )),
            }
            .map_err(|source| ApiError::SchemaRegistry {
                source,
                retry_after: self.retry_after,
            })?;
        let ack = self
            .sink
            .publish(
                OutboundMessage {
                    topic: &topic,
                    key: event.subject_id.as_deref(),
                    value: &value,
                    provider: event.provider,
                    event_name: &event.event_name,
                    event_id: &event.event_id,
                },
                deadline,
            )
            .await
            .map_err(unavailable)?;
        claim.commit();
        tracing::info!(
            provider = event.provider,
            event_id = %event.event_id,
            topic = %topic,
            partition = ack.partition,
            offset = ack.offset,
            "accepted"
        );
        Ok(Outcome::Accepted {
            event_id: event.event_id,
            topic,
        })
    }
}

/// A request without a signature header is answered only if it is a well-formed handshake.
/// `None`: not a handshake (the caller reports the missing signature).
fn unsigned_handshake(provider: &dyn Provider, body: &[u8]) -> Option<Result<Outcome, ApiError>> {
    let parsed = ParsedBody::parse(body).ok()?;
    let object = parsed.object().ok()?;
    match provider.handshake(object) {
        Ok(Some(handshake)) => Some(Ok(Outcome::Handshake(handshake))),
        Ok(None) => None,
        Err(e) => Some(Err(e.into())),
    }
}
