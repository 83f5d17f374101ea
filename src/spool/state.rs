//! The spool's state: which records wait, are in flight or are parked, in which segment, and
//! the accounting against `spool.max_bytes` — shared by the appending thread ([`super::writer`])
//! and the spool's handle ([`super::Spool`]), behind one lock.

use super::directory::{self, Directory, Marks};
use super::recovery::Loaded;
use super::writer::Appended;
use crate::internal_events::{InternalEvent, SpoolIoFailed};
use crate::kafka::{Acknowledged, PublishError};
use crate::metrics::Metrics;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A segment is sealed and a new one started past this size.
pub(super) const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// The first wait of a record the broker refused (and that could not be dead-lettered), doubled
/// at each refusal up to [`MAX_PARKED`].
pub(super) const FIRST_PARKED: Duration = Duration::from_secs(30);
pub(super) const MAX_PARKED: Duration = Duration::from_secs(600);

/// A first write of a record, in flight while the record is spooled: it resolves how it ended.
pub(crate) type FirstAttempt =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Acknowledged, PublishError>> + Send>>;

/// Where a record is: its segment and the offset of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SpoolId {
    pub(super) segment: u64,
    pub(super) offset: u64,
}

/// What the forwarder does with a record next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// Its first write is still in flight: it may yet be acknowledged.
    FirstAttempt,
    Waiting,
    Forwarding,
    /// Refused for good and not dead-lettered (or its provider is disabled): tried again at
    /// the instant it is parked until.
    Parked(Instant),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// The frame's length.
    pub(super) len: u64,
    pub(super) spooled_at: i64,
    pub(super) status: Status,
    /// Writing it may write a second copy: its first write's outcome is unknown (a crash, a
    /// purged write), or a forwarder write of it was under way at a restart.
    pub(super) uncertain: bool,
    /// Times it was parked: each doubles the wait, up to [`MAX_PARKED`].
    pub(super) refusals: u32,
}

pub(super) struct Segment {
    /// Held open for reading: records stay readable without a new descriptor (none may be
    /// left), and even when the file was removed under the running process.
    pub(super) file: Arc<File>,
    /// The file's identity: marks are written only while its name still names it (a removed
    /// segment is never read again, and its marks would land beside nothing).
    pub(super) identity: Option<directory::Identity>,
    pub(super) entries: BTreeMap<u64, Entry>,
    /// Ack marks not yet persisted (the disk was full): retried on every forwarder round.
    pub(super) pending_acks: Vec<u64>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) segments: BTreeMap<u64, Segment>,
    /// The segment appends go to.
    pub(super) active: u64,
    /// Bytes of the records not yet acknowledged: what counts against `max_bytes`.
    pub(super) live_bytes: u64,
    /// Bytes of appends under way.
    pub(super) reserved: u64,
    /// Records ready to be forwarded, oldest first.
    pub(super) waiting: BTreeSet<SpoolId>,
    /// Parked records, by when they are tried again.
    pub(super) parked: BTreeSet<(Instant, SpoolId)>,
    /// The last append (or probe) failed, and none succeeded since.
    pub(super) failing: Option<String>,
    /// The size of the last append refused for want of room, until one fits again.
    pub(super) refused_len: Option<u64>,
    /// The last read failed with an I/O error, and none succeeded since.
    pub(super) read_failing: Option<String>,
    /// Segments that could not be read at startup: read again on every forwarder round.
    pub(super) unreadable: BTreeSet<u64>,
    /// The forwarder made no progress while the broker answers: why.
    pub(super) stalled: Option<String>,
    /// The last acknowledgement of a spooled record, or when the spool last became non-empty.
    pub(super) progress: Option<Instant>,
}

impl State {
    /// Takes in a segment read back from disk: its records wait to be forwarded. `false` when
    /// it holds none (it is to be removed).
    pub(super) fn adopt(&mut self, seq: u64, loaded: Loaded) -> bool {
        if loaded.segment.entries.is_empty() {
            return false;
        }
        self.live_bytes += loaded.live;
        self.waiting
            .extend(loaded.segment.entries.keys().map(|&offset| SpoolId {
                segment: seq,
                offset,
            }));
        self.segments.insert(seq, loaded.segment);
        true
    }

    pub(super) fn records(&self) -> usize {
        self.segments.values().map(|s| s.entries.len()).sum()
    }

    pub(super) fn entry_mut(&mut self, id: &SpoolId) -> Option<&mut Entry> {
        self.segments
            .get_mut(&id.segment)
            .and_then(|s| s.entries.get_mut(&id.offset))
    }

    pub(super) fn set_status(&mut self, id: SpoolId, status: Status) {
        let Some(entry) = self.entry_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut entry.status, status);
        if let Status::Parked(until) = old {
            self.parked.remove(&(until, id));
        }
        match status {
            Status::Waiting => {
                self.waiting.insert(id);
            }
            Status::Parked(until) => {
                self.waiting.remove(&id);
                self.parked.insert((until, id));
            }
            Status::FirstAttempt | Status::Forwarding => {
                self.waiting.remove(&id);
            }
        }
    }

    /// Forgets a record; its segment's number if that now holds nothing and is not active.
    pub(super) fn remove(&mut self, id: SpoolId) -> Option<u64> {
        let segment = self.segments.get_mut(&id.segment)?;
        let entry = segment.entries.remove(&id.offset)?;
        self.live_bytes = self.live_bytes.saturating_sub(entry.len);
        self.waiting.remove(&id);
        if let Status::Parked(until) = entry.status {
            self.parked.remove(&(until, id));
        }
        (segment.entries.is_empty() && id.segment != self.active).then_some(id.segment)
    }
}

