//! Deduplication: the cache measured, the shared store failing.

use super::InternalEvent;
use crate::metrics::Metrics;
use crate::telemetry::LogLimit;
use std::fmt::Display;
use std::time::Duration;

/// The deduplication cache was measured (on every scrape and every readiness interval).
pub struct DedupeMeasured {
    pub entries: usize,
    pub horizon: Duration,
    pub window: Duration,
}

impl InternalEvent for DedupeMeasured {
    /// Measured on every scrape: a short horizon is said once a minute.
    const LOG_LIMIT: LogLimit = LogLimit::PER_MINUTE;

    fn emit(self, m: &Metrics) {
        m.dedupe
            .entries
            .set(i64::try_from(self.entries).unwrap_or(i64::MAX));
        m.dedupe.horizon.set(self.horizon.as_secs_f64());
        if self.horizon < self.window / 10 {
            if let Some(suppressed) = Self::admit_line(m, "horizon") {
                tracing::warn!(target: super::TARGET,
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

impl InternalEvent for DedupeFailed<'_> {
    fn emit(self, m: &Metrics) {
        if let Some(suppressed) = Self::admit_line(m, self.operation) {
            tracing::warn!(target: super::TARGET,
                operation = self.operation,
                detail = %self.detail,
                suppressed,
                "deduplication store call failed"
            );
        }
        m.dedupe.errors.with_label_values(&[self.operation]).inc();
    }
}
