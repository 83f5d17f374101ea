//! `hookstream dead-letters replay`: dead letters back through the current normalization.
//!
//! Reads the dead-letter topic as the consumer group `dead_letter.replay_group` up to the end the
//! topic had when the run began, normalizes every dead letter again — without a signature check:
//! only hookstream writes that topic — and writes those that now succeed through the pipeline's
//! own write path ([`Ingest::write_replayed`]): the same dedupe, topic, key, headers and record as
//! if they had arrived now (with their original `received_at`).
//!
//! A letter that still fails, or whose provider is disabled in the current configuration, is
//! written again at the end of the dead-letter topic (with `hookstream-replay-attempts` counting
//! the failed replays) before the group's offsets move past it, so the next plain replay — after
//! the fix, or once the provider is enabled again — brings it back. Offsets are committed only
//! after every write of a batch was acknowledged; a retriable write error (a full producer queue,
//! a broker that is briefly away) is retried with backoff within the run.
//!
//! A letter whose replay fails keeps its original `hookstream-error` and detail; the replay's
//! own reason goes beside them (`hookstream-replay-error`). A letter whose provider this
//! configuration does not serve (disabled, or not defined here) is not tried at all and counts no
//! attempt: a replay run with another configuration than the server's must not wear letters out.
//! `--provider NAME` replays that provider's letters only; the others go back as they were.
//!
//! `--from-beginning` reads every letter still in the topic. Letters the group had already read
//! (replayed, or failed and written again further on) are replayed once more if they succeed now,
//! and never written to the dead-letter topic a second time; the rest are handled as above.
//!
//! Length: one replay — judge, forecast, write, requeue, progress — reads as one story, and a
//! hundred lines are its tests.

use super::reader::{ReadError, Reader, Start};
use crate::codes::{ErrorCode, FailureClass};
use crate::configuration::Settings;
use crate::dead_letter::StoredDeadLetter;
use crate::dedupe::{Dedupe, Namespace};
use crate::error::ApiError;
use crate::event::WebhookEvent;
use crate::ingest::{prepare, Ingest, Outcome, Prepared, ProduceError, Unusable};
use crate::kafka::{producer_queue_bytes, KafkaSink, PublishError};
use crate::startup::wiring::framing;
use crate::startup::Wiring;

use crate::naming;
use crate::signature::VerifiedBody;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Dead letters per batch (between two commits), at most.
const BATCH: usize = 256;
/// Longest a write keeps being retried while it fails for a reason worth retrying.
const RETRY_BUDGET: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The provider metric label of what a replay writes (its metrics are not exported).
const LABEL: &str = "hookstream";

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Report only: write and commit nothing.
    pub dry_run: bool,
    /// Read every letter still in the topic, not just those after the group's offsets.
    pub from_beginning: bool,
    /// Replay only this provider's letters.
    pub provider: Option<String>,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    pub read: u64,
    /// Written to their normal topic (with `dry_run`: would have been).
    pub replayed: u64,
    /// What was replayed, by the topic written to (with `dry_run`: its event's own topic).
    pub topics: BTreeMap<String, u64>,
    /// Already written within the dedupe window (a copy earlier in this run, or a delivery).
    pub already_written: u64,
    /// Still failing, by error code.
    pub still_failing: BTreeMap<String, u64>,
    /// Not replayed because their provider is disabled in the current configuration.
    pub skipped_disabled: u64,
    /// Not replayed because the current configuration does not define their provider.
    pub skipped_unknown: u64,
    /// Not replayed because `--provider` named another.
    pub other_providers: u64,
    pub dry_run: bool,
}

impl ReplaySummary {
    /// Every letter read that was to be replayed was: none still fails or was skipped.
    pub fn complete(&self) -> bool {
        self.still_failing.is_empty() && self.skipped_disabled == 0 && self.skipped_unknown == 0
    }

    /// Most letters were not tried because this configuration does not serve their provider:
    /// likely not the server's configuration.
    fn mostly_not_served(&self) -> bool {
        let considered = self.read - self.other_providers;
        considered > 0 && (self.skipped_disabled + self.skipped_unknown) * 2 > considered
    }
}

