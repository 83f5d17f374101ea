//! The durable local spool: records the broker could not acknowledge in time, kept on disk
//! (fsynced) until the [`forwarder`] has written them to Kafka. Shaped like a write-ahead log
//! whose parts each own one thing:
//! - [`directory`]: the lock, the file names (exact: `segment-{seq:016}.log`), listing,
//!   removal, keeping damage aside, and syncing the directory after every change of names;
//! - [`writer`]: the one thread that appends, with group commit, and registers what it wrote;
//! - [`frame`] and [`record`]: the bytes of a record, and telling damage from a torn tail;
//! - [`state`]: which records wait, are in flight, or are parked, and the accounting against
//!   `spool.max_bytes`; [`recovery`]: reading it back at startup;
//! - this module: the spool's handle — opening, reserving, appending; [`outbox`]: what the
//!   forwarder takes, acknowledges, releases and parks, and the marks that count duplicates;
//! - [`forwarder`]: writing them to Kafka, healing a producer that makes no progress.
//!
//! Files, in `spool.dir`:
//! - `segment-{seq}.log`: frames of [`record::SpooledRecord`]s, appended only;
//! - `segment-{seq}.sent`: offsets of its records the forwarder started writing (synced before
//!   the write), so that a restart counts those it writes again as possible duplicates;
//! - `segment-{seq}.acked`: offsets of its records that reached Kafka, so a restart does not
//!   write them again; a segment whose every record is acked is deleted;
//! - `doubt`: segments whose marks could not be persisted (a full disk): after a restart every
//!   record of theirs counts as a possible duplicate;
//! - `corrupt/`: damaged bytes, kept aside for inspection;
//! - `lock`: held (`flock`) by the one process using the directory.
//!
//! What counts against `spool.max_bytes` is the bytes of the records not yet acknowledged: a
//! parked record keeps its segment file on disk, but not the bytes of the records forwarded
//! around it. The disk may therefore hold up to one segment (8 MiB) more per parked record.
//!
//! An I/O error is never damage: only a checksum or framing failure of bytes actually read is.
//! Every other failure is retried, never acknowledged, and shows in a metric, the log
//! (rate-limited) and readiness. Startup never fails because of what is in the spool: a torn
//! tail is truncated, damage is counted and copied aside, everything whole is forwarded.

mod directory;
mod error;
mod forwarder;
mod frame;
mod outbox;
mod record;
mod recovery;
mod state;
mod status;
mod writer;

pub use error::OpenError;
pub(crate) use error::{ForwardingProblem, SpoolError};
pub(crate) use forwarder::{run_forwarder_until_stopped, ForwardedProviders, Forwarding};
pub(crate) use record::SpooledRecord;
pub use status::status;

use crate::internal_events::{InternalEvent, SpoolIoFailed, SpoolMeasured, SpoolOpened};

use crate::metrics::Metrics;
use directory::Directory;
use parking_lot::Mutex;
use recovery::load_segment;
pub(crate) use state::{FirstAttempt, SpoolId};
use state::{Shared, State, Status, FIRST_PARKED, MAX_PARKED};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use writer::{Appended, Appender};

pub(crate) struct Spool {
    shared: Arc<Shared>,
    writer: Appender,
    /// The runtime the spool was opened on (the server's main one): a first write is settled
    /// there, not on the HTTP worker that appended it, whose runtime stops with the listener
    /// while the forwarder still drains.
    runtime: Option<tokio::runtime::Handle>,
}

/// An append the spool refused: why, and the first attempt handed back so that the caller can
/// wait for its outcome (the request is answered by it, as without a spool).
pub(crate) struct Refused {
    pub error: SpoolError,
    pub first_attempt: Option<FirstAttempt>,
}

/// Room reserved in the spool for one record ([`Spool::reserve`]); given back when dropped
/// unused.
pub(crate) struct Reservation {
    spool: Arc<Spool>,
    /// The record's frame, until appended.
    framed: Option<Vec<u8>>,
    len: u64,
    spooled_at: i64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.len > 0 {
            self.spool.shared.unreserve(self.len);
        }
    }
}

