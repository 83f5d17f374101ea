//! Booleans in configuration: `true` or `false`, and nothing else. The configuration layer would
//! otherwise read `yes`, `on`, `1` (and their opposites) as booleans, so that
//! `HOOKSTREAM__SPOOL__ENABLED=yes` would switch the spool on while `=ja` stops startup: one rule
//! for every boolean, in files and in variables (whose values are always text), is easier to
//! get right. Used as `#[serde(deserialize_with = "crate::boolean::deserialize")]` (and
//! `crate::boolean::option`).

use serde::de::{self, Visitor};
use serde::Deserializer;
use std::fmt;

/// What a boolean setting takes, for every message that refuses one.
const TAKES: &str = "write true or false";

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<bool, E> {
        Ok(value)
    }

    /// An environment variable's value is text: `true` and `false` as written, nothing else.
    fn visit_str<E: de::Error>(self, text: &str) -> Result<bool, E> {
        match text {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(E::custom(format!("{text:?} is not a boolean: {TAKES}"))),
        }
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<bool, E> {
        Err(E::custom(format!("{n} is not a boolean: {TAKES}")))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<bool, E> {
        Err(E::custom(format!("{n} is not a boolean: {TAKES}")))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<bool, E> {
        Err(E::custom(format!("{n} is not a boolean: {TAKES}")))
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<bool, D::Error> {
    input.deserialize_any(BoolVisitor)
}

/// The same for an optional boolean (with `#[serde(default)]`: absent is `None`).
pub mod option {
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<bool>, D::Error> {
        super::deserialize(input).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Flag {
        #[serde(deserialize_with = "super::deserialize")]
        on: bool,
    }

    fn read(json: &str) -> Result<bool, String> {
        serde_json::from_str::<Flag>(json)
            .map(|f| f.on)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn only_true_and_false_are_booleans() {
        assert_eq!(read(r#"{"on": true}"#), Ok(true));
        assert_eq!(read(r#"{"on": "false"}"#), Ok(false));
        for refused in [r#""yes""#, r#""on""#, r#""1""#, r#""TRUE""#, "1", "0"] {
            let err = read(&format!(r#"{{"on": {refused}}}"#)).unwrap_err();
            assert!(
                err.contains("is not a boolean: write true or false"),
                "{refused}: {err}"
            );
        }
    }
}
