//! The durable local spool: records the broker could not acknowledge in time, kept on disk
//! (fsynced) until the [`forwarder`] has written them to Kafka.
//!
//! Files, in `spool.dir`:
//! - `segment-{seq}.log`: frames ([`frame`]) of [`record::SpooledRecord`]s, appended only, by one
//!   writer thread that syncs once for every batch of concurrent appends (group commit);
//! - `segment-{seq}.acked`: the offsets of its records that reached Kafka, so a restart does not
//!   write them again; a segment whose every record is acked is deleted;
//! - `corrupt/`: damaged bytes found at startup, kept aside for inspection;
//! - `lock`: held (`flock`) by the one process using the directory.
//!
//! Startup never fails because of what is in the spool: a torn tail is truncated, damage is
//! counted and copied aside, everything whole is forwarded.

mod forwarder;
mod frame;
mod record;
mod status;
mod writer;

pub(crate) use forwarder::forward;
pub(crate) use record::SpooledRecord;
pub use status::status;

use crate::internal_events::{SpoolDamaged, SpoolMeasured};
use crate::metrics::Metrics;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use writer::Writer;

/// A segment is sealed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Where a record is: its segment and the offset of its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct SpoolId {
    segment: u64,
    offset: u64,
}

/// Why a record could not be spooled: the webhook is answered 503.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SpoolError {
    #[error("the spool is full (spool.max_bytes = {0} bytes)")]
    Full(u64),
    #[error("the spool cannot be written: {0}")]
    Io(String),
}

/// What the forwarder does with a record next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Its first write is still in flight: it may yet be acknowledged.
    FirstAttempt,
    Waiting,
    Forwarding,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The frame's length.
    len: u64,
    spooled_at: i64,
    status: Status,
    /// Read back after a restart with its first write's outcome unknown: forwarding it may
    /// write a second copy.
    uncertain: bool,
    /// The broker refused this record for a reason retrying soon cannot fix (not authorized,
    /// too large, an invalid topic): it waits until then, so that it neither holds back the
    /// records behind it nor makes the forwarder back off for all of them. An operator's fix
    /// (an ACL, `max.message.bytes`) lets it through on a later try; it is never dropped.
    parked_until: Option<std::time::Instant>,
    /// Times the broker refused it so: each doubles the wait, up to [`MAX_PARKED`].
    refusals: u32,
}

/// The first wait of a record the broker refused, doubled at each refusal up to
/// [`MAX_PARKED`].
const FIRST_PARKED: Duration = Duration::from_secs(30);
const MAX_PARKED: Duration = Duration::from_secs(600);

impl Entry {
    fn new(len: u64, spooled_at: i64, status: Status, uncertain: bool) -> Self {
        Self {
            len,
            spooled_at,
            status,
            uncertain,
            parked_until: None,
            refusals: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Segment {
    bytes: u64,
    entries: BTreeMap<u64, Entry>,
}

#[derive(Debug, Default)]
struct State {
    segments: BTreeMap<u64, Segment>,
    /// The segment appends go to.
    active: u64,
    total_bytes: u64,
    /// The last append failed (a full disk, an I/O error) and none succeeded since.
    failing: Option<String>,
    /// An append was refused for want of room, and none has been freed since: full, for
    /// readiness (the bytes held may stay just below `max_bytes`, short of one more record).
    full: bool,
}

impl State {
    fn records(&self) -> usize {
        self.segments.values().map(|s| s.entries.len()).sum()
    }

    fn entry_mut(&mut self, id: &SpoolId) -> Option<&mut Entry> {
        self.segments
            .get_mut(&id.segment)
            .and_then(|s| s.entries.get_mut(&id.offset))
    }
}

pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    writer: Writer,
    /// Wakes the forwarder when records arrive or become forwardable.
    pub(crate) ready: tokio::sync::Notify,
    metrics: Arc<Metrics>,
    /// Held for the process's life: one process per directory.
    _lock: File,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:016}.log"))
}

fn acked_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:016}.acked"))
}

/// The sequence numbers of the segments in `dir`, in order.
fn segments_in(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut seqs: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            name.strip_prefix("segment-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    seqs.sort_unstable();
    Ok(seqs)
}

fn acked_offsets(dir: &Path, seq: u64) -> HashSet<u64> {
    let bytes = std::fs::read(acked_path(dir, seq)).unwrap_or_default();
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            u64::from_le_bytes(word)
        })
        .collect()
}