/// `name: count, …` of a summary's tally (topics written, reasons still failing).
fn counts(tally: &BTreeMap<String, u64>) -> String {
    tally
        .iter()
        .map(|(name, n)| format!("{name}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failing: u64 = self.still_failing.values().sum();
        write!(
            f,
            "read {}, {} {}",
            self.read,
            if self.dry_run {
                "would replay"
            } else {
                "replayed"
            },
            self.replayed
        )?;
        if !self.topics.is_empty() {
            write!(f, " ({})", counts(&self.topics))?;
        }
        if self.already_written > 0 {
            write!(f, ", already written {}", self.already_written)?;
        }
        write!(f, ", still failing {failing}")?;
        if failing > 0 {
            write!(f, " ({})", counts(&self.still_failing))?;
        }
        if self.skipped_disabled > 0 {
            write!(f, ", skipped (provider disabled) {}", self.skipped_disabled)?;
        }
        if self.skipped_unknown > 0 {
            write!(
                f,
                ", skipped (provider not configured) {}",
                self.skipped_unknown
            )?;
        }
        if self.other_providers > 0 {
            write!(
                f,
                ", left as they were (other providers) {}",
                self.other_providers
            )?;
        }
        if self.dry_run {
            f.write_str(" (dry run: nothing written or committed)")?;
        }
        if self.mostly_not_served() {
            f.write_str("\nmost letters were skipped because this configuration does not serve their provider: is this the server's configuration? (--config-dir, HOOKSTREAM_ENV and the HOOKSTREAM__ variables are read as `serve` reads them)")?;
        }
        Ok(())
    }
}

/// What today's configuration and normalization make of one dead letter.
enum Judgement {
    Replay(Box<WebhookEvent>),
    /// The error code and detail it fails with now.
    Failing(&'static str, String),
    ProviderDisabled,
    /// This configuration does not define the letter's provider.
    ProviderUnknown,
    /// `--provider` named another.
    OtherProvider,
}

/// Runs a replay to the end the topic had when it began. `Err` on a broker or registry error
/// that outlasted its retries (nothing of the unfinished batch is committed; running it again
/// resumes there).
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
    let mut summary = ReplaySummary {
        dry_run: options.dry_run,
        ..ReplaySummary::default()
    };
    let opened = tokio::task::spawn_blocking(move || {
        Reader::open(&kafka, &group, &open_topic, start, false)
    })
    .await
    .map_err(|e| format!("a reader task failed: {e}"))?;
    let mut reader = match opened {
        Ok(reader) => reader,
        // No dead letter was ever written: nothing to replay.
        Err(ReadError::NoSuchTopic(_)) => return Ok(summary),
        Err(e) => return Err(e.to_string()),
    };
    let replayer = Replayer::new(settings, topic, options.provider.clone())?;
    // Events this dry run would write, so a second copy in the topic is forecast as a duplicate.
    let mut forecast = std::collections::HashSet::new();
    let mut progress = ReplayProgress::new(reader.remaining());
    while !reader.done() {
        let batch_bytes = replayer.batch_bytes;
        let (r, batch) = blocking(move || {
            let mut batch = Vec::new();
            let mut bytes = 0;
            while batch.len() < BATCH && bytes < batch_bytes && !reader.done() {
                if let Some(letter) = reader.next()? {
                    bytes += letter.body.len();
                    batch.push(letter);
                }
            }
            Ok((reader, batch))
        })
        .await?;
        reader = r;
        summary.read += batch.len() as u64;
        let judgements: Vec<Judgement> = batch.iter().map(|l| replayer.judge(l)).collect();
        if options.dry_run {
            for judgement in judgements {
                match judgement {
                    Judgement::Replay(event) => {
                        replayer.forecast(&event, &mut forecast, &mut summary).await
                    }
                    Judgement::Failing(code, _) => count(&mut summary, code),
                    other => skipped(&mut summary, &other),
                }
            }
        } else {
            replayer
                .write_batch(&batch, judgements, &reader, &mut summary)
                .await?;
            reader = blocking(move || reader.commit().map(|()| reader)).await?;
        }
        progress.update(&summary);
    }
    progress.finish();
    Ok(summary)
}

fn count(summary: &mut ReplaySummary, code: &str) {
    *summary.still_failing.entry(code.to_string()).or_default() += 1;
}

/// Counts a letter that was not tried.
fn skipped(summary: &mut ReplaySummary, judgement: &Judgement) {
    match judgement {
        Judgement::ProviderDisabled => summary.skipped_disabled += 1,
        Judgement::ProviderUnknown => summary.skipped_unknown += 1,
        Judgement::OtherProvider => summary.other_providers += 1,
        Judgement::Replay(_) | Judgement::Failing(..) => {}
    }
}

/// Runs blocking Kafka consumer calls off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("a reader task failed: {e}"))?
}

