//! The forwarder's side of the spool: taking records to forward, and giving them back
//! acknowledged (done with, on disk too), released (to be tried again) or parked; the marks
//! that let a restart count what it writes twice; reading a record back; and whether
//! forwarding is stuck.

use super::directory::{self, Marks};
use super::error::ReadError;
use super::frame;
use super::recovery::load_segment;
use super::{
    read_at, ForwardingProblem, Spool, SpoolId, SpooledRecord, Status, FIRST_PARKED, MAX_PARKED,
};
use crate::internal_events::{InternalEvent, SpoolDamaged, SpoolIoFailed};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

impl Spool {
    /// The records reached Kafka: they are done with, on disk too.
    pub(crate) fn ack(&self, ids: &[SpoolId]) {
        if ids.is_empty() {
            return;
        }
        self.shared.acknowledge(ids);
        let rotate = {
            let state = self.shared.state.lock();
            state
                .segments
                .get(&state.active)
                .is_some_and(|s| s.entries.is_empty())
        };
        if rotate {
            self.writer.rotate();
        }
    }

    /// The records' writes failed (or their first attempts did): the forwarder takes them.
    /// `uncertain`: the failed write may have been written all the same.
    pub(crate) fn release(&self, ids: &[SpoolId], uncertain: bool) {
        let mut state = self.shared.state.lock();
        for &id in ids {
            if let Some(entry) = state.entry_mut(&id) {
                entry.uncertain |= uncertain;
                state.set_status(id, Status::Waiting);
            }
        }
        drop(state);
        self.shared.ready.notify_one();
    }

    /// These records cannot be written now for a reason retrying soon cannot fix: each waits
    /// longer than the last time before it is tried again. Returns the longest wait.
    pub(crate) fn park(&self, ids: &[SpoolId]) -> Duration {
        self.park_at(Instant::now(), ids)
    }

    pub(super) fn park_at(&self, now: Instant, ids: &[SpoolId]) -> Duration {
        let mut longest = Duration::ZERO;
        let mut state = self.shared.state.lock();
        for &id in ids {
            let Some(entry) = state.entry_mut(&id) else {
                continue;
            };
            let wait = FIRST_PARKED
                .saturating_mul(1 << entry.refusals.min(10))
                .min(MAX_PARKED);
            entry.refusals = entry.refusals.saturating_add(1);
            state.set_status(id, Status::Parked(now + wait));
            longest = longest.max(wait);
        }
        longest
    }

    /// Up to `max_records` waiting records (at most `max_bytes` of frames), oldest first, now
    /// being forwarded; whether each may duplicate. Parked records whose wait is over join
    /// them. Costs a logarithm per record taken, not a scan of the spool.
    pub(super) fn take(&self, max_records: usize, max_bytes: u64) -> Vec<(SpoolId, bool)> {
        self.take_at(Instant::now(), max_records, max_bytes)
    }

    pub(super) fn take_at(
        &self,
        now: Instant,
        max_records: usize,
        max_bytes: u64,
    ) -> Vec<(SpoolId, bool)> {
        let mut state = self.shared.state.lock();
        while let Some(&(until, id)) = state.parked.first() {
            if until > now {
                break;
            }
            state.set_status(id, Status::Waiting);
        }
        let mut taken = Vec::new();
        let mut bytes = 0;
        while taken.len() < max_records {
            let Some(&id) = state.waiting.first() else {
                break;
            };
            let Some(entry) = state.entry_mut(&id).copied() else {
                state.waiting.remove(&id);
                continue;
            };
            if bytes > 0 && bytes + entry.len > max_bytes {
                break;
            }
            bytes += entry.len;
            state.set_status(id, Status::Forwarding);
            taken.push((id, entry.uncertain));
        }
        taken
    }

    /// Notes, durably, that these records are about to be written: after a crash, those not
    /// also acked count as possible duplicates. A failure puts their segments in doubt.
    pub(super) fn mark_sent(&self, ids: &[SpoolId]) {
        let mut by_segment: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for id in ids {
            by_segment.entry(id.segment).or_default().push(id.offset);
        }
        for (seq, offsets) in by_segment {
            if !self.shared.still_on_disk(seq) {
                continue;
            }
            if let Err(e) = self.shared.dir.append_marks(seq, Marks::Sent, &offsets) {
                self.shared.mark_failed(seq, &e);
            }
        }
    }

