//! Reading the spool back at startup: each segment's records, a torn tail truncated, damage kept
//! aside, acknowledged records skipped.

use super::directory::{self, Directory, Marks};
use super::state::{Entry, Segment, Status};
use super::{frame, SpooledRecord};
use crate::internal_events::{InternalEvent, SpoolDamaged};
use crate::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A segment as read at startup.
pub(super) struct Loaded {
    pub(super) segment: Segment,
    /// Bytes of its records not yet acknowledged.
    pub(super) live: u64,
}

/// Reads segment `seq` back: truncates a torn tail, keeps damage aside, skips acked records.
/// `Err` for an I/O error (the segment is kept and read again later).
pub(super) fn load_segment(
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