/// Writes replayed events the way the server does, and letters back to the dead-letter topic.
struct Replayer {
    sink: Arc<KafkaSink>,
    ingest: Ingest,
    /// The deployment's deduplication, also asked (without claiming) by a dry run.
    dedupe: Arc<Dedupe>,
    topic_prefix: String,
    /// `--provider`: only this provider's letters are replayed.
    only: Option<String>,
    dead_letter_topic: String,
    ack_timeout: Duration,
    /// Body bytes read per batch, at most: a quarter of the producer queue, so a batch of large
    /// letters (each written once as an event or a letter, and an event record is larger than
    /// its body) fits in the queue.
    batch_bytes: usize,
}

impl Replayer {
    fn new(
        settings: &Settings,
        dead_letter_topic: String,
        only: Option<String>,
    ) -> Result<Self, String> {
        let registry = settings.provider_registry().map_err(|e| e.to_string())?;
        // Built as `serve` builds them; the spool belongs to `serve`.
        let wiring = Wiring::new(settings, &registry.names()).map_err(|e| e.to_string())?;
        let sink = wiring.sink(false).map_err(|e| e.to_string())?;
        // The deployment's own deduplication: with Redis, an event some replica (or an earlier
        // replay) wrote within the window is not written again.
        let dedupe = wiring.dedupe().map_err(|e| e.to_string())?;
        let framing = framing(
            wiring
                .schema_registry()
                .map_err(|e| e.to_string())?
                .as_ref(),
        );
        Ok(Self {
            // The spool belongs to `serve`: a replay writes to Kafka or not at all.
            ingest: Ingest::new(
                settings,
                registry,
                sink.clone(),
                framing,
                dedupe.clone(),
                None,
            )
            .map_err(|e| e.to_string())?,
            dedupe,
            topic_prefix: settings.kafka.topic_prefix.clone(),
            only,
            sink,
            dead_letter_topic,
            ack_timeout: settings.kafka.ack_timeout,
            batch_bytes: (producer_queue_bytes(&settings.kafka) / 4).max(1),
        })
    }

    /// The letter through today's configuration and normalization.
    fn judge(&self, letter: &StoredDeadLetter) -> Judgement {
        let failing = |e: ApiError| Judgement::Failing(e.code().as_str(), e.to_string());
        let name = letter.provider.as_deref().unwrap_or_default();
        if self.only.as_deref().is_some_and(|only| only != name) {
            return Judgement::OtherProvider;
        }
        let provider = match self.ingest.provider(name) {
            Ok(provider) => provider,
            Err(ApiError::ProviderDisabled(_)) => return Judgement::ProviderDisabled,
            Err(ApiError::UnknownProvider(_)) => return Judgement::ProviderUnknown,
            Err(e) => return failing(e),
        };
        // The same preparation as a delivery's: its signature was verified when it arrived.
        let body = VerifiedBody::from_dead_letter(&letter.body);
        let received_at = letter.received_at.unwrap_or_default();
        match prepare(provider, body, &letter.request_headers, received_at) {
            Ok(Prepared::Event(event)) => Judgement::Replay(event),
            Ok(Prepared::Handshake(_)) | Err(Unusable::Refused(_)) => Judgement::Failing(
                ErrorCode::InvalidPayload.as_str(),
                "a URL-verification handshake, not an event".into(),
            ),
            Err(Unusable::Unprocessable { error, .. }) => failing(error),
        }
    }

