//! `hookstream dead-letters replay`: dead letters back through the current normalization.
//!
//! Reads the dead-letter topic as the consumer group `dead_letter.replay_group` (from its
//! committed offsets, or from the beginning), normalizes every dead letter again — without a
//! signature check: only hookstream writes that topic — and produces those that now succeed to
//! their normal topic, with the same topic, key, headers and record as if they had arrived now
//! (and their original `received_at`). Offsets are committed only after those writes were
//! acknowledged. What still fails stays in the dead-letter topic and is counted by reason.

use super::reader::{Reader, Start};
use crate::avro::{Framing, RegistryClient};
use crate::codes::FailureClass;
use crate::configuration::Settings;
use crate::dead_letter::StoredDeadLetter;
use crate::error::ApiError;
use crate::event::WebhookEvent;
use crate::ingest::{produce_event, ProduceError};
use crate::kafka::KafkaSink;
use crate::metrics::Metrics;
use crate::naming;
use crate::providers::{self, VerifiedPayload};
use crate::signature::VerifiedBody;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Dead letters written per batch (between two commits).
const BATCH: usize = 256;

#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Report only: write and commit nothing.
    pub dry_run: bool,
    /// Ignore the group's committed offsets.
    pub from_beginning: bool,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub read: u64,
    /// Written to their normal topic (with `dry_run`: would have been).
    pub replayed: u64,
    /// Still failing, by error code.
    pub still_failing: BTreeMap<String, u64>,
    pub dry_run: bool,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failing: u64 = self.still_failing.values().sum();
        write!(
            f,
            "read {}, {} {}, still failing {failing}",
            self.read,
            if self.dry_run {
                "would replay"
            } else {
                "replayed"
            },
            self.replayed
        )?;
        if failing > 0 {
            let reasons: Vec<String> = self
                .still_failing
                .iter()
                .map(|(reason, n)| format!("{reason}: {n}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        if self.dry_run {
            f.write_str(" (dry run: nothing written or committed)")?;
        }
        Ok(())
    }
}

/// Runs a replay to the end the topic had when it began. `Err` on a broker or registry error
/// (nothing of the unfinished batch is committed; running it again resumes there).
pub async fn replay(settings: &Settings, options: ReplayOptions) -> Result<ReplaySummary, String> {
    let topic = settings.dead_letter.topic(&settings.kafka.topic_prefix);
    let start = if options.from_beginning {
        Start::Beginning
    } else {
        Start::Committed
    };
    let (kafka, group) = (
        settings.kafka.clone(),
        settings.dead_letter.replay_group.clone(),
    );
    let open_topic = topic.clone();
    let mut reader = blocking(move || Reader::open(&kafka, &group, &open_topic, start)).await?;
    let writer = Writer::new(settings)?;
    let mut summary = ReplaySummary {
        dry_run: options.dry_run,
        ..ReplaySummary::default()
    };
    let mut progress = Progress::new(reader.remaining());
    while !reader.done() {
        let (r, batch) = blocking(move || {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH && !reader.done() {
                if let Some(letter) = reader.next()? {
                    batch.push(letter);
                }
            }
            Ok((reader, batch))
        })
        .await?;
        reader = r;
        summary.read += batch.len() as u64;
        let mut events = Vec::with_capacity(batch.len());
        for letter in &batch {
            match renormalize(letter) {
                Ok(event) => events.push(event),
                Err(reason) => *summary.still_failing.entry(reason).or_default() += 1,
            }
        }
        if options.dry_run {
            summary.replayed += events.len() as u64;
        } else {
            for still_failing in writer.write_all(&events).await? {
                match still_failing {
                    None => summary.replayed += 1,
                    Some(reason) => *summary.still_failing.entry(reason).or_default() += 1,
                }
            }
            reader = blocking(move || reader.commit().map(|()| reader)).await?;
        }
        progress.update(&summary);
    }
    progress.finish();
    Ok(summary)
}

/// Runs blocking Kafka consumer calls off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("a reader task failed: {e}"))?
}

/// The dead letter through today's normalization; `Err` is the error code it still fails with.
fn renormalize(letter: &StoredDeadLetter) -> Result<WebhookEvent, String> {
    let code = |e: ApiError| e.code().as_str().to_string();
    let provider = letter
        .provider
        .as_deref()
        .and_then(providers::find)
        .ok_or_else(|| "unknown_provider".to_string())?;
    let payload = VerifiedPayload::parse(VerifiedBody::from_dead_letter(&letter.body))
        .map_err(|e| code(e.into()))?;
    let object = payload.object().map_err(|e| code(e.into()))?;
    if !matches!(provider.handshake(object), Ok(None)) {
        return Err("handshake".to_string());
    }
    let received_at = letter.received_at.unwrap_or_default();
    providers::normalize(provider, &payload, received_at).map_err(|e| code(e.into()))
}

/// Produces replayed events the way the server does.
struct Writer {
    sink: KafkaSink,
    framing: Framing,
    topic_prefix: String,
    ack_timeout: Duration,
}

impl Writer {
    fn new(settings: &Settings) -> Result<Self, String> {
        // Metrics of a command-line run are not exported; the sink needs somewhere to count.
        let metrics = Arc::new(Metrics::new().map_err(|e| e.to_string())?);
        let sink = KafkaSink::new(&settings.kafka, metrics)
            .map_err(|e| format!("cannot create a Kafka producer: {e}"))?;
        let framing = if settings.schema_registry.enabled() {
            Framing::SchemaRegistry(Arc::new(
                RegistryClient::new(&settings.schema_registry).map_err(|e| e.to_string())?,
            ))
        } else {
            Framing::single_object()
        };
        Ok(Self {
            sink,
            framing,
            topic_prefix: settings.kafka.topic_prefix.clone(),
            ack_timeout: settings.kafka.ack_timeout,
        })
    }

    /// Writes every event and waits for every acknowledgement. Per event: `None` when written,
    /// or the reason it still cannot be (too large for its topic). Any other failure (broker,
    /// registry) is an error that ends the replay.
    async fn write_all(&self, events: &[WebhookEvent]) -> Result<Vec<Option<String>>, String> {
        let writes = events.iter().map(|event| async move {
            let topic = naming::topic_name(&self.topic_prefix, event.provider, &event.event_name);
            let deadline = tokio::time::Instant::now() + self.ack_timeout;
            produce_event(&self.sink, &self.framing, event, &topic, deadline).await
        });
        futures_util::future::join_all(writes)
            .await
            .into_iter()
            .map(|result| match result {
                Ok(_) => Ok(None),
                Err(ProduceError::Publish(e)) if e.class() == FailureClass::TooLarge => {
                    Ok(Some("payload_too_large".to_string()))
                }
                Err(e) => Err(format!("a replayed event could not be written: {e}")),
            })
            .collect()
    }
}

/// A progress bar on a terminal, a line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_line: std::time::Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            total,
            last_line: std::time::Instant::now(),
        }
    }

    fn update(&mut self, summary: &ReplaySummary) {
        let failing: u64 = summary.still_failing.values().sum();
        match &self.bar {
            Some(bar) => {
                bar.set_position(summary.read);
                bar.set_message(format!(
                    "{} replayed, {failing} still failing",
                    summary.replayed
                ));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(2) => {
                eprintln!(
                    "replay: {}/{} read, {} replayed, {failing} still failing",
                    summary.read, self.total, summary.replayed
                );
                self.last_line = std::time::Instant::now();
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