/// Takes the directory's lock, or says which process-wide resource is in use.
fn lock(dir: &Path) -> Result<File, String> {
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            format!(
                "spool.dir {}: cannot open its lock file: {e}",
                dir.display()
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "spool.dir {} is in use by another hookstream process (one process per spool directory)",
            dir.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!(
            "spool.dir {}: cannot lock it: {e}",
            dir.display()
        )),
    }
}

impl Spool {
    /// Locks `dir`, reads back what it holds (truncating a torn tail, keeping damage aside) and
    /// starts the writer. `Err` only when the directory cannot be used at all (it cannot be
    /// created or locked, or another process holds it) — never because of its contents.
    pub(crate) fn open(
        dir: &Path,
        max_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Spool>, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("spool.dir {}: cannot create it: {e}", dir.display()))?;
        let lock = lock(dir)?;
        let mut state = State::default();
        let mut torn = 0usize;
        let seqs = segments_in(dir)
            .map_err(|e| format!("spool.dir {}: cannot list it: {e}", dir.display()))?;
        for &seq in &seqs {
            let path = segment_path(dir, seq);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let scan = frame::scan(&bytes);
            let mut size = bytes.len() as u64;
            if let Some(at) = scan.torn_at {
                torn += 1;
                if std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(at))
                    .is_ok()
                {
                    size = at;
                }
            }
            for &(offset, len) in &scan.damaged {
                keep_aside(
                    dir,
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
                .emit(&metrics);
            }
            let acked = acked_offsets(dir, seq);
            let mut segment = Segment {
                bytes: size,
                entries: BTreeMap::new(),
            };
            for (offset, payload) in &scan.records {
                let Some(record) = SpooledRecord::decode(payload) else {
                    let len = (frame::HEADER_LEN + payload.len()) as u64;
                    keep_aside(dir, seq, *offset, payload);
                    SpoolDamaged {
                        file: &path,
                        offset: *offset,
                        bytes: len,
                        records: 1,
                    }
                    .emit(&metrics);
                    continue;
                };
                if acked.contains(offset) {
                    continue;
                }
                segment.entries.insert(
                    *offset,
                    Entry::new(
                        (frame::HEADER_LEN + payload.len()) as u64,
                        record.spooled_at,
                        Status::Waiting,
                        record.first_attempt,
                    ),
                );
            }
            if segment.entries.is_empty() {
                let _ = std::fs::remove_file(&path);
                let _ = std::fs::remove_file(acked_path(dir, seq));
                continue;
            }
            state.total_bytes += segment.bytes;
            state.segments.insert(seq, segment);
        }
        if torn > 0 {
            tracing::warn!(
                dir = %dir.display(),
                segments = torn,
                "spool: truncated a record cut off by a crash at the end of {torn} segment(s)"
            );
        }
        let records = state.records();
        if records > 0 {
            tracing::info!(
                dir = %dir.display(),
                records,
                bytes = state.total_bytes,
                "spool: records from before the restart will be forwarded"
            );
        }
        // Appends always go to a fresh segment.
        state.active = seqs.last().map_or(0, |s| s + 1);
        let writer = Writer::start(dir, state.active, metrics.clone())
            .map_err(|e| format!("spool.dir {}: cannot start a segment: {e}", dir.display()))?;
        state.segments.entry(state.active).or_default();
        let spool = Arc::new(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            state: Mutex::new(state),
            writer,
            ready: tokio::sync::Notify::new(),
            metrics,
            _lock: lock,
        });
        spool
            .metrics
            .spool_max_bytes
            .set(i64::try_from(max_bytes).unwrap_or(i64::MAX));
        spool.measure();
        Ok(spool)
    }

    /// Appends `record` and returns once it is on disk (fsynced with the other appends of the
    /// moment). With `first_attempt`, the forwarder leaves it alone until [`Spool::release`]
    /// or [`Spool::ack`] says how that write ended.
    pub(crate) async fn append(&self, record: &SpooledRecord) -> Result<SpoolId, SpoolError> {
        let mut framed = Vec::with_capacity(frame::HEADER_LEN + record.value.len() + 256);
        frame::encode(&record.encode(), &mut framed);
        let len = framed.len() as u64;
        {
            let mut state = self.state.lock();
            // An active segment whose records were all forwarded is space to be had: the writer
            // starts a new segment, and the old one is deleted once the append lands there.
            let reclaimable = state
                .segments
                .get(&state.active)
                .filter(|s| s.entries.is_empty())
                .map_or(0, |s| s.bytes);
            if state.total_bytes - reclaimable + len > self.max_bytes {
                state.full = true;
                return Err(SpoolError::Full(self.max_bytes));
            }
            if reclaimable > 0 {
                self.writer.rotate();
            }
            // Reserved now, so concurrent appends cannot overshoot together.
            state.total_bytes += len;
        }
        let written = self.writer.append(framed).await;
        let mut state = self.state.lock();
        match written {
            Ok(written) => {
                state.failing = None;
                let segment = state.segments.entry(written.segment).or_default();
                segment.bytes = segment.bytes.max(written.offset + len);
                let status = if record.first_attempt {
                    Status::FirstAttempt
                } else {
                    Status::Waiting
                };
                segment.entries.insert(
                    written.offset,
                    Entry::new(len, record.spooled_at, status, false),
                );
                if written.segment > state.active {
                    let sealed = std::mem::replace(&mut state.active, written.segment);
                    if state
                        .segments
                        .get(&sealed)
                        .is_some_and(|s| s.entries.is_empty())
                    {
                        if let Some(done) = state.segments.remove(&sealed) {
                            state.total_bytes = state.total_bytes.saturating_sub(done.bytes);
                        }
                        let _ = std::fs::remove_file(segment_path(&self.dir, sealed));
                        let _ = std::fs::remove_file(acked_path(&self.dir, sealed));
                    }
                }
                drop(state);
                self.ready.notify_one();
                Ok(SpoolId {
                    segment: written.segment,
                    offset: written.offset,
                })
            }
            Err(e) => {
                state.total_bytes -= len;
                state.failing = Some(e.clone());
                Err(SpoolError::Io(e))
            }
        }
    }

    /// The record reached Kafka: it is done with, on disk too.
    pub(crate) fn ack(&self, ids: &[SpoolId]) {
        let mut by_segment: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for id in ids {
            by_segment.entry(id.segment).or_default().push(id.offset);
        }
        let mut state = self.state.lock();
        let active = state.active;
        if !ids.is_empty() {
            state.full = false;
        }
        for (seq, offsets) in by_segment {
            let Some(segment) = state.segments.get_mut(&seq) else {
                continue;
            };
            for offset in &offsets {
                segment.entries.remove(offset);
            }
            if segment.entries.is_empty() && seq != active {
                let bytes = segment.bytes;
                state.segments.remove(&seq);
                state.total_bytes = state.total_bytes.saturating_sub(bytes);
                let _ = std::fs::remove_file(segment_path(&self.dir, seq));
                let _ = std::fs::remove_file(acked_path(&self.dir, seq));
                continue;
            }
            let mut marks = Vec::with_capacity(offsets.len() * 8);
            for offset in offsets {
                marks.extend_from_slice(&offset.to_le_bytes());
            }
            // A lost mark costs a duplicate after a crash, never a loss: synced, but not on the
            // request path.
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(acked_path(&self.dir, seq))
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, &marks)?;
                    f.sync_data()
                });
            if let Err(e) = appended {
                tracing::warn!(error = %e, "spool: cannot record forwarded records; they may be written again after a restart");
            }
        }
        let rotate = state
            .segments
            .get(&active)
            .is_some_and(|s| s.entries.is_empty() && s.bytes > 0);
        drop(state);
        if rotate {
            self.writer.rotate();
        }
    }

    /// The record's write failed (or its first attempt did): the forwarder takes it.
    pub(crate) fn release(&self, ids: &[SpoolId]) {
        let mut state = self.state.lock();
        for id in ids {
            if let Some(entry) = state.entry_mut(id) {
                entry.status = Status::Waiting;
            }
        }
        drop(state);
        self.ready.notify_one();
    }

    /// The broker refused these records for a reason retrying soon cannot fix: each waits
    /// longer than the last time before it is tried again. Returns the longest wait.
    pub(crate) fn park(&self, ids: &[SpoolId]) -> Duration {
        self.park_at(std::time::Instant::now(), ids)
    }

    fn park_at(&self, now: std::time::Instant, ids: &[SpoolId]) -> Duration {
        let mut longest = Duration::ZERO;
        let mut state = self.state.lock();
        for id in ids {
            if let Some(entry) = state.entry_mut(id) {
                let wait = FIRST_PARKED
                    .saturating_mul(1 << entry.refusals.min(10))
                    .min(MAX_PARKED);
                entry.refusals = entry.refusals.saturating_add(1);
                entry.parked_until = Some(now + wait);
                entry.status = Status::Waiting;
                longest = longest.max(wait);
            }
        }
        longest
    }

    /// Up to `max_records` waiting records (at most `max_bytes` of frames), oldest first, now
    /// being forwarded; whether each may duplicate. Parked records wait their turn.
    fn take(&self, max_records: usize, max_bytes: u64) -> Vec<(SpoolId, bool)> {
        self.take_at(std::time::Instant::now(), max_records, max_bytes)
    }

    fn take_at(
        &self,
        now: std::time::Instant,
        max_records: usize,
        max_bytes: u64,
    ) -> Vec<(SpoolId, bool)> {
        let mut state = self.state.lock();
        let mut taken = Vec::new();
        let mut bytes = 0;
        'segments: for (&seq, segment) in state.segments.iter_mut() {
            for (&offset, entry) in segment.entries.iter_mut() {
                if entry.status != Status::Waiting || entry.parked_until.is_some_and(|t| t > now) {
                    continue;
                }
                if taken.len() >= max_records || (bytes > 0 && bytes + entry.len > max_bytes) {
                    break 'segments;
                }
                entry.status = Status::Forwarding;
                bytes += entry.len;
                taken.push((
                    SpoolId {
                        segment: seq,
                        offset,
                    },
                    entry.uncertain,
                ));
            }
        }
        taken
    }

    /// Reads a record back; `None` if its bytes were damaged since (counted, and dropped).
    fn read(&self, id: SpoolId) -> Option<SpooledRecord> {
        let len = self
            .state
            .lock()
            .segments
            .get(&id.segment)?
            .entries
            .get(&id.offset)?
            .len;
        let path = segment_path(&self.dir, id.segment);
        let mut bytes = vec![0u8; len as usize];
        let read = File::open(&path).and_then(|mut f| {
            f.seek(SeekFrom::Start(id.offset))?;
            f.read_exact(&mut bytes)
        });
        let record = read
            .ok()
            .and_then(|()| frame::scan(&bytes).records.into_iter().next())
            .and_then(|(_, payload)| SpooledRecord::decode(&payload));
        if record.is_none() {
            keep_aside(&self.dir, id.segment, id.offset, &bytes);
            SpoolDamaged {
                file: &path,
                offset: id.offset,
                bytes: len,
                records: 1,
            }
            .emit(&self.metrics);
            self.ack(&[id]);
        }
        record
    }

    /// Whether a webhook could be spooled now: `Err` when the last append failed (and none
    /// succeeded since), or when there is no room left.
    pub(crate) fn accepting(&self) -> Result<(), SpoolError> {
        let state = self.state.lock();
        if let Some(why) = &state.failing {
            return Err(SpoolError::Io(why.clone()));
        }
        if state.full || state.total_bytes >= self.max_bytes {
            return Err(SpoolError::Full(self.max_bytes));
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.state.lock().records() == 0
    }

    /// Updates the spool's gauges.
    pub(crate) fn measure(&self) {
        let state = self.state.lock();
        let oldest = state
            .segments
            .values()
            .flat_map(|s| s.entries.values())
            .map(|e| e.spooled_at)
            .min();
        let now = crate::signature::now_secs() * 1000;
        SpoolMeasured {
            records: state.records(),
            bytes: state.total_bytes,
            oldest_age: oldest.map_or(Duration::ZERO, |t| {
                Duration::from_millis(u64::try_from(now - t).unwrap_or(0))
            }),
        }
        .emit(&self.metrics);
    }
}

/// Copies damaged bytes to `corrupt/` for inspection (best effort).
fn keep_aside(dir: &Path, seq: u64, offset: u64, bytes: &[u8]) {
    let corrupt = dir.join("corrupt");
    let _ = std::fs::create_dir_all(&corrupt);
    let _ = std::fs::write(
        corrupt.join(format!("segment-{seq:016}-at-{offset}.bin")),
        bytes,
    );
}

#[cfg(test)]
mod tests;