    /// What writing `event` would come to, counted in `summary` without writing: a duplicate
    /// if this run would already have written it, or the deployment's dedupe remembers it.
    async fn forecast(
        &self,
        event: &WebhookEvent,
        forecast: &mut std::collections::HashSet<(&'static str, String)>,
        summary: &mut ReplaySummary,
    ) {
        let first = forecast.insert((event.provider, event.dedupe_id().to_string()));
        let remembered = self
            .dedupe
            .recorded(Namespace::Event, event.provider, event.dedupe_id())
            .await;
        if !first || remembered {
            summary.already_written += 1;
            return;
        }
        summary.replayed += 1;
        let topic = naming::topic_name(&self.topic_prefix, event.provider, &event.event_name);
        *summary.topics.entry(topic).or_default() += 1;
    }

    /// Writes a batch: events to their topics, the letters still failing or skipped back to the
    /// dead-letter topic. Returns once every write was acknowledged.
    async fn write_batch(
        &self,
        batch: &[StoredDeadLetter],
        judgements: Vec<Judgement>,
        reader: &Reader,
        summary: &mut ReplaySummary,
    ) -> Result<(), String> {
        // Events first, all at once: a letter whose event turns out too large for its topic
        // goes back to the dead-letter topic with the rest.
        let writes = batch
            .iter()
            .zip(judgements)
            .map(|(letter, judgement)| async move {
                let outcome = match judgement {
                    Judgement::Replay(event) => {
                        match retried(|| self.ingest.write_replayed(&event)).await {
                            Ok(written) => return Ok((letter, Ok(written))),
                            Err(ProduceError::Publish(e))
                                if e.class() == FailureClass::TooLarge =>
                            {
                                let error = ApiError::Publish {
                                    source: e,
                                    retry_after: Duration::ZERO,
                                };
                                Judgement::Failing(error.code().as_str(), error.to_string())
                            }
                            Err(e) => {
                                return Err(format!("a replayed event could not be written: {e}"))
                            }
                        }
                    }
                    other => other,
                };
                Ok((letter, Err(outcome)))
            });
        // A letter the group had already read (`--from-beginning`) was written further on when
        // it failed then: that copy, not this one, stays for the next plain replay.
        let mut requeue = Vec::new();
        for result in futures_util::future::join_all(writes).await {
            let (letter, outcome) = result?;
            let again = match outcome {
                // A replay has no spool: `Spooled` cannot happen, and would be written later.
                Ok(Outcome::Accepted { topic, .. } | Outcome::Spooled { topic, .. }) => {
                    summary.replayed += 1;
                    *summary.topics.entry(topic).or_default() += 1;
                    None
                }
                Ok(Outcome::Duplicate { .. }) => {
                    summary.already_written += 1;
                    None
                }
                Ok(other @ (Outcome::Handshake(_) | Outcome::DeadLettered { .. })) => {
                    return Err(format!(
                        "a replayed event's write came to {other:?}, not to a write or a duplicate"
                    ))
                }
                Err(Judgement::Failing(code, detail)) => {
                    count(summary, code);
                    Some(letter.requeued(Some((code, detail)), letter.replay_attempts + 1))
                }
                Err(judgement) => {
                    skipped(summary, &judgement);
                    Some(letter.requeued(None, letter.replay_attempts))
                }
            };
            if let Some(again) = again.filter(|_| !reader.was_committed(letter)) {
                requeue.push(again);
            }
        }
        let writes = requeue.iter().map(|letter| {
            retried(move || async move {
                let deadline = tokio::time::Instant::now() + self.ack_timeout;
                letter
                    .publish(&self.sink, &self.dead_letter_topic, LABEL, deadline)
                    .await
                    .map_err(ProduceError::from)
            })
        });
        for result in futures_util::future::join_all(writes).await {
            result.map_err(|e| {
                format!("a letter that still fails could not be written back to the dead-letter topic: {e}")
            })?;
        }
        Ok(())
    }
}

/// Runs `write` until it succeeds, fails for a reason retrying cannot fix, or [`RETRY_BUDGET`]
/// is spent, waiting longer after each retriable failure.
async fn retried<T, F, Fut>(mut write: F) -> Result<T, ProduceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProduceError>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        match write().await {
            Err(e) if worth_retrying(&e) && started.elapsed() + backoff < RETRY_BUDGET => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            result => return result,
        }
    }
}

