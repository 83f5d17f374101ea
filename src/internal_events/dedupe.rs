//! Deduplication: the cache measured, the shared store failing.

use crate::metrics::Metrics;
use std::fmt::Display;
use std::time::Duration;

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
