//! Everything hookstream counts is logged in the same place: one type per outcome, whose `emit`
//! writes the log line (if any) and updates the metrics together, so the two cannot disagree.
//! Lines that a flood of bad requests could multiply are rate-limited ([`crate::telemetry::LogBudget`]);
//! their counters still count every one.
//!
//! Events carry plain data — provider names, codes, reasons and `&dyn Display` details — so any
//! layer can emit them without this module knowing its error types.

use crate::codes::{ClientErrorKind, ErrorCode, FailureReason};
use crate::metrics::Metrics;
use crate::rejections::{Delivery, Rejections};
use actix_web::http::StatusCode;
use std::fmt::Display;
use std::time::Duration;

/// A webhook request was answered (any outcome).
pub struct WebhookAnswered<'a> {
    pub provider: &'a str,
    pub status: StatusCode,
    pub elapsed: Duration,
}

impl WebhookAnswered<'_> {
    pub fn emit(self, m: &Metrics) {
        m.http_requests
            .with_label_values(&[self.provider, self.status.as_str()])
            .inc();
        m.http_request_duration
            .with_label_values(&[self.provider])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// Written to Kafka and acknowledged.
pub struct WebhookAccepted<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl WebhookAccepted<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::debug!(
            provider = self.provider,
            event_id = self.event_id,
            topic = self.topic,
            partition = self.partition,
            offset = self.offset,
            "accepted"
        );
        m.webhooks_accepted
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// Already written within the dedupe window.
pub struct WebhookDuplicate<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
}

impl WebhookDuplicate<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::debug!(
            provider = self.provider,
            event_id = self.event_id,
            "duplicate"
        );
        m.webhooks_duplicates
            .with_label_values(&[self.provider])
            .inc();
    }
}

/// A URL-verification handshake was answered.
pub struct HandshakeAnswered<'a> {
    pub provider: &'a str,
}

impl HandshakeAnswered<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::info!(provider = self.provider, "handshake answered");
        m.handshakes.with_label_values(&[self.provider]).inc();
    }
}

/// Kept in the dead-letter topic.
pub struct WebhookDeadLettered<'a> {
    pub provider: &'a str,
    pub event_id: Option<&'a str>,
    pub error: &'static str,
    pub detail: &'a str,
}

impl WebhookDeadLettered<'_> {
    pub fn emit(self, m: &Metrics) {
        if let Some(suppressed) = m.dead_letter_log.admit(self.error) {
            tracing::warn!(
                provider = self.provider,
                event_id = self.event_id,
                error = self.error,
                detail = self.detail,
                suppressed,
                "dead-lettered"
            );
        }
        m.webhooks_dead_lettered
            .with_label_values(&[self.provider, self.error])
            .inc();
    }
}

/// Answered with an error: logged, counted, and kept in the record of rejected deliveries
/// (names, lengths, a digest and counts of the request). The detail never contains secrets or
/// signatures.
pub struct WebhookRejected<'a> {
    /// A registered provider's name, or [`crate::rejections::UNKNOWN`].
    pub provider: &'static str,
    /// Known once the body was verified and parsed.
    pub event_id: Option<&'a str>,
    pub code: ErrorCode,
    pub detail: &'a dyn Display,
    pub delivery: Delivery<'a>,
}

impl WebhookRejected<'_> {
    pub fn emit(self, m: &Metrics, rejections: &Rejections) {
        let code = self.code.as_str();
        if let Some(suppressed) = m.rejection_log.admit(code) {
            tracing::warn!(
                provider = self.provider,
                event_id = self.event_id,
                error = code,
                detail = %self.detail,
                suppressed,
                "rejected"
            );
        }
        m.webhooks_rejected
            .with_label_values(&[self.provider, code])
            .inc();
        rejections.record(self.provider, self.code, self.delivery);
    }
}

/// The broker acknowledged an event record.
pub struct EventProduced<'a> {
    pub provider: &'a str,
    pub event_name: &'a str,
    pub elapsed: Duration,
}

