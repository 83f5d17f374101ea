//! `hookstream topics`: the topics under `kafka.topic_prefix`, with their partitions and end
//! offsets, like `rpk topic list`.

use super::reader;
use crate::configuration::Settings;
use std::io::Write;

/// Prints one line per topic under the prefix to `out`; returns how many. Blocking.
pub fn topics(settings: &Settings, out: &mut dyn Write) -> Result<usize, String> {
    let prefix = format!("{}.", settings.kafka.topic_prefix);
    let dead_letters = settings.dead_letter.topic(&settings.kafka.topic_prefix);
    let names: Vec<String> = reader::topic_names(&settings.kafka)?
        .into_iter()
        .filter(|name| name.starts_with(&prefix) || *name == dead_letters)
        .collect();
    let write = |out: &mut dyn Write, line: String| {
        writeln!(out, "{line}").map_err(|e| format!("cannot write: {e}"))
    };
    if names.is_empty() {
        write(
            out,
            format!(
                "no topics under {prefix}* on {} (hookstream creates a topic with its first event)",
                crate::configuration::without_userinfo(&settings.kafka.brokers)
            ),
        )?;
        return Ok(0);
    }
    let width = names.iter().map(String::len).max().unwrap_or(0).max(5);
    write(
        out,
        format!(
            "{:<width$}  {:>10}  {:>10}  end offsets",
            "topic", "partitions", "records"
        ),
    )?;
    for name in &names {
        let watermarks = reader::watermarks(&settings.kafka, name)?;
        let records: i64 = watermarks.iter().map(|(low, high)| high - low).sum();
        let ends: Vec<String> = watermarks
            .iter()
            .map(|(_, high)| high.to_string())
            .collect();
        let note = if *name == dead_letters {
            "  (dead letters: hookstream dead-letters list)"
        } else {
            ""
        };
        write(
            out,
            format!(
                "{name:<width$}  {:>10}  {records:>10}  {}{note}",
                watermarks.len(),
                ends.join(",")
            ),
        )?;
    }
    Ok(names.len())
}
