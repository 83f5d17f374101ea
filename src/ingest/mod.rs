//! The webhook pipeline, independent of HTTP: verify → parse → handshake? → normalize →
//! deduplicate → encode → produce → record the id.
//!
//! A verified delivery that cannot be normalized (not JSON, the wrong shape, a record too large
//! for its topic) is written to the dead-letter topic instead ([`crate::dead_letter`]) and
//! answered `dead_lettered`, unless dead letters are disabled.
//!
//! The rooms: this module verifies and prepares (parse, handshake, normalize: [`prepare`], which
//! `hookstream dead-letters replay` calls too); [`record`] turns an event into the message to
//! write (topic, key, headers, value) once; [`write`] deduplicates and writes it — to the
//! broker, or through the spool, which settles a slow first write itself — or keeps a dead
//! letter; [`detached`] lets a write outlive the request that started it.

use crate::avro::Framing;
use crate::configuration::{ConfigError, Settings};
use crate::dedupe::Dedupe;
use crate::error::ApiError;
use crate::event::WebhookEvent;
use crate::kafka::KafkaSink;
use crate::naming;
use crate::providers::{self, Handshake, ParsedBody, Provider, Registry, VerifiedPayload};
use crate::signature::{HeaderSource, Secret, SignatureError, VerifiedBody};
use crate::spool::Spool;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::Instrument;

mod detached;
mod record;
mod write;
use detached::Detached;
pub(crate) use write::ProduceError;
use write::{Envelope, Writer};

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

/// Where a verified body went before any write.
pub(crate) enum Prepared {
    Handshake(Handshake),
    Event(Box<WebhookEvent>),
}

/// Why a verified body yields no event.
pub(crate) enum Unusable {
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
    ) -> Result<Outcome, ProduceError> {
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
        let envelope = Envelope {
            received_at,
            content_type: headers.header("content-type").map(<[u8]>::to_vec),
            request_headers: capture(provider, headers),
        };
        let writer = self.writer.clone();
        // Writes run to their end. If the client disconnects, the HTTP layer drops this future,
        // but the write goes on (in a task of its own, [`Detached`]) until its outcome is known,
        // holding the dedupe claim — so a retry waits for that outcome instead of producing a
        // second copy.
        let write = match prepare(provider, verified, &envelope.request_headers, received_at) {
            Ok(Prepared::Handshake(handshake)) => return Ok(Outcome::Handshake(handshake)),
            Ok(Prepared::Event(event)) => {
                *event_id = Some(event.event_id.clone());
                let topic =
                    naming::topic_name(&self.topic_prefix, provider.name(), &event.event_name);
                let span = write_span(provider, Some(&event.event_id));
                Detached::new(
                    async move { writer.write(*event, topic, envelope).await }.instrument(span),
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
                let letter = envelope.letter(provider.name(), &error, id, body.to_vec());
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

/// Parses, recognizes a handshake, or normalizes a verified body: the same for a delivery and
/// for a dead letter being replayed ([`VerifiedBody::from_dead_letter`]).
pub(crate) fn prepare(
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
