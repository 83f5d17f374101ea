//! `hookstream dead-letters list`: dead letters as JSON lines, oldest first per partition.

use super::reader::{ReadError, Reader, Start};
use crate::configuration::Settings;
use std::io::Write;

/// A group that never commits: listing changes nothing.
const GROUP: &str = "hookstream-dead-letters-list";

/// Prints up to `limit` dead letters from the beginning of the topic to `out`; returns how many.
/// Blocking.
pub fn list(settings: &Settings, limit: usize, out: &mut dyn Write) -> Result<usize, String> {
    let topic = settings.dead_letter.topic(&settings.kafka.topic_prefix);
    let mut reader = match Reader::open(&settings.kafka, GROUP, &topic, Start::Beginning, false) {
        Ok(reader) => reader,
        // No dead letter was ever written.
        Err(ReadError::NoSuchTopic(_)) => return Ok(0),
        Err(e) => return Err(e.to_string()),
    };
    let mut printed = 0;
    while printed < limit && !reader.done() {
        if let Some(letter) = reader.next()? {
            writeln!(out, "{}", letter.to_json()).map_err(|e| format!("cannot write: {e}"))?;
            printed += 1;
        }
    }
    Ok(printed)
}
