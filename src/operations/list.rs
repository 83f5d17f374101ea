//! `hookstream dead-letters list`: dead letters as JSON lines, oldest received first.

use super::reader::{ReadError, Reader, Start};
use crate::configuration::Settings;
use crate::dead_letter::StoredDeadLetter;
use std::collections::BinaryHeap;
use std::io::Write;

/// A group that never commits: listing changes nothing.
const GROUP: &str = "hookstream-dead-letters-list";

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Print at most this many.
    pub limit: usize,
    /// Only the letters of this provider.
    pub provider: Option<String>,
    /// Only the letters not yet written to an event topic: those after the replay group's
    /// offsets (never replayed, or written back by a replay because they still fail).
    pub pending: bool,
}

/// A letter ordered by when it was received (then where it is), for the bounded heap.
struct ByReceipt(StoredDeadLetter);

impl ByReceipt {
    fn key(&self) -> (i64, i32, i64) {
        let l = &self.0;
        (l.received_at.unwrap_or(i64::MAX), l.partition, l.offset)
    }
}

impl PartialEq for ByReceipt {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for ByReceipt {}
impl PartialOrd for ByReceipt {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByReceipt {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Prints the `limit` earliest-received dead letters that match `options` to `out`, oldest
/// first; returns how many. The whole topic is read (a letter written back by a replay keeps its
/// receive time but stands at the end), holding no more than `limit` letters at once. Blocking.
pub fn list(
    settings: &Settings,
    options: &ListOptions,
    out: &mut dyn Write,
) -> Result<usize, String> {
    let topic = settings.dead_letter.topic(&settings.kafka.topic_prefix);
    // Pending: from the replay group's offsets, read as that group but never committed.
    let (group, start) = if options.pending {
        (settings.dead_letter.replay_group.as_str(), Start::Committed)
    } else {
        (GROUP, Start::Beginning)
    };
    let mut reader = match Reader::open(&settings.kafka, group, &topic, start, false) {
        Ok(reader) => reader,
        // No dead letter was ever written.
        Err(ReadError::NoSuchTopic(_)) => return Ok(0),
        Err(e) => return Err(e.to_string()),
    };
    // A max-heap of the earliest `limit`: the latest of them is on top, to be pushed out.
    let mut earliest: BinaryHeap<ByReceipt> = BinaryHeap::with_capacity(options.limit + 1);
    while !reader.done() {
        let Some(letter) = reader.next()? else {
            continue;
        };
        if options
            .provider
            .as_deref()
            .is_some_and(|p| letter.provider.as_deref() != Some(p))
        {
            continue;
        }
        earliest.push(ByReceipt(letter));
        if earliest.len() > options.limit {
            earliest.pop();
        }
    }
    let letters = earliest.into_sorted_vec();
    for ByReceipt(letter) in &letters {
        writeln!(out, "{}", letter.to_json()).map_err(|e| format!("cannot write: {e}"))?;
    }
    Ok(letters.len())
}