impl EventProduced<'_> {
    pub fn emit(self, m: &Metrics) {
        m.messages_produced
            .with_label_values(&[self.provider, m.event_name_label(self.event_name)])
            .inc();
        m.produce_duration.observe(self.elapsed.as_secs_f64());
    }
}

/// A write was not acknowledged (the request's own answer says more, and is counted there).
pub struct ProduceFailed<'a> {
    pub provider: &'a str,
    pub reason: FailureReason,
    pub detail: &'a dyn Display,
}

impl ProduceFailed<'_> {
    pub fn emit(self, m: &Metrics) {
        let reason = self.reason.label();
        tracing::debug!(reason, detail = %self.detail, "write failed");
        m.produce_failures
            .with_label_values(&[self.provider, reason])
            .inc();
    }
}

/// librdkafka reported a failure between hookstream and the cluster (or a topic could not be
/// created for want of a permission). Counted by kind; logged at most once per kind each 10 s
/// (librdkafka reports every failed reconnection). Without metrics (a one-off command, which
/// prints its own outcome), only logged at debug.
pub struct KafkaClientError<'a> {
    pub kind: ClientErrorKind,
    /// Names the kind and librdkafka's words: the broker, the mechanism, never a credential.
    pub detail: &'a dyn Display,
    /// False for a consequence of a failure already logged (counted all the same).
    pub log: bool,
}

impl KafkaClientError<'_> {
    pub fn emit(self, m: Option<&Metrics>) {
        let kind = self.kind.label();
        let Some(m) = m else {
            tracing::debug!(kind, "{}", self.detail);
            return;
        };
        m.kafka_client_errors.with_label_values(&[kind]).inc();
        if !self.log {
            return;
        }
        if let Some(suppressed) = m.kafka_client_error_log.admit(kind) {
            if self.kind == ClientErrorKind::Transport {
                tracing::warn!(kind, suppressed, "{}", self.detail);
            } else {
                tracing::error!(kind, suppressed, "{}", self.detail);
            }
        }
    }
}

/// A topic was created through the Admin API.
pub struct TopicCreated<'a> {
    pub provider: &'a str,
    pub topic: &'a str,
}

impl TopicCreated<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::info!(topic = self.topic, "created topic");
        m.topics_created.with_label_values(&[self.provider]).inc();
    }
}

/// An event went to its provider's overflow topic: the provider has
/// `kafka.max_topics_per_provider` topics already. Logged at most once a minute.
pub struct TopicOverflowed<'a> {
    pub provider: &'a str,
    pub topic: &'a str,
    pub overflow: &'a str,
    pub max: usize,
}

impl TopicOverflowed<'_> {
    pub fn emit(self, m: &Metrics) {
        if let Some(suppressed) = m.topic_overflow_log.admit("topic_overflow") {
            tracing::warn!(
                provider = self.provider,
                topic = self.topic,
                overflow = self.overflow,
                suppressed,
                "provider has kafka.max_topics_per_provider ({}) topics: event written to {} instead of a new topic (raise the cap to give such events topics of their own)",
                self.max,
                self.overflow
            );
        }
        m.topic_overflows.with_label_values(&[self.provider]).inc();
    }
}

/// A webhook the broker did not acknowledge within `spool.after` is on disk: answered 202.
pub struct WebhookSpooled<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub topic: &'a str,
}

impl WebhookSpooled<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::debug!(
            provider = self.provider,
            event_id = self.event_id,
            topic = self.topic,
            "spooled"
        );
        m.spooled.with_label_values(&[self.provider]).inc();
    }
}

/// Spooled records the broker acknowledged.
pub struct SpoolForwarded {
    pub records: usize,
    /// Of them, read back after a crash with their first write's outcome unknown.
    pub possible_duplicates: usize,
}

impl SpoolForwarded {
    pub fn emit(self, m: &Metrics) {
        if self.records > 0 {
            tracing::debug!(records = self.records, "spool: forwarded");
        }
        m.spool_forwarded.inc_by(self.records as u64);
        m.spool_possible_duplicates
            .inc_by(self.possible_duplicates as u64);
    }
}

