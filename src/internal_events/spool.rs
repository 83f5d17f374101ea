//! The durable spool: records spooled, forwarded, refused, held, damaged or dead-lettered,
//! I/O failures, stalls, and its size.

use super::InternalEvent;
use crate::codes::FailureReason;
use crate::metrics::Metrics;
use crate::telemetry::LogLimit;
use std::time::Duration;

/// A webhook the broker did not acknowledge within `spool.after` is on disk: answered 202.
pub struct WebhookSpooled<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub topic: &'a str,
}

impl InternalEvent for WebhookSpooled<'_> {
    fn emit(self, m: &Metrics) {
        tracing::debug!(target: super::TARGET,
            provider = self.provider,
            event_id = self.event_id,
            topic = self.topic,
            "spooled"
        );
        m.spool.spooled.with_label_values(&[self.provider]).inc();
    }
}

/// Spooled records the broker acknowledged.
pub struct SpoolForwarded {
    pub records: usize,
    /// Of them, read back after a crash with their first write's outcome unknown.
    pub possible_duplicates: usize,
}

impl InternalEvent for SpoolForwarded {
    fn emit(self, m: &Metrics) {
        if self.records > 0 {
            tracing::debug!(target: super::TARGET, records = self.records, "spool: forwarded");
        }
        m.spool.forwarded.inc_by(self.records as u64);
        m.spool
            .possible_duplicates
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

impl InternalEvent for SpoolRecordRefused<'_> {
    /// A whole spool of them is retried in turn.
    const LOG_LIMIT: LogLimit = LogLimit::PER_MINUTE;

    fn emit(self, m: &Metrics) {
        if let Some(suppressed) = Self::admit_line(m, "spool_refused") {
            tracing::warn!(target: super::TARGET,
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

impl InternalEvent for SpoolRecordHeld<'_> {
    const LOG_LIMIT: LogLimit = LogLimit::PER_MINUTE;

    fn emit(self, m: &Metrics) {
        if let Some(suppressed) = Self::admit_line(m, "spool_held") {
            tracing::warn!(target: super::TARGET,
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

impl InternalEvent for SpoolDamaged<'_> {
    fn emit(self, m: &Metrics) {
        tracing::warn!(target: super::TARGET,
            file = %self.file.display(),
            offset = self.offset,
            bytes = self.bytes,
            "spool: damaged record skipped; its bytes are kept under corrupt/ in the spool directory"
        );
        m.spool.corrupt.inc_by(self.records);
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

impl InternalEvent for SpoolIoFailed<'_> {
    /// A failing disk fails every operation.
    const LOG_LIMIT: LogLimit = LogLimit::PER_MINUTE;

    fn emit(self, m: &Metrics) {
        if let Some(suppressed) = Self::admit_line(m, self.operation) {
            tracing::warn!(target: super::TARGET,
                operation = self.operation,
                dir = %self.dir.display(),
                error = %self.error,
                suppressed,
                "spool: I/O error (not damage: nothing is dropped, it is tried again)"
            );
        }
        m.spool.io_errors.with_label_values(&[self.operation]).inc();
    }
}

/// A spooled record the broker refused for good was written to the dead-letter topic.
pub struct SpoolDeadLettered<'a> {
    pub topic: &'a str,
    pub reason: FailureReason,
}

impl InternalEvent for SpoolDeadLettered<'_> {
    fn emit(self, m: &Metrics) {
        tracing::warn!(target: super::TARGET,
            topic = self.topic,
            reason = self.reason.label(),
            "spool: the broker refuses a spooled record for good; kept in the dead-letter topic instead"
        );
        m.spool.dead_lettered.inc();
    }
}

/// The forwarder made no progress while the broker answers metadata: its producer is replaced.
pub struct SpoolStalled<'a> {
    pub records: usize,
    pub since: Duration,
    pub why: &'a str,
}

impl InternalEvent for SpoolStalled<'_> {
    fn emit(self, m: &Metrics) {
        tracing::warn!(target: super::TARGET,
            records = self.records,
            since = %humantime::format_duration(Duration::from_secs(self.since.as_secs())),
            why = self.why,
            "spool: the forwarder made no progress although the broker answers; replacing its producer"
        );
        m.spool.stalled.set(1);
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

impl InternalEvent for SpoolMeasured {
    fn emit(self, m: &Metrics) {
        m.spool.records.set(self.records as i64);
        m.spool.bytes.set(self.bytes as i64);
        m.spool.oldest_age.set(self.oldest_age.as_secs_f64());
        m.spool.parked.set(self.parked as i64);
        m.spool.stalled.set(i64::from(self.stalled));
        m.spool
            .unreadable_segments
            .set(self.unreadable_segments as i64);
    }
}

/// The spool was opened with room for `max_bytes` (`spool.max_bytes`).
pub struct SpoolOpened {
    pub max_bytes: u64,
}

impl InternalEvent for SpoolOpened {
    fn emit(self, m: &Metrics) {
        m.spool
            .max_bytes
            .set(i64::try_from(self.max_bytes).unwrap_or(i64::MAX));
    }
}

/// A batch of appends was written and fsynced (or failed to be) in `elapsed`.
pub struct SpoolSynced {
    pub elapsed: std::time::Duration,
}

impl InternalEvent for SpoolSynced {
    fn emit(self, m: &Metrics) {
        m.spool.sync_duration.observe(self.elapsed.as_secs_f64());
    }
}
