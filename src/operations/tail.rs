//! `hookstream tail`: the records of one or more topics (named, or matched by regular expressions
//! like `rpk topic consume -r`), read like `kcat -C` or `rpk topic consume`: from a starting
//! point (the beginning, an offset, the last N, a time) to the end (or on, following), every
//! partition; printed as JSON lines decoded with the shipped schema, as the values' bytes, as the
//! keys, or through a kcat-like template; alone, or as a consumer group that commits, so a
//! second run goes on where the first stopped.

use super::reader::{Lookup, Opening, ReadError, Reader, Start};
use crate::avro::{datum_of, schema};
use crate::configuration::Settings;
use rdkafka::message::{Headers, Message, OwnedMessage};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The group of a tail without `--group`: it never commits, so tailing changes nothing.
const GROUP: &str = "hookstream-tail";
/// How often a tail with `--group` commits what it printed (and once more when it stops).
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct TailOptions {
    pub from: Start,
    /// Keep reading new records after the end (until interrupted).
    pub follow: bool,
    /// Stop after this many records.
    pub count: Option<u64>,
    /// Print each record's headers too (`json` format).
    pub headers: bool,
    /// The topics given are regular expressions, matched against the cluster's topic names.
    pub regex: bool,
    /// With `regex`, match the internal topics too.
    pub all: bool,
    pub format: Format,
    /// Read as this consumer group, from its committed offsets, committing what was printed.
    pub group: Option<String>,
    /// How long the cluster has to answer for the metadata and offsets before reading starts.
    pub timeout: Duration,
    /// Set (by a signal) to stop reading: what was printed is committed, and the tail ends.
    pub stop: Option<Arc<AtomicBool>>,
}

/// How each record is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line: topic, partition, offset, timestamp, key, (headers,) and the
    /// decoded record as `value`, or `undecodable` saying why it does not decode.
    Json,
    /// The value's bytes as they are in Kafka, then a newline (like `kcat -C`).
    Raw,
    /// The key, then a newline.
    Key,
    /// A kcat-like template: `%t %p %o %T %k %v %s %S %K %h`, `%%`, `\n`, `\t`, `\\`.
    Template(Vec<Piece>),
}

/// A part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// The letter after `%`.
    Field(char),
}

/// The letters a template's `%` takes, with what each prints.
const FIELDS: &[(char, &str)] = &[
    ('t', "topic"),
    ('p', "partition"),
    ('o', "offset"),
    ('T', "timestamp (epoch ms)"),
    ('k', "key"),
    ('v', "the decoded record as one line of JSON"),
    ('s', "the value's bytes"),
    ('S', "the value's size"),
    ('K', "the key's size"),
    ('h', "headers as name=value,…"),
];

impl std::str::FromStr for Format {
    type Err = String;

    /// `json`, `raw`, `key`, or a template (anything with a `%` field).
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "json" => Ok(Format::Json),
            "raw" => Ok(Format::Raw),
            "key" => Ok(Format::Key),
            _ if text.contains('%') => template(text).map(Format::Template),
            _ => Err(format!(
                "{text:?} is not json, raw, key or a template like '%t %p %o %k %v\\n'"
            )),
        }
    }
}

fn template(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => literal.push('%'),
                Some(field) if FIELDS.iter().any(|(f, _)| *f == field) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(field));
                }
                other => {
                    let fields: Vec<String> = FIELDS
                        .iter()
                        .map(|(f, what)| format!("%{f} {what}"))
                        .collect();
                    return Err(format!(
                        "{} in the template is not a field: {}, %% a %",
                        other.map_or("a % at the end".to_string(), |c| format!("%{c}")),
                        fields.join(", ")
                    ));
                }
            },
            '\\' => match chars.next() {
                Some('n') => literal.push('\n'),
                Some('t') => literal.push('\t'),
                Some('r') => literal.push('\r'),
                Some('\\') => literal.push('\\'),
                Some(other) => {
                    literal.push('\\');
                    literal.push(other);
                }
                None => literal.push('\\'),
            },
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// Why nothing (more) could be printed.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("{0} is the dead-letter topic: its records are request bodies kept as received, not Avro records; `hookstream dead-letters list` prints them")]
    DeadLetterTopic(String),
    #[error("no topic matches {0} (`hookstream topics` lists them{1})")]
    NoMatch(String, &'static str),
    #[error("{0}")]
    Other(String),
}