    /// Persists the ack marks a full disk refused earlier.
    pub(super) fn flush_marks(&self) {
        let pending: Vec<(u64, Vec<u64>)> = {
            let mut state = self.shared.state.lock();
            state
                .segments
                .iter_mut()
                .filter(|(_, s)| !s.pending_acks.is_empty())
                .map(|(&seq, s)| (seq, std::mem::take(&mut s.pending_acks)))
                .collect()
        };
        for (seq, offsets) in pending {
            if !self.shared.still_on_disk(seq) {
                continue;
            }
            if let Err(e) = self.shared.dir.append_marks(seq, Marks::Acked, &offsets) {
                self.shared.mark_failed(seq, &e);
                if let Some(segment) = self.shared.state.lock().segments.get_mut(&seq) {
                    segment.pending_acks.extend(offsets);
                }
            }
        }
    }

    /// Reads segments that could not be read at startup, now that they may be.
    pub(super) fn retry_unreadable(&self) {
        let seqs: Vec<u64> = self
            .shared
            .state
            .lock()
            .unreadable
            .iter()
            .copied()
            .collect();
        for seq in seqs {
            let doubted = directory::read_doubt(self.shared.dir.path()).contains(&seq);
            match load_segment(&self.shared.dir, seq, doubted, self.metrics()) {
                Ok(loaded) => {
                    let adopted = {
                        let mut state = self.shared.state.lock();
                        state.unreadable.remove(&seq);
                        state.adopt(seq, loaded)
                    };
                    if !adopted {
                        self.shared.remove_segment(seq);
                    }
                    tracing::info!(file = %self.shared.dir.segment_path(seq).display(), "spool: a segment that could not be read is readable again");
                    self.shared.ready.notify_one();
                }
                Err(e) => SpoolIoFailed {
                    operation: "read",
                    dir: self.shared.dir.path(),
                    error: &format!("{}: {e}", self.shared.dir.segment_path(seq).display()),
                }
                .emit(self.metrics()),
            }
        }
    }

    /// Reads a record back. Damage (a checksum or framing failure of the bytes read) is kept
    /// aside, counted and the record dropped; an I/O error drops nothing.
    pub(super) fn read(&self, id: SpoolId) -> Result<SpooledRecord, ReadError> {
        let found = {
            let state = self.shared.state.lock();
            state
                .segments
                .get(&id.segment)
                .and_then(|s| s.entries.get(&id.offset).map(|e| (s.file.clone(), e.len)))
        };
        let Some((file, len)) = found else {
            // Acknowledged meanwhile (its first write, settled late).
            return Err(ReadError::Io);
        };
        let mut bytes = vec![0u8; len as usize];
        let read = read_at(&file, &mut bytes, id.offset);
        let result = match read {
            Err(e) => {
                let why = e.to_string();
                SpoolIoFailed {
                    operation: "read",
                    dir: self.shared.dir.path(),
                    error: &why,
                }
                .emit(self.metrics());
                self.shared.state.lock().read_failing = Some(why);
                return Err(ReadError::Io);
            }
            Ok(n) => {
                bytes.truncate(n);
                frame::scan(&bytes)
                    .records
                    .into_iter()
                    .next()
                    .filter(|(at, payload)| {
                        *at == 0 && frame::HEADER_LEN + payload.len() == bytes.len()
                    })
                    .and_then(|(_, payload)| SpooledRecord::decode(&payload))
            }
        };
        self.shared.state.lock().read_failing = None;
        match result {
            Some(record) => Ok(record),
            None => {
                self.shared.dir.keep_aside(id.segment, id.offset, &bytes);
                SpoolDamaged {
                    file: &self.shared.dir.segment_path(id.segment),
                    offset: id.offset,
                    bytes: bytes.len() as u64,
                    records: 1,
                }
                .emit(self.metrics());
                self.ack(&[id]);
                Err(ReadError::Damaged)
            }
        }
    }

    /// Why the spool holds records it cannot get to Kafka now (other than the broker being
    /// down): they cannot be read, or the forwarder makes no progress though the broker answers.
    pub(crate) fn forwarding_problem(&self) -> Option<ForwardingProblem> {
        let state = self.shared.state.lock();
        if let Some(why) = &state.read_failing {
            return Some(ForwardingProblem::Unreadable(why.clone()));
        }
        state.stalled.clone().map(ForwardingProblem::Stalled)
    }

    pub(super) fn set_stalled(&self, why: Option<String>) {
        self.shared.state.lock().stalled = why;
    }

    /// How long records have waited (not parked) without any being acknowledged; `None` when
    /// none waits.
    pub(super) fn waiting_without_progress(&self) -> Option<Duration> {
        let state = self.shared.state.lock();
        let parked = state.parked.len();
        if state.records() <= parked {
            return None;
        }
        Some(state.progress.map_or(Duration::ZERO, |at| at.elapsed()))
    }

    /// Restarts the stall clock.
    pub(super) fn progressed(&self) {
        self.shared.state.lock().progress = Some(Instant::now());
    }
}
