//! Writes spooled records to Kafka as soon as the broker acknowledges again, and forgets them
//! only after the acknowledgement. Bounded: a batch holds at most [`MAX_RECORDS`] records and
//! [`MAX_BYTES`] bytes in flight, so live traffic keeps the producer queue; after a failure the
//! broker may recover from, it backs off, up to [`MAX_BACKOFF`].
//!
//! - A record the broker refuses for good (too large for the topic, not authorized, an invalid
//!   topic) is dead-lettered, as a live write would be; if that fails too, it is parked
//!   ([`Spool::park`]), counted in `hookstream_spool_parked_records`, and tried again later.
//! - A record whose provider is no longer enabled is parked likewise (replay refuses such
//!   events too); enabling the provider again lets it through.
//! - A record that cannot be read (an I/O error) is tried again; only damage drops one.
//! - Before a batch is written, its offsets are marked as sent (synced), so that a restart
//!   counts those it writes again as possible duplicates.
//! - No acknowledgement for [`Forwarding::stall_after`] while the broker answers metadata (a
//!   broker that came back empty, fenced, or forgot the producer's id): the spool says it is
//!   stalled (readiness and `hookstream_spool_stalled`), and the producer is replaced.

use super::error::ReadError;
use super::{Spool, SpoolId};
use crate::codes::{ErrorCode, FailureClass, FailureReason};
use crate::dead_letter::DeadLetter;
use crate::internal_events::{
    InternalEvent, SpoolDeadLettered, SpoolForwarded, SpoolRecordHeld, SpoolRecordRefused,
    SpoolStalled,
};
use crate::kafka::{KafkaSink, OutboundMessage, PublishError};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const MAX_RECORDS: usize = 256;
const MAX_BYTES: u64 = 4 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the gauges are refreshed, marks retried and the directory probed while idle.
const IDLE: Duration = Duration::from_secs(1);

/// What the forwarder needs from the configuration.
pub(crate) struct Forwarding {
    /// Bounds a topic's creation and a dead letter's write.
    pub ack_timeout: Duration,
    /// The enabled providers: a record's metric label is one of them, never text read from
    /// disk, and a record of any other is held.
    pub providers: Arc<ForwardedProviders>,
    /// Where a record the broker refuses for good goes (`None`: dead letters are disabled).
    pub dead_letter_topic: Option<String>,
    /// No acknowledgement for this long, while records wait and the broker answers metadata:
    /// the forwarder is stalled, and its producer is replaced.
    pub stall_after: Duration,
}