/// The topics `given` names: themselves, or with `regex` every topic of the cluster one of them
/// matches (whole names, as `rpk` matches), the dead-letter topic left out, and the internal
/// topics too unless `all`.
fn resolve(
    settings: &Settings,
    given: &[String],
    options: &TailOptions,
) -> Result<Vec<String>, TailError> {
    let dead_letters = settings.dead_letter.topic(&settings.kafka.topic_prefix);
    if !options.regex {
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
    let topics: Vec<String> = Lookup::new(&settings.kafka, options.timeout)
        .and_then(|lookup| lookup.topic_names())
        .map_err(TailError::Other)?
        .into_iter()
        .filter(|name| {
            *name != dead_letters
                && (options.all || super::topics::internal(settings, name).is_none())
                && patterns.iter().any(|p| p.is_match(name))
        })
        .collect();
    if topics.is_empty() {
        let hint = if options.all {
            ""
        } else {
            "; internal topics are matched with --all"
        };
        return Err(TailError::NoMatch(given.join(" or "), hint));
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
    let topics = resolve(settings, topics, &options)?;
    let opening = Opening {
        start: options.from,
        follow: options.follow,
        resume: options.group.is_some(),
        timeout: options.timeout,
    };
    let group = options.group.as_deref().unwrap_or(GROUP);
    let mut reader = Reader::open_topics(&settings.kafka, group, &topics, opening)?;
    let stopped = || {
        options
            .stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::SeqCst))
    };
    let commit = |reader: &Reader| -> Result<(), TailError> {
        match options.group {
            Some(_) => reader.commit().map_err(TailError::Other),
            None => Ok(()),
        }
    };
    let mut printed = 0;
    let mut committed_at = Instant::now();
    while !reader.done() && options.count.is_none_or(|n| printed < n) && !stopped() {
        let message = reader.next_message().map_err(TailError::Other)?;
        if let Some(message) = message {
            print(out, &message, &options)
                .and_then(|()| out.flush())
                .map_err(|e| TailError::Other(format!("cannot write: {e}")))?;
            printed += 1;
        }
        if committed_at.elapsed() >= COMMIT_INTERVAL {
            commit(&reader)?;
            committed_at = Instant::now();
        }
    }
    commit(&reader)?;
    Ok(printed)
}