/// The broker refused a spooled record for a reason retrying soon cannot fix (not authorized,
/// too large, an invalid topic), and it could not be dead-lettered either. It stays in the
/// spool (`hookstream_spool_parked_records`) and is tried again after `retry_in`; the failure
/// itself is counted in `hookstream_kafka_produce_failures_total{reason}`.
pub struct SpoolRecordRefused<'a> {
    pub topic: &'a str,
    pub reason: FailureReason,
    pub retry_in: Duration,
}

impl SpoolRecordRefused<'_> {
    pub fn emit(self, m: &Metrics) {
        if let Some(suppressed) = m.spool_refused_log.admit("spool_refused") {
            tracing::warn!(
                topic = self.topic,
                reason = self.reason.label(),
                retry_in = %humantime::format_duration(self.retry_in),
                suppressed,
                "spool: the broker refuses a spooled record, and it could not be dead-lettered; it stays in the spool and is tried again (fix the broker's side: an ACL, max.message.bytes)"
            );
        }
    }
}

/// A spooled record whose provider is not enabled (since it was spooled): held in the spool,
/// not forwarded, and tried again after `retry_in` — enabling the provider lets it through.
pub struct SpoolRecordHeld<'a> {
    pub topic: &'a str,
    pub retry_in: Duration,
}

impl SpoolRecordHeld<'_> {
    pub fn emit(self, m: &Metrics) {
        if let Some(suppressed) = m.spool_refused_log.admit("spool_held") {
            tracing::warn!(
                topic = self.topic,
                retry_in = %humantime::format_duration(self.retry_in),
                suppressed,
                "spool: a spooled record's provider is not enabled; it is held in the spool, not forwarded (enable the provider to let it through)"
            );
        }
    }
}

/// Damaged bytes in a spool file: counted, logged once with the file and offset, kept aside.
pub struct SpoolDamaged<'a> {
    pub file: &'a std::path::Path,
    pub offset: u64,
    pub bytes: u64,
    pub records: u64,
}

impl SpoolDamaged<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::warn!(
            file = %self.file.display(),
            offset = self.offset,
            bytes = self.bytes,
            "spool: damaged record skipped; its bytes are kept under corrupt/ in the spool directory"
        );
        m.spool_corrupt.inc_by(self.records);
    }
}

/// A spool operation failed with an I/O error: not damage, retried. Counted per operation,
/// logged at most once a minute per operation.
pub struct SpoolIoFailed<'a> {
    /// `append`, `read`, `mark` or `probe`.
    pub operation: &'static str,
    pub dir: &'a std::path::Path,
    pub error: &'a dyn std::fmt::Display,
}

impl SpoolIoFailed<'_> {
    pub fn emit(self, m: &Metrics) {
        if let Some(suppressed) = m.spool_io_log.admit(self.operation) {
            tracing::warn!(
                operation = self.operation,
                dir = %self.dir.display(),
                error = %self.error,
                suppressed,
                "spool: I/O error (not damage: nothing is dropped, it is tried again)"
            );
        }
        m.spool_io_errors.with_label_values(&[self.operation]).inc();
    }
}

/// A spooled record the broker refused for good was written to the dead-letter topic.
pub struct SpoolDeadLettered<'a> {
    pub topic: &'a str,
    pub reason: FailureReason,
}

impl SpoolDeadLettered<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::warn!(
            topic = self.topic,
            reason = self.reason.label(),
            "spool: the broker refuses a spooled record for good; kept in the dead-letter topic instead"
        );
        m.spool_dead_lettered.inc();
    }
}

/// The forwarder made no progress while the broker answers metadata: its producer is replaced.
pub struct SpoolStalled<'a> {
    pub records: usize,
    pub since: Duration,
    pub why: &'a str,
}

impl SpoolStalled<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::warn!(
            records = self.records,
            since = %humantime::format_duration(Duration::from_secs(self.since.as_secs())),
            why = self.why,
            "spool: the forwarder made no progress although the broker answers; replacing its producer"
        );
        m.spool_stalled.set(1);
    }
}