/// The providers whose records are forwarded: every provider enabled since the process started.
/// A reload that enables a provider adds it; one that removes a provider leaves it here, so that
/// what was spooled for it while it was served still reaches its topic.
pub(crate) struct ForwardedProviders(parking_lot::RwLock<Vec<&'static str>>);

impl ForwardedProviders {
    pub(crate) fn new(names: Vec<&'static str>) -> Arc<Self> {
        Arc::new(Self(parking_lot::RwLock::new(names)))
    }

    /// Forwards the records of `names` too from now on.
    pub(crate) fn add(&self, names: &[&'static str]) {
        let mut known = self.0.write();
        for name in names {
            if !known.contains(name) {
                known.push(name);
            }
        }
    }

    fn find(&self, name: &str) -> Option<&'static str> {
        self.0.read().iter().copied().find(|p| *p == name)
    }
}

/// Whether a write that failed so may have been written all the same (its outcome is unknown):
/// writing the record again may make a second copy.
pub(crate) fn may_have_been_written(error: &PublishError) -> bool {
    matches!(
        error.reason,
        FailureReason::Timeout
            | FailureReason::BrokerUnavailable
            | FailureReason::ProducerUnusable
            | FailureReason::ClientError
    )
}

/// Runs until the task is dropped: the forwarding loop, and its watchdog beside it.
pub(crate) async fn run_forwarder_until_stopped(
    spool: Arc<Spool>,
    sink: Arc<KafkaSink>,
    config: Forwarding,
) {
    tokio::join!(
        forward_loop(&spool, &sink, &config),
        watch(&spool, &sink, &config)
    );
}

async fn forward_loop(spool: &Arc<Spool>, sink: &Arc<KafkaSink>, config: &Forwarding) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let batch = spool.take(MAX_RECORDS, MAX_BYTES);
        if batch.is_empty() {
            spool.measure();
            tokio::select! {
                () = spool.shared.ready.notified() => {}
                () = tokio::time::sleep(IDLE) => {}
            }
            continue;
        }
        let ids: Vec<SpoolId> = batch.iter().map(|(id, _)| *id).collect();
        spool.mark_sent(&ids);
        let deadline = Instant::now() + config.ack_timeout;
        let outcomes =
            futures_util::future::join_all(batch.iter().map(|&(id, uncertain)| async move {
                (
                    id,
                    uncertain,
                    write(spool, sink, config, id, deadline).await,
                )
            }))
            .await;
        let mut acked = Vec::new();
        let mut failed = Vec::new();
        let mut uncertain_acked = 0;
        for (id, uncertain, written) in outcomes {
            match written {
                Forwarded::Acked => {
                    uncertain_acked += usize::from(uncertain);
                    acked.push(id);
                }
                Forwarded::Failed { maybe_written } => failed.push((id, maybe_written)),
                Forwarded::Unread => failed.push((id, false)),
                Forwarded::Held { topic } => {
                    let retry_in = spool.park(&[id]);
                    SpoolRecordHeld {
                        topic: &topic,
                        retry_in,
                    }
                    .emit(spool.metrics());
                }
                Forwarded::Refused { reason, topic } => {
                    let retry_in = spool.park(&[id]);
                    SpoolRecordRefused {
                        topic: &topic,
                        reason,
                        retry_in,
                    }
                    .emit(spool.metrics());
                }
                Forwarded::Damaged => {} // already dropped
            }
        }
        spool.ack(&acked);
        SpoolForwarded {
            records: acked.len(),
            possible_duplicates: uncertain_acked,
        }
        .emit(spool.metrics());
        spool.measure();
        if failed.is_empty() {
            backoff = FIRST_BACKOFF;
            continue;
        }
        for (id, maybe_written) in failed {
            spool.release(&[id], maybe_written);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Every [`IDLE`]: the spool's housekeeping; and when it holds records and none was acknowledged
/// (by the forwarder or by a first write) for `stall_after`, asks the broker for metadata. If it
/// has answered for `stall_after` too, the forwarder is stalled, not the broker down: says so,
/// and replaces the producer. A broker that came back empty, fenced the producer or forgot its id
/// heals so, without a restart.
async fn watch(spool: &Spool, sink: &Arc<KafkaSink>, config: &Forwarding) {
    // Since when the broker has answered every probe: a broker that just came back (a freeze
    // ended) gets `stall_after` to acknowledge what it holds before its producer is replaced,
    // whose writes it may be about to acknowledge.
    let mut answering_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(IDLE).await;
        // Housekeeping that must not wait for the forwarder, which may be waiting out a broker:
        // marks a full disk refused, segments that could not be read, and whether the
        // directory can be written again (an unready pod gets no traffic to find out).
        spool.flush_marks();
        spool.retry_unreadable();
        spool.probe().await;
        spool.measure();
        let since = match spool.waiting_without_progress() {
            Some(since) if since >= config.stall_after => since,
            Some(_) => continue,
            None => {
                answering_since = None;
                spool.set_stalled(None);
                continue;
            }
        };
        let probe = sink.clone();
        let timeout = config.ack_timeout;
        let answers = tokio::task::spawn_blocking(move || probe.probe(timeout))
            .await
            .unwrap_or(false);
        if !answers {
            answering_since = None;
            continue;
        }
        let answering = *answering_since.get_or_insert_with(Instant::now);
        if answering.elapsed() < config.stall_after {
            continue;
        }
        let why = format!(
            "no spooled record acknowledged for {} although the broker answers metadata",
            humantime::format_duration(Duration::from_secs(since.as_secs()))
        );
        SpoolStalled {
            records: spool.shared.state.lock().records(),
            since,
            why: &why,
        }
        .emit(spool.metrics());
        spool.set_stalled(Some(why.clone()));
        sink.replace_patient(&why);
        // The next replacement only after another `stall_after` without progress.
        spool.progressed();
        answering_since = None;
    }
}

/// How the write of one spooled record ended.
enum Forwarded {
    Acked,
    /// Not acknowledged, for a reason the broker may recover from: tried again after a backoff.
    Failed {
        maybe_written: bool,
    },
    /// Could not be read (an I/O error): tried again.
    Unread,
    /// Refused for good, and not dead-lettered: parked.
    Refused {
        reason: FailureReason,
        topic: String,
    },
    /// Its provider is not enabled: parked.
    Held {
        topic: String,
    },
    /// Its bytes were damaged since: counted, kept aside and dropped by [`Spool::read`].
    Damaged,
}

async fn write(
    spool: &Spool,
    sink: &KafkaSink,
    config: &Forwarding,
    id: SpoolId,
    deadline: Instant,
) -> Forwarded {
    let record = match spool.read(id) {
        Ok(record) => record,
        Err(ReadError::Io) => return Forwarded::Unread,
        Err(ReadError::Damaged) => return Forwarded::Damaged,
    };
    let Some(provider) = config.providers.find(&record.provider) else {
        return Forwarded::Held {
            topic: record.topic,
        };
    };
    let headers: Vec<(&str, &[u8])> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let key = record
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok());
    let published = sink
        .publish_patient(
            OutboundMessage {
                topic: &record.topic,
                key,
                value: &record.value,
                headers: &headers,
                provider,
                event_name: record.event_name.as_deref(),
            },
            deadline,
        )
        .await;
    let error = match published {
        Ok(_) => return Forwarded::Acked,
        Err(e) if e.class() == FailureClass::Retriable => {
            return Forwarded::Failed {
                maybe_written: may_have_been_written(&e),
            }
        }
        Err(e) => e,
    };
    // Refused for good. An event goes to the dead-letter topic, as a live write's would; a
    // dead letter refused for good has nowhere else to go.
    let (Some(topic), Some(_)) = (&config.dead_letter_topic, &record.event_name) else {
        return Forwarded::Refused {
            reason: error.reason,
            topic: record.topic,
        };
    };
    let code = match error.class() {
        FailureClass::TooLarge => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::ProduceFailed,
    };
    let event_id = record
        .headers
        .iter()
        .find(|(k, _)| k == crate::kafka::HEADER_EVENT_ID)
        .and_then(|(_, v)| String::from_utf8(v.clone()).ok());
    let letter = DeadLetter {
        provider: provider.to_string(),
        error: code.as_str().into(),
        replay_error: None,
        detail: format!("spooled for {}, then {error}", record.topic),
        received_at: record.spooled_at,
        event_id,
        content_type: None,
        request_headers: Vec::new(),
        body: crate::avro::raw_payload(&record.value)
            .map_or(record.value.clone(), String::into_bytes),
        replay_attempts: 0,
    };
    let deadline = Instant::now() + config.ack_timeout;
    match letter.publish(sink, topic, provider, deadline).await {
        Ok(_) => {
            SpoolDeadLettered {
                topic: &record.topic,
                reason: error.reason,
            }
            .emit(spool.metrics());
            Forwarded::Acked
        }
        Err(_) => Forwarded::Refused {
            reason: error.reason,
            topic: record.topic,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::spool::SpooledRecord;

    #[tokio::test]
    async fn a_record_of_a_provider_no_longer_enabled_is_held_not_written() {
        let dir = std::env::temp_dir().join(format!(
            "hookstream-forwarder-held-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let spool = Spool::open(&dir, 1 << 20, metrics.clone()).expect("opens");
        let record = SpooledRecord::new(
            "livesession",
            Some("js_error"),
            "webhooks.livesession.js_error",
            None,
            b"value".to_vec(),
            &[],
            false,
        );
        let reservation = spool.reserve(&record).expect("room");
        spool
            .append(reservation, None, Instant::now() + Duration::from_secs(5))
            .await
            .map_err(|r| r.error)
            .expect("appended");
        let settings = crate::configuration::get_configuration(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config"
        )))
        .expect("defaults");
        // Never asked: the record is held before anything is written.
        let sink =
            KafkaSink::with_patient(&settings.kafka, metrics.clone(), false).expect("a client");
        let config = Forwarding {
            ack_timeout: Duration::from_secs(1),
            providers: ForwardedProviders::new(vec!["seismic"]),
            dead_letter_topic: None,
            stall_after: Duration::from_secs(60),
        };
        let (id, _) = spool.take(1, u64::MAX)[0];
        let written = write(&spool, &sink, &config, id, Instant::now()).await;
        assert!(matches!(written, Forwarded::Held { .. }));
        spool.park(&[id]);
        spool.measure();
        assert_eq!(metrics.spool.parked.get(), 1, "held, and counted");
        assert!(
            spool.take(1, u64::MAX).is_empty(),
            "not taken again at once"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
