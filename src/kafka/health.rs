//! Whether writes are succeeding: the outcome of the most recent write decides.
//!
//! Metadata requests can succeed while every write fails (a fenced or stuck producer, a broker
//! that accepts connections but not records), so readiness also asks this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct WriteHealth {
    origin: Instant,
    /// Milliseconds since `origin` (plus one; zero means never) of the last acknowledged write.
    last_ok: AtomicU64,
    /// The same for the last write that failed for a reason worth retrying.
    last_failed: AtomicU64,
}

impl Default for WriteHealth {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            last_ok: AtomicU64::new(0),
            last_failed: AtomicU64::new(0),
        }
    }
}

impl WriteHealth {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    pub(crate) fn succeeded(&self) {
        self.last_ok.fetch_max(self.now(), Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.last_failed.fetch_max(self.now(), Ordering::Relaxed);
    }

    /// The most recent write failed (and none succeeded since).
    pub(crate) fn failing(&self) -> bool {
        self.last_failed.load(Ordering::Relaxed) > self.last_ok.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_outcome_decides() {
        let h = WriteHealth::default();
        assert!(!h.failing(), "no writes yet");
        h.failed();
        assert!(h.failing());
        std::thread::sleep(std::time::Duration::from_millis(2));
        h.succeeded();
        assert!(!h.failing());
    }
}