/// The spool's size, on every forwarder round and scrape.
pub struct SpoolMeasured {
    pub records: usize,
    /// Bytes of the records not yet acknowledged (what counts against `spool.max_bytes`).
    pub bytes: u64,
    pub oldest_age: Duration,
    pub parked: usize,
    pub stalled: bool,
    pub unreadable_segments: usize,
}

impl SpoolMeasured {
    pub fn emit(self, m: &Metrics) {
        m.spool_records.set(self.records as i64);
        m.spool_bytes.set(self.bytes as i64);
        m.spool_oldest_age.set(self.oldest_age.as_secs_f64());
        m.spool_parked.set(self.parked as i64);
        m.spool_stalled.set(i64::from(self.stalled));
        m.spool_unreadable_segments
            .set(self.unreadable_segments as i64);
    }
}

/// The producer was replaced with a fresh instance.
pub struct ProducerReplaced<'a> {
    pub why: &'a str,
}

impl ProducerReplaced<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::warn!(
            reason = self.why,
            "replaced the Kafka producer with a fresh instance"
        );
        m.producer_resets.inc();
    }
}

/// The deduplication cache was measured (on every scrape and every readiness interval).
pub struct DedupeMeasured {
    pub entries: usize,
    pub horizon: Duration,
    pub window: Duration,
}

impl DedupeMeasured {
    pub fn emit(self, m: &Metrics) {
        m.dedupe_entries
            .set(i64::try_from(self.entries).unwrap_or(i64::MAX));
        m.dedupe_horizon.set(self.horizon.as_secs_f64());
        if self.horizon < self.window / 10 {
            if let Some(suppressed) = m.dedupe_horizon_log.admit("horizon") {
                tracing::warn!(
                    horizon_seconds = self.horizon.as_secs_f64(),
                    window_seconds = self.window.as_secs_f64(),
                    suppressed,
                    "deduplication remembers ids for less than a tenth of dedupe.window: raise dedupe.max_entries (or use the redis backend), or redeliveries older than the horizon are written again"
                );
            }
        }
    }
}

/// A call to the shared deduplication store (Redis) failed. The detail never holds the URL or
/// password.
pub struct DedupeFailed<'a> {
    /// `claim`, `commit` or `release`.
    pub operation: &'static str,
    pub detail: &'a dyn Display,
}

impl DedupeFailed<'_> {
    pub fn emit(self, m: &Metrics) {
        if let Some(suppressed) = m.dedupe_error_log.admit(self.operation) {
            tracing::warn!(
                operation = self.operation,
                detail = %self.detail,
                suppressed,
                "deduplication store call failed"
            );
        }
        m.dedupe_errors.with_label_values(&[self.operation]).inc();
    }
}

/// A readiness check of one dependency answered (or not).
pub struct DependencyChecked {
    pub dependency: &'static str,
    pub up: bool,
}

impl DependencyChecked {
    pub fn emit(self, m: &Metrics) {
        m.ready
            .with_label_values(&[self.dependency])
            .set(i64::from(self.up));
    }
}

/// A configuration reloaded while serving (SIGHUP, or a changed file with `--watch-config`) was
/// applied: its providers, their secrets and `log.level` are in use from now on.
pub struct ConfigReloaded<'a> {
    /// What asked for it: `SIGHUP`, or the file that changed.
    pub trigger: &'a str,
    /// The enabled providers from now on.
    pub providers: &'a [&'a str],
    pub added: &'a [String],
    pub removed: &'a [String],
    pub changed: &'a [String],
    pub log_level: &'a str,
}

impl ConfigReloaded<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::info!(
            trigger = self.trigger,
            providers = ?self.providers,
            added = ?self.added,
            removed = ?self.removed,
            changed = ?self.changed,
            log_level = self.log_level,
            "configuration reloaded"
        );
        m.config_reloads.with_label_values(&["applied"]).inc();
    }
}

/// A configuration reloaded while serving does not validate: refused, in one line naming the
/// key (the error says which), and the configuration in use stays.
pub struct ConfigReloadRefused<'a> {
    pub trigger: &'a str,
    /// Names the key or file at fault, never a secret.
    pub error: &'a dyn Display,
}