/// Prints one record as `options.format` says.
fn print(
    out: &mut dyn Write,
    message: &OwnedMessage,
    options: &TailOptions,
) -> std::io::Result<()> {
    match &options.format {
        Format::Json => writeln!(out, "{}", line(message, options.headers)),
        Format::Raw => {
            out.write_all(message.payload().unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Key => {
            out.write_all(message.key().unwrap_or_default())?;
            out.write_all(b"\n")
        }
        Format::Template(pieces) => {
            for piece in pieces {
                match piece {
                    Piece::Text(text) => out.write_all(text.as_bytes())?,
                    Piece::Field(field) => field_of(out, message, *field)?,
                }
            }
            Ok(())
        }
    }
}

/// One `%` field of a template.
fn field_of(out: &mut dyn Write, message: &OwnedMessage, field: char) -> std::io::Result<()> {
    let size = |bytes: Option<&[u8]>| bytes.map_or(-1, |b| b.len() as i64);
    match field {
        't' => write!(out, "{}", message.topic()),
        'p' => write!(out, "{}", message.partition()),
        'o' => write!(out, "{}", message.offset()),
        'T' => write!(out, "{}", message.timestamp().to_millis().unwrap_or(-1)),
        'k' => out.write_all(message.key().unwrap_or_default()),
        's' => out.write_all(message.payload().unwrap_or_default()),
        'S' => write!(out, "{}", size(message.payload())),
        'K' => write!(out, "{}", size(message.key())),
        'v' => {
            let value = match message.payload().map(decode) {
                Some(Ok(value)) => value,
                Some(Err(why)) => serde_json::json!({ "undecodable": why }),
                None => serde_json::Value::Null,
            };
            write!(out, "{value}")
        }
        'h' => {
            let headers: Vec<String> = message
                .headers()
                .into_iter()
                .flat_map(|h| h.iter())
                .map(|h| {
                    let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    format!("{}={value}", h.key)
                })
                .collect();
            out.write_all(headers.join(",").as_bytes())
        }
        _ => Ok(()),
    }
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

/// The record in a value hookstream wrote, or why it is not one: what the value starts with
/// when it is neither framing hookstream writes, or the Avro decoder's error.
fn decode(value: &[u8]) -> Result<serde_json::Value, String> {
    let Some(mut datum) = datum_of(value) else {
        return Err(not_framed(value));
    };
    // A record framed for a Schema Registry names its writer's schema by id: when it is not the
    // shipped schema's record, that id is what to look up.
    let framed = match value {
        [0x00, id @ ..] if !value.starts_with(&[0xC3, 0x01]) => format!(
            "Confluent wire format, schema id {}: ",
            u32::from_be_bytes([id[0], id[1], id[2], id[3]])
        ),
        _ => String::new(),
    };
    let record = apache_avro::from_avro_datum(schema(), &mut datum, None)
        .map_err(|e| format!("{framed}does not decode with avro/webhook_event.avsc: {e}"))?;
    if !datum.is_empty() {
        return Err(format!(
            "{framed}{} byte(s) left after the record: not a record of avro/webhook_event.avsc",
            datum.len()
        ));
    }
    serde_json::Value::try_from(record).map_err(|e| format!("decodes, but not into JSON: {e}"))
}

/// Why `value` is neither Avro single-object encoding of the shipped schema nor the Confluent
/// wire format, from its first bytes.
fn not_framed(value: &[u8]) -> String {
    const WRITES: &str = "hookstream writes Avro single-object encoding (C3 01, then the schema's fingerprint) or the Confluent wire format (00, then a 4-byte schema id)";
    if value.is_empty() {
        return format!("the value is empty; {WRITES}");
    }
    let head = &value[..value.len().min(16)];
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02X}")).collect();
    let text = std::str::from_utf8(head)
        .ok()
        .filter(|t| t.chars().all(|c| !c.is_control()))
        .map(|t| format!(" ({t:?})"))
        .unwrap_or_default();
    let what = match value {
        [0xC3, 0x01, ..] if value.len() >= 10 => {
            "Avro single-object encoding of another schema than avro/webhook_event.avsc (its fingerprint differs)"
                .to_string()
        }
        [0x00, ..] => format!(
            "{} byte(s): too short for the Confluent wire format",
            value.len()
        ),
        _ => format!("not Avro as hookstream writes it: {WRITES}"),
    };
    format!(
        "{what}; the value ({} bytes) starts with {}{text}",
        value.len(),
        hex.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_json_raw_key_or_a_template() {
        assert_eq!("json".parse(), Ok(Format::Json));
        assert_eq!("raw".parse(), Ok(Format::Raw));
        assert_eq!("key".parse(), Ok(Format::Key));
        assert_eq!(
            r"%t/%p@%o %k\t100%%\n".parse(),
            Ok(Format::Template(vec![
                Piece::Field('t'),
                Piece::Text("/".into()),
                Piece::Field('p'),
                Piece::Text("@".into()),
                Piece::Field('o'),
                Piece::Text(" ".into()),
                Piece::Field('k'),
                Piece::Text("\t100%\n".into()),
            ]))
        );
        let err = "%q".parse::<Format>().unwrap_err();
        assert!(
            err.contains("%q in the template is not a field: %t topic"),
            "{err}"
        );
        let err = "yaml".parse::<Format>().unwrap_err();
        assert!(err.contains("not json, raw, key or a template"), "{err}");
    }

    #[test]
    fn an_undecodable_value_says_what_it_starts_with() {
        let why = decode(b"hookstream readiness canary").unwrap_err();
        assert!(
            why.contains("not Avro as hookstream writes it")
                && why.contains("starts with 68 6F 6F 6B")
                && why.contains("\"hookstream readi"),
            "{why}"
        );
        let why = decode(&[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap_err();
        assert!(why.contains("another schema"), "{why}");
        // The shipped schema's header (see crate::avro::framing), then a cut-off datum.
        let mut truncated = vec![0xC3, 0x01];
        truncated.extend(hex::decode("c4da95d5449bc630").expect("hex"));
        truncated.extend_from_slice(&[0x02, b'a']);
        let why = decode(&truncated).unwrap_err();
        assert!(
            why.starts_with("does not decode with avro/webhook_event.avsc: "),
            "{why}"
        );
    }

    #[test]
    fn a_record_framed_for_a_registry_that_does_not_decode_names_its_schema_id() {
        // Schema id 7, then a datum of another schema (a long and nothing else).
        let why = decode(&[0x00, 0, 0, 0, 7, 0x02]).unwrap_err();
        assert!(
            why.starts_with(
                "Confluent wire format, schema id 7: does not decode with avro/webhook_event.avsc: "
            ),
            "{why}"
        );
    }
}