impl Spool {
    /// Locks `dir`, reads back what it holds (truncating a torn tail, keeping damage aside) and
    /// starts the writer. `Err` only when the directory cannot be used at all (it cannot be
    /// created or locked, or another process holds it) — never because of its contents.
    pub(crate) fn open(
        path: &Path,
        max_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Spool>, OpenError> {
        let dir = Directory::open(path)?;
        let seqs = dir.segments().map_err(|source| OpenError::Io {
            dir: path.to_path_buf(),
            what: "cannot list it",
            source,
        })?;
        let doubted = directory::read_doubt(path);
        let mut state = State::default();
        for &seq in &seqs {
            match load_segment(&dir, seq, doubted.contains(&seq), &metrics) {
                Ok(loaded) => {
                    if !state.adopt(seq, loaded) {
                        if let Err(e) = dir.remove_segment(seq) {
                            tracing::warn!(file = %dir.segment_path(seq).display(), error = %e, "spool: cannot delete a forwarded segment");
                        }
                    }
                }
                Err(e) => {
                    SpoolIoFailed {
                        operation: "read",
                        dir: path,
                        error: &format!("{}: {e}", dir.segment_path(seq).display()),
                    }
                    .emit(&metrics);
                    state.unreadable.insert(seq);
                }
            }
        }
        let records = state.records();
        if records > 0 {
            tracing::info!(
                dir = %path.display(),
                records,
                bytes = state.live_bytes,
                "spool: records from before the restart will be forwarded"
            );
        }
        // Appends always go to a fresh segment.
        let first = match seqs.last() {
            None => 0,
            Some(&last) => last.checked_add(1).ok_or(OpenError::Exhausted {
                dir: path.to_path_buf(),
                last,
            })?,
        };
        state.active = first;
        state.progress = Some(Instant::now());
        let shared = Arc::new(Shared {
            dir,
            max_bytes,
            state: Mutex::new(state),
            ready: tokio::sync::Notify::new(),
            metrics,
        });
        let writer = Appender::start(shared.clone(), first).map_err(|source| OpenError::Io {
            dir: path.to_path_buf(),
            what: "cannot start a segment",
            source,
        })?;
        let spool = Arc::new(Spool {
            shared,
            writer,
            runtime: tokio::runtime::Handle::try_current().ok(),
        });
        SpoolOpened { max_bytes }.emit(&spool.shared.metrics);
        spool.measure();
        Ok(spool)
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Room for `record`, held until it is appended (or the reservation dropped): taken before
    /// a first write starts, so that a record whose first write is under way always has a
    /// place, and a webhook the spool has no room for is written as without a spool.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        record: &SpooledRecord,
    ) -> Result<Reservation, SpoolError> {
        let mut framed = Vec::with_capacity(frame::HEADER_LEN + record.value.len() + 256);
        frame::encode(&record.encode(), &mut framed);
        let len = framed.len() as u64;
        let mut state = self.shared.state.lock();
        // Known to fail (the probe clears it within a second of the disk healing): refused
        // before a first write starts, so that the webhook is written as without a spool rather
        // than leave a write in flight behind a failed append.
        if let Some(why) = &state.failing {
            return Err(SpoolError::Unwritable(why.clone()));
        }
        if state.live_bytes + state.reserved + len > self.shared.max_bytes {
            state.refused_len = Some(state.refused_len.map_or(len, |l| l.min(len)));
            return Err(SpoolError::Full(self.shared.max_bytes));
        }
        // Reserved now, so concurrent appends cannot overshoot together.
        state.reserved += len;
        Ok(Reservation {
            spool: self.clone(),
            framed: Some(framed),
            len,
            spooled_at: record.spooled_at,
        })
    }

    /// Appends the reserved record and returns once it is on disk (fsynced with the other
    /// appends of the moment), by `deadline` at the latest. With a `first_attempt`, the
    /// forwarder leaves the record alone until that write settles, which the spool awaits
    /// itself: acknowledged, the record is dropped; failed, it is forwarded.
    ///
    /// Refused (unwritable, or the disk did not answer by `deadline`): nothing is kept, and the
    /// first attempt is handed back.
    pub(crate) async fn append(
        self: &Arc<Self>,
        mut reservation: Reservation,
        first_attempt: Option<FirstAttempt>,
        deadline: tokio::time::Instant,
    ) -> Result<(), Refused> {
        let framed = reservation.framed.take().expect("an unused reservation");
        let len = reservation.len;
        let refuse = |error, first_attempt| {
            Err(Refused {
                error,
                first_attempt,
            })
        };
        let active_empty = {
            let state = self.shared.state.lock();
            state
                .segments
                .get(&state.active)
                .is_some_and(|s| s.entries.is_empty())
        };
        if active_empty {
            // A segment whose records were all forwarded is space to be had: the writer starts
            // a new one, and deletes it.
            self.writer.rotate();
        }
        let appended = Appended {
            len,
            spooled_at: reservation.spooled_at,
            first_attempt: first_attempt.is_some(),
        };
        // From here the writer accounts for the reserved bytes.
        reservation.len = 0;
        drop(reservation);
        let id = match tokio::time::timeout_at(deadline, self.writer.append(framed, appended)).await
        {
            Ok(Ok(id)) => id,
            Ok(Err(why)) => return refuse(SpoolError::Unwritable(why), first_attempt),
            Err(_) => {
                return refuse(
                    SpoolError::Unwritable(
                        "the disk did not complete the write within kafka.ack_timeout".into(),
                    ),
                    first_attempt,
                )
            }
        };
        if let Some(first) = first_attempt {
            let spool = self.clone();
            let settle = async move {
                match first.await {
                    Ok(_) => spool.ack(&[id]),
                    Err(e) => spool.release(&[id], forwarder::may_have_been_written(&e)),
                }
            };
            match &self.runtime {
                Some(runtime) => drop(runtime.spawn(settle)),
                None => drop(tokio::spawn(settle)),
            }
        }
        Ok(())
    }

    /// Whether a webhook could be spooled now: `Err` when the last append failed (and no append
    /// or probe succeeded since), or when there is no room for one.
    pub(crate) fn accepting(&self) -> Result<(), SpoolError> {
        let state = self.shared.state.lock();
        if let Some(why) = &state.failing {
            return Err(SpoolError::Unwritable(why.clone()));
        }
        // Full while the last webhook refused for want of room would still not fit (cleared
        // by any append that succeeds, or by room freed), or when nothing fits at all.
        let held = state.live_bytes + state.reserved;
        let needed = state.refused_len.unwrap_or(1);
        if held + needed > self.shared.max_bytes {
            return Err(SpoolError::Full(self.shared.max_bytes));
        }
        Ok(())
    }

    /// When the last append failed: whether one would succeed now. Clears "cannot be written"
    /// without waiting for traffic (an unready pod gets none).
    pub(crate) async fn probe(&self) {
        let len = {
            let state = self.shared.state.lock();
            if state.failing.is_none() {
                return;
            }
            state.refused_len.unwrap_or(4096).min(1 << 20) as usize
        };
        if self.writer.probe(len).await.is_ok() {
            tracing::info!(dir = %self.shared.dir.path().display(), "spool: the spool directory can be written again");
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        let state = self.shared.state.lock();
        state.records() == 0 && state.unreadable.is_empty()
    }

    /// Updates the spool's gauges.
    pub(crate) fn measure(&self) {
        let state = self.shared.state.lock();
        let oldest = state
            .segments
            .values()
            .flat_map(|s| s.entries.values())
            .map(|e| e.spooled_at)
            .min();
        let now = crate::signature::now_secs() * 1000;
        SpoolMeasured {
            records: state.records(),
            bytes: state.live_bytes,
            oldest_age: oldest.map_or(Duration::ZERO, |t| {
                Duration::from_millis(u64::try_from(now - t).unwrap_or(0))
            }),
            parked: state.parked.len(),
            stalled: state.stalled.is_some(),
            unreadable_segments: state.unreadable.len(),
        }
        .emit(self.metrics());
    }
}

/// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