impl ConfigReloadRefused<'_> {
    pub fn emit(self, m: &Metrics) {
        tracing::error!(
            trigger = self.trigger,
            error = %self.error,
            "configuration not reloaded: the one in use stays"
        );
        m.config_reloads.with_label_values(&["refused"]).inc();
    }
}

/// A reloaded configuration changes keys that are read at startup only: named, and left as
/// they are until a restart.
pub struct ConfigNeedsRestart<'a> {
    pub trigger: &'a str,
    pub keys: &'a [String],
}

impl ConfigNeedsRestart<'_> {
    pub fn emit(self) {
        tracing::warn!(
            trigger = self.trigger,
            keys = %self.keys.join(", "),
            "configuration keys changed that only a restart applies: their values in use stay until then"
        );
    }
}

/// The level filter of a reloaded `log.level` was not applied.
pub struct LogLevelKept<'a> {
    pub log_level: &'a str,
    pub why: &'a str,
}

impl LogLevelKept<'_> {
    pub fn emit(self) {
        tracing::warn!(
            log_level = self.log_level,
            "log.level not applied: {}",
            self.why
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects what the JSON formatter writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged_lines(emit: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
            .collect()
    }

    struct NoHeaders;
    impl crate::rejections::HeaderNames for NoHeaders {
        fn present(&self, _: &str) -> bool {
            false
        }
    }

    #[test]
    fn a_rejection_line_names_the_provider_and_the_event_id_and_the_rejection_is_kept() {
        let metrics = Metrics::new().unwrap();
        let rejections = Rejections::new(vec![("livesession", vec!["LiveSession-Signature"])]);
        let lines = logged_lines(|| {
            WebhookRejected {
                provider: "livesession",
                event_id: Some("evt-1"),
                code: ErrorCode::BrokerUnavailable,
                detail: &"the broker did not acknowledge the write: no acknowledgement in time",
                delivery: Delivery {
                    remote: None,
                    status: 503,
                    headers: &NoHeaders,
                    content_length: Some(2),
                    body: Some(b"{}"),
                    signature: None,
                },
            }
            .emit(&metrics, &rejections);
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["provider"], "livesession", "{lines:?}");
        assert_eq!(fields["event_id"], "evt-1", "{lines:?}");
        assert_eq!(fields["error"], "broker_unavailable", "{lines:?}");
        let kept = rejections
            .newest_first(Some("livesession"))
            .unwrap_or_default();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].reason, "broker_unavailable");
        assert_eq!(kept[0].body_bytes, Some(2));
    }

    #[test]
    fn a_short_dedupe_horizon_is_warned_about_at_most_once_a_minute() {
        let metrics = Metrics::new().unwrap();
        let window = Duration::from_secs(24 * 3600);
        let measured = |horizon| DedupeMeasured {
            entries: 500_000,
            horizon,
            window,
        };
        let lines = logged_lines(|| {
            measured(window / 2).emit(&metrics);
            measured(Duration::from_secs(9)).emit(&metrics);
            measured(Duration::from_secs(8)).emit(&metrics);
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "WARN", "{lines:?}");
        assert_eq!(lines[0]["fields"]["horizon_seconds"], 9.0, "{lines:?}");
        assert_eq!(metrics.dedupe_horizon.get(), 8.0);
    }

    #[test]
    fn an_accepted_line_is_debug_and_names_the_provider_and_the_event_id() {
        let metrics = Metrics::new().unwrap();
        let lines = logged_lines(|| {
            WebhookAccepted {
                provider: "seismic",
                event_id: "evt-2",
                topic: "webhooks.seismic.meeting_ended",
                partition: 0,
                offset: 7,
            }
            .emit(&metrics);
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["level"], "DEBUG", "{lines:?}");
        assert_eq!(lines[0]["fields"]["provider"], "seismic", "{lines:?}");
        assert_eq!(lines[0]["fields"]["event_id"], "evt-2", "{lines:?}");
    }
}