fn worth_retrying(error: &ProduceError) -> bool {
    match error {
        ProduceError::Publish(PublishError { reason, .. }) => {
            reason.class() == FailureClass::Retriable
        }
        ProduceError::Registry(_) | ProduceError::Dedupe(_) | ProduceError::Spool(_) => true,
        ProduceError::Encode(_) => false,
    }
}

/// A progress bar on a terminal, a line every few seconds otherwise.
struct ReplayProgress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_line: std::time::Instant,
}

impl ReplayProgress {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::FailureReason;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn failure(reason: FailureReason) -> ProduceError {
        ProduceError::Publish(PublishError::new(reason, "test"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_is_retried_with_backoff_until_the_write_succeeds() {
        let attempts = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result = retried(|| async {
            match attempts.fetch_add(1, Ordering::Relaxed) {
                0..=2 => Err(failure(FailureReason::QueueFull)),
                _ => Ok("written"),
            }
        })
        .await;
        assert_eq!(result.ok(), Some("written"));
        assert_eq!(attempts.load(Ordering::Relaxed), 4);
        // 100 + 200 + 400 ms of backoff.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn what_retrying_cannot_fix_is_not_retried_and_retries_end_with_the_budget() {
        let attempts = AtomicU32::new(0);
        let result: Result<(), _> = retried(|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            Err(failure(FailureReason::NotAuthorized))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(attempts.load(Ordering::Relaxed), 1);

        let started = tokio::time::Instant::now();
        let result: Result<(), _> =
            retried(|| async { Err(failure(FailureReason::Timeout)) }).await;
        assert!(result.is_err());
        assert!(started.elapsed() < RETRY_BUDGET, "{:?}", started.elapsed());
        assert!(
            started.elapsed() > RETRY_BUDGET - MAX_BACKOFF * 2,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_summary_says_what_was_skipped_and_what_still_fails() {
        let mut summary = ReplaySummary {
            read: 4,
            replayed: 1,
            already_written: 1,
            skipped_disabled: 1,
            ..ReplaySummary::default()
        };
        summary
            .topics
            .insert("webhooks.livesession.js_error".into(), 1);
        count(&mut summary, "invalid_json");
        assert_eq!(
            summary.to_string(),
            "read 4, replayed 1 (webhooks.livesession.js_error: 1), already written 1, still failing 1 (invalid_json: 1), skipped (provider disabled) 1"
        );
        assert!(!summary.complete());
    }

    #[test]
    fn a_summary_of_mostly_skipped_letters_asks_whether_this_is_the_servers_configuration() {
        let summary = ReplaySummary {
            read: 5,
            skipped_disabled: 2,
            skipped_unknown: 2,
            replayed: 1,
            ..ReplaySummary::default()
        };
        let text = summary.to_string();
        assert!(
            text.contains("skipped (provider not configured) 2"),
            "{text}"
        );
        assert!(
            text.contains("is this the server's configuration?"),
            "{text}"
        );
        let mostly_replayed = ReplaySummary {
            read: 5,
            replayed: 4,
            skipped_disabled: 1,
            ..ReplaySummary::default()
        };
        assert!(!mostly_replayed
            .to_string()
            .contains("server's configuration"));
        let other_providers = ReplaySummary {
            read: 5,
            replayed: 1,
            other_providers: 4,
            ..ReplaySummary::default()
        };
        assert!(other_providers.complete());
        assert!(!other_providers
            .to_string()
            .contains("server's configuration"));
    }
}
