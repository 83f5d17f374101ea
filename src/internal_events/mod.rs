//! Everything hookstream counts is logged in the same place: one type per outcome, an
//! [`InternalEvent`] whose `emit` writes the log line (if any) and updates the metrics together,
//! so the two cannot disagree. Each event states how many of its lines may be written
//! ([`InternalEvent::LOG_LIMIT`]): lines that a flood of bad requests or a failing dependency
//! could multiply are cut to a few, and the next one written says how many were left out;
//! their counters still count every one.
//!
//! One file per area: [`http`], [`kafka`], [`spool`], [`dedupe`], [`health`], [`config`]. The
//! metrics they write are grouped the same way in [`crate::metrics::Metrics`].
//!
//! Events carry plain data — provider names, codes, reasons and `&dyn Display` details — so any
//! layer can emit them without this module knowing its error types.

mod config;
mod dedupe;
mod health;
mod http;
mod kafka;
mod spool;

pub use config::*;
pub use dedupe::*;
pub use health::*;
pub use http::*;
pub use kafka::*;
pub use spool::*;

use crate::metrics::Metrics;
use crate::telemetry::LogLimit;

/// The target of every event's log line, whichever area's file the event is in: the one log
/// filters and pipelines select events by (`hookstream::internal_events=warn`).
const TARGET: &str = "hookstream::internal_events";

/// One outcome worth counting or saying: plain data, emitted once.
pub trait InternalEvent: Sized {
    /// How many of its log lines may be written per key (a reason, an operation), and per how
    /// long; the rest are counted and said by the next line. A few a second unless the event
    /// says otherwise.
    const LOG_LIMIT: LogLimit = LogLimit::PER_SECOND;

    /// Writes its log line (if any) and updates its metrics.
    fn emit(self, metrics: &Metrics);

    /// `Some(n)` when a line for `key` may be written now within [`Self::LOG_LIMIT`] (`n` lines
    /// were left out since the last one), `None` when this one is left out.
    fn admit_line(metrics: &Metrics, key: &'static str) -> Option<u64> {
        metrics.admit_line(Self::LOG_LIMIT, std::any::type_name::<Self>(), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode;
    use crate::metrics::Metrics;
    use crate::rejections::{Delivery, Rejections};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

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
                rejections: &rejections,
            }
            .emit(&metrics);
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
    fn events_of_every_area_log_under_one_target() {
        let metrics = Metrics::new().unwrap();
        let lines = logged_lines(|| {
            TopicCreated {
                provider: "seismic",
                topic: "webhooks.seismic.meeting_ended",
            }
            .emit(&metrics);
            SpoolDamaged {
                file: std::path::Path::new("spool/00000001.log"),
                offset: 8,
                bytes: 4,
                records: 1,
            }
            .emit(&metrics);
            DedupeFailed {
                operation: "claim",
                detail: &"timed out",
            }
            .emit(&metrics);
            HandshakeAnswered {
                provider: "seismic",
            }
            .emit(&metrics);
        });
        assert_eq!(lines.len(), 4, "{lines:?}");
        for line in &lines {
            assert_eq!(line["target"], "hookstream::internal_events", "{line}");
        }
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
        assert_eq!(metrics.dedupe.horizon.get(), 8.0);
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
