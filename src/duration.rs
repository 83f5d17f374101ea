//! Durations in configuration: read as text with a unit (`"5s"`, `"24h"`, `"500ms"`), and
//! written back the way the documentation writes them — `24h`, not `1day` — by `config check`.
//! Used as `#[serde(with = "crate::duration")]` (and `crate::duration::option`).

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;
use std::time::Duration;

/// `d` in the largest unit that states it exactly: `24h`, `5m`, `10s`, `500ms`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_string(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ if d.subsec_nanos().is_multiple_of(1_000_000) => format!("{ms}ms"),
        _ => humantime::format_duration(d).to_string(),
    }
}

/// The longest duration accepted, whatever the key: a deadline computed from a longer one could
/// pass the end of the clock (a `std::time::Instant` plus a few hundred billion years panics, and
/// did, in the HTTP server's workers, for a `server.header_timeout` that far).
/// A year counts 365.25 days, as `humantime` reads `"100years"`.
pub const MAX: Duration = Duration::from_secs(100 * 31_557_600);

/// `text` as a duration, or a message that shows the form: `"5s"`, `"24h"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let parsed = humantime::parse_duration(trimmed);
    if matches!(parsed, Ok(d) if d > MAX) {
        return Err(format!(
            "{text:?} is longer than 100 years, the longest duration accepted"
        ));
    }
    parsed.map_err(|e| {
        if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
            format!("{text:?} has no unit: write a duration with one, e.g. \"{trimmed}s\" or \"{trimmed}ms\"")
        } else {
            format!("{text:?} is not a duration like \"5s\", \"500ms\" or \"24h\" ({e})")
        }
    })
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, e.g. \"5s\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        parse(text).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{n} has no unit: write a duration as text with one, e.g. \"{n}s\""
        )))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{n} has no unit: write a duration as text with one, e.g. \"{n}s\""
        )))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
        Err(E::custom(format!(
            "{n} has no unit: write a duration as text with one, e.g. \"{n}s\""
        )))
    }
}

pub fn serialize<S: Serializer>(d: &Duration, out: S) -> Result<S::Ok, S::Error> {
    out.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Duration, D::Error> {
    input.deserialize_any(DurationVisitor)
}

/// The same for an optional duration.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, out: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, out),
            None => out.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(input).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_the_way_the_docs_write_them() {
        for (text, shown) in [
            ("1day", "24h"),
            ("24h", "24h"),
            ("90s", "90s"),
            ("120s", "2m"),
            ("500ms", "500ms"),
            ("1500ms", "1500ms"),
            ("0s", "0s"),
        ] {
            assert_eq!(format(parse(text).expect(text)), shown, "{text}");
        }
    }

    #[test]
    fn a_bare_number_is_refused_with_an_example_that_has_a_unit() {
        let err = parse("5").unwrap_err();
        assert!(err.contains("e.g. \"5s\""), "{err}");
        let err = parse("soon").unwrap_err();
        assert!(err.contains("like \"5s\""), "{err}");
    }

    #[test]
    fn a_duration_past_100_years_is_refused_before_a_deadline_overflows_the_clock() {
        assert_eq!(parse("100years"), Ok(MAX));
        assert!(parse("36525days").is_ok());
        let err = parse("500000000000years").unwrap_err();
        assert!(err.contains("longer than 100 years"), "{err}");
        // What the refusal prevents.
        let far = humantime::parse_duration("500000000000years").expect("humantime parses it");
        assert!(std::time::Instant::now().checked_add(far).is_none());
    }
}
