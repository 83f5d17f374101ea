//! The durable local spool: records the broker could not acknowledge in time, kept on disk
//! (fsynced) until the [`forwarder`] has written them to Kafka. Shaped like a write-ahead log
//! whose parts each own one thing:
//! - [`directory`]: the lock, the file names (exact: `segment-{seq:016}.log`), listing,
//!   removal, keeping damage aside, and syncing the directory after every change of names;
//! - [`writer`]: the one thread that appends, with group commit, and registers what it wrote;
//! - [`frame`] and [`record`]: the bytes of a record, and telling damage from a torn tail;
//! - this module: the state — which records wait, are in flight, or are parked — and the
//!   accounting against `spool.max_bytes`;
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
mod record;
mod status;
mod writer;

pub use error::OpenError;
pub(crate) use error::{ForwardingProblem, SpoolError};
pub(crate) use forwarder::{forward, ForwardedProviders, Forwarding};
pub(crate) use record::SpooledRecord;
pub use status::status;

use crate::internal_events::{SpoolDamaged, SpoolIoFailed, SpoolMeasured};
use crate::kafka::{Acknowledged, PublishError};
use crate::metrics::Metrics;
use directory::{Directory, Marks};
use error::ReadError;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use writer::{Appended, Writer};

/// A segment is sealed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// The first wait of a record the broker refused (and that could not be dead-lettered), doubled
/// at each refusal up to [`MAX_PARKED`].
const FIRST_PARKED: Duration = Duration::from_secs(30);
const MAX_PARKED: Duration = Duration::from_secs(600);

/// A first write of a record, in flight while the record is spooled: it resolves how it ended.
pub(crate) type FirstAttempt =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Acknowledged, PublishError>> + Send>>;

/// Where a record is: its segment and the offset of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SpoolId {
    segment: u64,
    offset: u64,
}

/// What the forwarder does with a record next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Its first write is still in flight: it may yet be acknowledged.
    FirstAttempt,
    Waiting,
    Forwarding,
    /// Refused for good and not dead-lettered (or its provider is disabled): tried again at
    /// the instant it is parked until.
    Parked(Instant),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The frame's length.
    len: u64,
    spooled_at: i64,
    status: Status,
    /// Writing it may write a second copy: its first write's outcome is unknown (a crash, a
    /// purged write), or a forwarder write of it was under way at a restart.
    uncertain: bool,
    /// Times it was parked: each doubles the wait, up to [`MAX_PARKED`].
    refusals: u32,
}

struct Segment {
    /// Held open for reading: records stay readable without a new descriptor (none may be
    /// left), and even when the file was removed under the running process.
    file: Arc<File>,
    /// The file's identity: marks are written only while its name still names it (a removed
    /// segment is never read again, and its marks would land beside nothing).
    identity: Option<directory::Identity>,
    entries: BTreeMap<u64, Entry>,
    /// Ack marks not yet persisted (the disk was full): retried on every forwarder round.
    pending_acks: Vec<u64>,
}

#[derive(Default)]
struct State {
    segments: BTreeMap<u64, Segment>,
    /// The segment appends go to.
    active: u64,
    /// Bytes of the records not yet acknowledged: what counts against `max_bytes`.
    live_bytes: u64,
    /// Bytes of appends under way.
    reserved: u64,
    /// Records ready to be forwarded, oldest first.
    waiting: BTreeSet<SpoolId>,
    /// Parked records, by when they are tried again.
    parked: BTreeSet<(Instant, SpoolId)>,
    /// The last append (or probe) failed, and none succeeded since.
    failing: Option<String>,
    /// The size of the last append refused for want of room, until one fits again.
    refused_len: Option<u64>,
    /// The last read failed with an I/O error, and none succeeded since.
    read_failing: Option<String>,
    /// Segments that could not be read at startup: read again on every forwarder round.
    unreadable: BTreeSet<u64>,
    /// The forwarder made no progress while the broker answers: why.
    stalled: Option<String>,
    /// The last acknowledgement of a spooled record, or when the spool last became non-empty.
    progress: Option<Instant>,
}

