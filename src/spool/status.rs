//! `hookstream spool status`: what a spool directory holds, read from its files without taking
//! its lock, so it works while `serve` runs.

use super::directory::{self, Marks};
use super::{frame, SpooledRecord};
use std::collections::BTreeMap;
use std::path::Path;

/// The records of one topic waiting in a spool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStatus {
    pub records: u64,
    /// Frame bytes on disk.
    pub bytes: u64,
    /// When its oldest record was spooled, epoch milliseconds.
    pub oldest: i64,
}

/// Per topic: what `dir` holds that has not reached Kafka. `Err` when the directory, or any of
/// its segments, cannot be read: a status that skipped a segment would understate the spool.
/// Only files with a segment's canonical name are read.
pub fn status(dir: &Path) -> Result<BTreeMap<String, TopicStatus>, String> {
    let (seqs, _) = directory::list(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut topics: BTreeMap<String, TopicStatus> = BTreeMap::new();
    for seq in seqs {
        let path = directory::segment_path(dir, seq);
        let unreadable = |e: std::io::Error| format!("{}: cannot read it: {e}", path.display());
        let bytes = std::fs::read(&path).map_err(unreadable)?;
        let acked = directory::read_marks(dir, seq, Marks::Acked).map_err(unreadable)?;
        for (offset, payload) in frame::scan(&bytes).records {
            if acked.contains(&offset) {
                continue;
            }
            let Some(record) = SpooledRecord::decode(&payload) else {
                continue;
            };
            let topic = topics.entry(record.topic).or_insert(TopicStatus {
                oldest: i64::MAX,
                ..TopicStatus::default()
            });
            topic.records += 1;
            topic.bytes += (frame::HEADER_LEN + payload.len()) as u64;
            topic.oldest = topic.oldest.min(record.spooled_at);
        }
    }
    Ok(topics)
}
