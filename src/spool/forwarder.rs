//! Writes spooled records to Kafka as soon as the broker acknowledges again, and forgets them
//! only after the acknowledgement. Bounded: a batch holds at most [`MAX_RECORDS`] records and
//! [`MAX_BYTES`] bytes in flight, so live traffic keeps the producer queue; after a failure the
//! broker may recover from, it backs off, up to [`MAX_BACKOFF`]. A record the broker refuses
//! for a reason of its own (not authorized, too large) is parked ([`Spool::park`]) rather than
//! backed off for: it must not slow down every record behind it.

use super::{Spool, SpoolId};
use crate::codes::{FailureClass, FailureReason};
use crate::internal_events::{SpoolForwarded, SpoolRecordRefused};
use crate::kafka::{KafkaSink, OutboundMessage};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const MAX_RECORDS: usize = 256;
const MAX_BYTES: u64 = 4 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the gauges are refreshed while idle.
const IDLE: Duration = Duration::from_secs(1);

/// Runs until the task is dropped. `providers` are the configuration's provider names: a
/// record's metric label is one of them (`unknown` otherwise), never text read from disk.
pub(crate) async fn forward(
    spool: Arc<Spool>,
    sink: Arc<KafkaSink>,
    ack_timeout: Duration,
    providers: Vec<&'static str>,
) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let batch = spool.take(MAX_RECORDS, MAX_BYTES);
        if batch.is_empty() {
            spool.measure();
            tokio::select! {
                () = spool.ready.notified() => {}
                () = tokio::time::sleep(IDLE) => {}
            }
            continue;
        }
        let deadline = Instant::now() + ack_timeout;
        let writes = batch.iter().map(|&(id, uncertain)| {
            let (spool, sink, providers) = (&spool, &sink, &providers);
            async move {
                let written = write(spool, sink, providers, id, deadline).await;
                (id, uncertain, written)
            }
        });
        let outcomes = futures_util::future::join_all(writes).await;
        let mut acked = Vec::new();
        let mut failed = Vec::new();
        let mut refused = Vec::new();
        let mut uncertain_acked = 0;
        for (id, uncertain, written) in outcomes {
            match written {
                Written::Acked => {
                    uncertain_acked += usize::from(uncertain);
                    acked.push(id);
                }
                Written::Failed => failed.push(id),
                Written::Refused(reason, topic) => refused.push((id, reason, topic)),
                Written::Damaged => {} // already dropped
            }
        }
        spool.ack(&acked);
        for (id, reason, topic) in refused {
            let wait = spool.park(&[id]);
            SpoolRecordRefused {
                topic: &topic,
                reason,
                retry_in: wait,
            }
            .emit(&spool.metrics);
        }
        SpoolForwarded {
            records: acked.len(),
            possible_duplicates: uncertain_acked,
        }
        .emit(&spool.metrics);
        spool.measure();
        if failed.is_empty() {
            backoff = FIRST_BACKOFF;
        } else {
            spool.release(&failed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// How the write of one spooled record ended.
enum Written {
    Acked,
    /// Not acknowledged, for a reason the broker may recover from: tried again after a backoff.
    Failed,
    /// Refused by the broker for a reason retrying soon cannot fix (not authorized, too large,
    /// an invalid topic): parked; the topic it was for.
    Refused(FailureReason, String),
    /// Its bytes were damaged since: counted, kept aside and dropped by [`Spool::read`].
    Damaged,
}

async fn write(
    spool: &Spool,
    sink: &KafkaSink,
    providers: &[&'static str],
    id: SpoolId,
    deadline: Instant,
) -> Written {
    let Some(record) = spool.read(id) else {
        return Written::Damaged;
    };
    let provider = providers
        .iter()
        .copied()
        .find(|p| *p == record.provider)
        .unwrap_or("unknown");
    let headers: Vec<(&str, &[u8])> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let published = sink
        .publish_patient(
            OutboundMessage {
                topic: &record.topic,
                key: record
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok()),
                value: &record.value,
                headers: &headers,
                provider,
                event_name: record.event_name.as_deref(),
            },
            deadline,
        )
        .await;
    match published {
        Ok(_) => Written::Acked,
        Err(e) if e.class() == FailureClass::Retriable => Written::Failed,
        Err(e) => Written::Refused(e.reason, record.topic),
    }
}