impl State {
    /// Takes in a segment read back from disk: its records wait to be forwarded. `false` when
    /// it holds none (it is to be removed).
    fn adopt(&mut self, seq: u64, loaded: Loaded) -> bool {
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

    fn records(&self) -> usize {
        self.segments.values().map(|s| s.entries.len()).sum()
    }

    fn entry_mut(&mut self, id: &SpoolId) -> Option<&mut Entry> {
        self.segments
            .get_mut(&id.segment)
            .and_then(|s| s.entries.get_mut(&id.offset))
    }

    fn set_status(&mut self, id: SpoolId, status: Status) {
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
    fn remove(&mut self, id: SpoolId) -> Option<u64> {
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
struct Shared {
    dir: Directory,
    max_bytes: u64,
    state: Mutex<State>,
    /// Wakes the forwarder when records arrive or become forwardable.
    ready: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn failing(&self) -> bool {
        self.state.lock().failing.is_some()
    }

    fn set_failing(&self, why: Option<String>) {
        self.state.lock().failing = why;
    }

    fn unreserve(&self, len: u64) {
        let mut state = self.state.lock();
        state.reserved = state.reserved.saturating_sub(len);
    }

    /// A new active segment: the previous one is deleted if it holds nothing.
    fn segment_started(&self, seq: u64, file: Arc<File>) {
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
    fn register<R>(
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
    fn drop_abandoned(&self, ids: &[SpoolId]) {
        self.acknowledge(ids);
    }

    /// Forgets acknowledged records, persists their marks (or keeps them pending), and deletes
    /// the segments left with nothing.
    fn acknowledge(&self, ids: &[SpoolId]) {
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
    fn still_on_disk(&self, seq: u64) -> bool {
        let identity = self
            .state
            .lock()
            .segments
            .get(&seq)
            .and_then(|s| s.identity);
        identity.is_some_and(|identity| self.dir.still_names(seq, identity))
    }

    fn remove_segment(&self, seq: u64) {
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
    fn mark_failed(&self, seq: u64, error: &std::io::Error) {
        SpoolIoFailed {
            operation: "mark",
            dir: self.dir.path(),
            error,
        }
        .emit(&self.metrics);
        self.dir.doubt(seq);
    }
}

pub(crate) struct Spool {
    shared: Arc<Shared>,
    writer: Writer,
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

/// A segment as read at startup.
struct Loaded {
    segment: Segment,
    /// Bytes of its records not yet acknowledged.
    live: u64,
}

/// Reads segment `seq` back: truncates a torn tail, keeps damage aside, skips acked records.
/// `Err` for an I/O error (the segment is kept and read again later).
fn load_segment(
    dir: &Directory,
    seq: u64,
    doubted: bool,
    metrics: &Metrics,
) -> std::io::Result<Loaded> {
    let file = dir.open_segment(seq)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes)?;
    let acked = directory::read_marks(dir.path(), seq, Marks::Acked)?;
    let sent = directory::read_marks(dir.path(), seq, Marks::Sent)?;
    let path = dir.segment_path(seq);
    let scan = frame::scan(&bytes);
    if let Some(at) = scan.torn_at {
        match dir.truncate(seq, at) {
            Ok(()) => {
                tracing::warn!(file = %path.display(), at, "spool: truncated a record cut off by a crash at the end of a segment")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "spool: cannot truncate a torn tail (ignored: it is never read)")
            }
        }
    }
    for &(offset, len) in &scan.damaged {
        dir.keep_aside(
            seq,
            offset,
            &bytes[offset as usize..(offset + len) as usize],
        );
        SpoolDamaged {
            file: &path,
            offset,
            bytes: len,
            records: 1,
        }
        .emit(metrics);
    }
    let mut entries = BTreeMap::new();
    let mut live = 0;
    for (offset, payload) in &scan.records {
        let len = (frame::HEADER_LEN + payload.len()) as u64;
        let Some(record) = SpooledRecord::decode(payload) else {
            dir.keep_aside(seq, *offset, payload);
            SpoolDamaged {
                file: &path,
                offset: *offset,
                bytes: len,
                records: 1,
            }
            .emit(metrics);
            continue;
        };
        if acked.contains(offset) {
            continue;
        }
        live += len;
        entries.insert(
            *offset,
            Entry {
                len,
                spooled_at: record.spooled_at,
                status: Status::Waiting,
                uncertain: record.first_attempt || sent.contains(offset) || doubted,
                refusals: 0,
            },
        );
    }
    Ok(Loaded {
        segment: Segment {
            identity: directory::Identity::of(&file).ok(),
            file: Arc::new(file),
            entries,
            pending_acks: Vec::new(),
        },
        live,
    })
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
        let writer = Writer::start(shared.clone(), first).map_err(|source| OpenError::Io {
            dir: path.to_path_buf(),
            what: "cannot start a segment",
            source,
        })?;
        let spool = Arc::new(Spool {
            shared,
            writer,
            runtime: tokio::runtime::Handle::try_current().ok(),
        });
        spool
            .shared
            .metrics
            .spool_max_bytes
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
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

    fn park_at(&self, now: Instant, ids: &[SpoolId]) -> Duration {
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
    fn take(&self, max_records: usize, max_bytes: u64) -> Vec<(SpoolId, bool)> {
        self.take_at(Instant::now(), max_records, max_bytes)
    }

    fn take_at(&self, now: Instant, max_records: usize, max_bytes: u64) -> Vec<(SpoolId, bool)> {
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
    fn mark_sent(&self, ids: &[SpoolId]) {
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
    fn flush_marks(&self) {
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
    fn retry_unreadable(&self) {
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
    fn read(&self, id: SpoolId) -> Result<SpooledRecord, ReadError> {
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

    /// Why the spool holds records it cannot get to Kafka now (other than the broker being
    /// down): they cannot be read, or the forwarder makes no progress though the broker answers.
    pub(crate) fn forwarding_problem(&self) -> Option<ForwardingProblem> {
        let state = self.shared.state.lock();
        if let Some(why) = &state.read_failing {
            return Some(ForwardingProblem::Unreadable(why.clone()));
        }
        state.stalled.clone().map(ForwardingProblem::Stalled)
    }

    fn set_stalled(&self, why: Option<String>) {
        self.shared.state.lock().stalled = why;
    }

    /// How long records have waited (not parked) without any being acknowledged; `None` when
    /// none waits.
    fn waiting_without_progress(&self) -> Option<Duration> {
        let state = self.shared.state.lock();
        let parked = state.parked.len();
        if state.records() <= parked {
            return None;
        }
        Some(state.progress.map_or(Duration::ZERO, |at| at.elapsed()))
    }

    /// Restarts the stall clock.
    fn progressed(&self) {
        self.shared.state.lock().progress = Some(Instant::now());
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
