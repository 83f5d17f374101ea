//! `hookstream tail`: the records of one or more topics (named, or matched by regular expressions
//! like `rpk topic consume -r`) as JSON lines, decoded with the shipped schema — read like
//! `kcat -C` or `rpk topic consume`: from a starting point to the end (or on, following), every
//! partition.

use super::reader::{ReadError, Reader, Start};
use crate::avro::{datum_of, schema};
use crate::configuration::Settings;
use rdkafka::message::{Headers, Message, OwnedMessage};
use std::io::Write;

/// A group that never commits: tailing changes nothing.
const GROUP: &str = "hookstream-tail";

#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    pub from: Start,
    /// Keep reading new records after the end (until interrupted).
    pub follow: bool,
    /// Stop after this many records.
    pub count: Option<u64>,
    /// Print each record's headers too.
    pub headers: bool,
    /// The topics given are regular expressions, matched against the cluster's topic names.
    pub regex: bool,
}

/// Why nothing (more) could be printed.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("{0} is the dead-letter topic: its records are request bodies kept as received, not Avro records; `hookstream dead-letters list` prints them")]
    DeadLetterTopic(String),
    #[error("no topic matches {0} (`hookstream topics` lists them)")]
    NoMatch(String),
    #[error("{0}")]
    Other(String),
}

/// The topics `given` names: themselves, or with `regex` every topic of the cluster one of them
/// matches (whole names, as `rpk` matches), the dead-letter topic left out.
fn resolve(settings: &Settings, given: &[String], regex: bool) -> Result<Vec<String>, TailError> {
    let dead_letters = settings.dead_letter.topic(&settings.kafka.topic_prefix);
    if !regex {
        if let Some(topic) = given.iter().find(|t| **t == dead_letters) {
            return Err(TailError::DeadLetterTopic(topic.clone()));
        }
        let mut topics = given.to_vec();
        topics.dedup();
        return Ok(topics);
    }
    let patterns = given
        .iter()
        .map(|p| {
            regex::Regex::new(&format!("^(?:{p})$"))
                .map_err(|e| TailError::Other(format!("--regex {p:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let topics: Vec<String> = super::reader::topic_names(&settings.kafka)
        .map_err(TailError::Other)?
        .into_iter()
        .filter(|name| *name != dead_letters && patterns.iter().any(|p| p.is_match(name)))
        .collect();
    if topics.is_empty() {
        return Err(TailError::NoMatch(given.join(" or ")));
    }
    Ok(topics)
}

/// Prints the records of `topics` to `out`; returns how many. Blocking.
pub fn tail(
    settings: &Settings,
    topics: &[String],
    options: TailOptions,
    out: &mut dyn Write,
) -> Result<u64, TailError> {
    let topics = resolve(settings, topics, options.regex)?;
    let mut reader = Reader::open_topics(
        &settings.kafka,
        GROUP,
        &topics,
        options.from,
        options.follow,
    )?;
    let mut printed = 0;
    while !reader.done() && options.count.is_none_or(|n| printed < n) {
        let Some(message) = reader.next_message().map_err(TailError::Other)? else {
            continue;
        };
        writeln!(out, "{}", line(&message, options.headers))
            .and_then(|()| out.flush())
            .map_err(|e| TailError::Other(format!("cannot write: {e}")))?;
        printed += 1;
    }
    Ok(printed)
}

/// One record as a JSON object.
fn line(message: &OwnedMessage, with_headers: bool) -> serde_json::Value {
    let key = message
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    let mut line = serde_json::json!({
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": message.timestamp().to_millis(),
        "key": key,
    });
    if with_headers {
        let headers: serde_json::Map<String, serde_json::Value> = message
            .headers()
            .into_iter()
            .flat_map(|h| h.iter())
            .map(|h| {
                let value = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                (h.key.to_string(), value.into())
            })
            .collect();
        line["headers"] = headers.into();
    }
    match message.payload().map(decode) {
        Some(Ok(value)) => line["value"] = value,
        Some(Err(why)) => line["undecodable"] = why.into(),
        None => line["value"] = serde_json::Value::Null,
    }
    line
}

/// The record in a value hookstream wrote, or why it is not one.
fn decode(value: &[u8]) -> Result<serde_json::Value, String> {
    let Some(mut datum) = datum_of(value) else {
        return Err(
            "not a value hookstream wrote: neither Avro single-object encoding of avro/webhook_event.avsc nor the Confluent wire format".into(),
        );
    };
    let record = apache_avro::from_avro_datum(schema(), &mut datum, None)
        .map_err(|e| format!("does not decode with avro/webhook_event.avsc: {e}"))?;
    serde_json::Value::try_from(record).map_err(|e| e.to_string())
}