/// What the writer thread and the spool share.
pub(super) struct Shared {
    pub(super) dir: Directory,
    pub(super) max_bytes: u64,
    pub(super) state: Mutex<State>,
    /// Wakes the forwarder when records arrive or become forwardable.
    pub(super) ready: tokio::sync::Notify,
    pub(super) metrics: Arc<Metrics>,
}

impl Shared {
    pub(super) fn failing(&self) -> bool {
        self.state.lock().failing.is_some()
    }

    pub(super) fn set_failing(&self, why: Option<String>) {
        self.state.lock().failing = why;
    }

    pub(super) fn unreserve(&self, len: u64) {
        let mut state = self.state.lock();
        state.reserved = state.reserved.saturating_sub(len);
    }

    /// A new active segment: the previous one is deleted if it holds nothing.
    pub(super) fn segment_started(&self, seq: u64, file: Arc<File>) {
        let mut state = self.state.lock();
        state.segments.insert(
            seq,
            Segment {
                identity: directory::Identity::of(&file).ok(),
                file,
                entries: BTreeMap::new(),
                pending_acks: Vec::new(),
            },
        );
        let sealed = std::mem::replace(&mut state.active, seq);
        let empty = sealed != seq
            && state
                .segments
                .get(&sealed)
                .is_some_and(|s| s.entries.is_empty());
        if empty {
            state.segments.remove(&sealed);
        }
        drop(state);
        if empty {
            self.remove_segment(sealed);
        }
    }

    /// Registers the records of a batch written to segment `seq` at their offsets.
    pub(super) fn register<R>(
        &self,
        seq: u64,
        jobs: impl Iterator<Item = ((Vec<u8>, Appended, R), u64)>,
    ) -> Vec<(SpoolId, R)> {
        let mut state = self.state.lock();
        state.failing = None;
        state.refused_len = None;
        if state.records() == 0 {
            state.progress = Some(Instant::now());
        }
        let mut registered = Vec::new();
        for ((_, appended, reply), offset) in jobs {
            let id = SpoolId {
                segment: seq,
                offset,
            };
            state.reserved = state.reserved.saturating_sub(appended.len);
            state.live_bytes += appended.len;
            let status = if appended.first_attempt {
                Status::FirstAttempt
            } else {
                Status::Waiting
            };
            if let Some(segment) = state.segments.get_mut(&seq) {
                segment.entries.insert(
                    offset,
                    Entry {
                        len: appended.len,
                        spooled_at: appended.spooled_at,
                        status,
                        uncertain: false,
                        refusals: 0,
                    },
                );
            }
            if status == Status::Waiting {
                state.waiting.insert(id);
            }
            registered.push((id, reply));
        }
        drop(state);
        self.ready.notify_one();
        registered
    }

    /// Records whose request was answered before the append was: dropped (acked), so that a
    /// 503 means nothing is written.
    pub(super) fn drop_abandoned(&self, ids: &[SpoolId]) {
        self.acknowledge(ids);
    }

    /// Forgets acknowledged records, persists their marks (or keeps them pending), and deletes
    /// the segments left with nothing.
    pub(super) fn acknowledge(&self, ids: &[SpoolId]) {
        let mut by_segment: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let mut empty = Vec::new();
        {
            let mut state = self.state.lock();
            state.progress = Some(Instant::now());
            state.stalled = None;
            for id in ids {
                if let Some(seq) = state.remove(*id) {
                    empty.push(seq);
                }
                by_segment.entry(id.segment).or_default().push(id.offset);
            }
            for seq in &empty {
                state.segments.remove(seq);
                by_segment.remove(seq);
            }
            if state
                .refused_len
                .is_some_and(|len| state.live_bytes + state.reserved + len <= self.max_bytes)
            {
                state.refused_len = None;
            }
        }
        for seq in empty {
            self.remove_segment(seq);
        }
        for (seq, offsets) in by_segment {
            if !self.still_on_disk(seq) {
                continue;
            }
            if let Err(e) = self.dir.append_marks(seq, Marks::Acked, &offsets) {
                self.mark_failed(seq, &e);
                if let Some(segment) = self.state.lock().segments.get_mut(&seq) {
                    segment.pending_acks.extend(offsets);
                }
            }
        }
    }

    /// Whether segment `seq` is still the file of that name in the directory.
    pub(super) fn still_on_disk(&self, seq: u64) -> bool {
        let identity = self
            .state
            .lock()
            .segments
            .get(&seq)
            .and_then(|s| s.identity);
        identity.is_some_and(|identity| self.dir.still_names(seq, identity))
    }

    pub(super) fn remove_segment(&self, seq: u64) {
        if let Err(e) = self.dir.remove_segment(seq) {
            SpoolIoFailed {
                operation: "remove",
                dir: self.dir.path(),
                error: &e,
            }
            .emit(&self.metrics);
        }
    }

    /// A mark could not be persisted: the segment is in doubt until it is deleted.
    pub(super) fn mark_failed(&self, seq: u64, error: &std::io::Error) {
        SpoolIoFailed {
            operation: "mark",
            dir: self.dir.path(),
            error,
        }
        .emit(&self.metrics);
        self.dir.doubt(seq);
    }
}
