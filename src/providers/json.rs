//! Small helpers for picking fields out of vendor JSON without panicking.

use super::PayloadError;
use crate::event::Attribute;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most attributes kept per event; the raw payload always has the rest.
pub const MAX_ATTRIBUTES: usize = 256;
/// Longest attribute key, in bytes; longer keys are truncated (and named in a warning).
pub const MAX_ATTRIBUTE_KEY_BYTES: usize = 256;
/// Longest string attribute value, in bytes; longer values are truncated (and named in a warning).
pub const MAX_ATTRIBUTE_VALUE_BYTES: usize = 4096;
/// Longest event id, in bytes; a longer one is `invalid_payload`.
pub const MAX_EVENT_ID_BYTES: usize = 256;
/// Most warnings kept per event.
pub const MAX_WARNINGS: usize = 32;
/// Deepest nesting flattened into attributes.
const MAX_DEPTH: usize = 8;
/// Most keys named in one warning.
const MAX_NAMED: usize = 16;
/// Longest piece of payload text quoted in a warning, in characters.
const MAX_QUOTED_CHARS: usize = 64;

/// Follows `path` through nested objects.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// Follows `path` from a top-level object.
pub fn at_key<'a>(obj: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    at(obj.get(*first)?, rest)
}

/// A non-empty (after trimming) string, or a number written as a string. Identifiers sometimes
/// arrive as numbers; they are kept as opaque strings.
pub fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// [`text`] at `path`.
pub fn text_at(value: &Value, path: &[&str]) -> Option<String> {
    text(at(value, path))
}

/// A number as `f64`.
pub fn number(value: Option<&Value>) -> Option<f64> {
    value?.as_f64()
}

/// The first of `keys` present in `obj` (vendors drift between spellings).
pub fn first<'a>(obj: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| obj.get(*k))
}

/// The first of `keys` present and not null; `Err` says it is missing, naming `path`.
fn present<'a>(
    obj: &'a Map<String, Value>,
    keys: &[&str],
    path: &str,
) -> Result<&'a Value, PayloadError> {
    match first(obj, keys) {
        None | Some(Value::Null) => Err(PayloadError::new(path, "missing")),
        Some(value) => Ok(value),
    }
}

/// A required non-empty string (or number) field.
pub fn required_text(
    obj: &Map<String, Value>,
    keys: &[&str],
    path: &str,
) -> Result<String, PayloadError> {
    let value = present(obj, keys, path)?;
    text(Some(value)).ok_or_else(|| PayloadError::new(path, "expected a non-empty string"))
}

/// A required non-empty **string** under the first of `keys` present: an event name decides a
/// topic, so a number (or anything else) there is the wrong shape, not a name.
pub fn required_string(
    obj: &Map<String, Value>,
    keys: &[&str],
    path: &str,
) -> Result<String, PayloadError> {
    match present(obj, keys, path)? {
        Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        Value::String(_) => Err(PayloadError::new(path, "is empty")),
        other => Err(PayloadError::new(
            path,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

/// What a JSON value is, for errors.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The event id: a required non-empty string (or number) of at most [`MAX_EVENT_ID_BYTES`],
/// under the first of `keys` present (errors name the first key).
pub fn event_id(obj: &Map<String, Value>, keys: &[&str]) -> Result<String, PayloadError> {
    let path = keys.first().copied().unwrap_or("id");
    let id = required_text(obj, keys, path)?;
    if id.len() > MAX_EVENT_ID_BYTES {
        return Err(PayloadError::new(
            path,
            format!(
                "is {} bytes long; event ids are at most {MAX_EVENT_ID_BYTES}",
                id.len()
            ),
        ));
    }
    Ok(id)
}

/// Payload text as shown in a warning: at most a few dozen characters.
pub fn clipped(text: &str) -> String {
    let mut chars = text.chars();
    let mut head: String = chars.by_ref().take(MAX_QUOTED_CHARS).collect();
    if chars.next().is_some() {
        head.push('…');
    }
    head
}

/// [`clipped`], in quotes.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", clipped(text).escape_debug())
}

/// Cuts `s` to at most `max` bytes at a character boundary; true if it was longer.
fn truncate_utf8(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

/// Keys noted for a warning: how many, and the first few of them.
#[derive(Debug, Default)]
struct Noted {
    count: usize,
    names: Vec<String>,
}

impl Noted {
    fn note(&mut self, key: &str) {
        self.count += 1;
        if self.names.len() < MAX_NAMED {
            self.names.push(quoted(key));
        }
    }

    fn list(&self) -> String {
        let mut list = self.names.join(", ");
        if self.count > self.names.len() {
            list.push_str(&format!(" and {} more", self.count - self.names.len()));
        }
        list
    }
}

/// A required object field.
pub fn required_object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Map<String, Value>, PayloadError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(PayloadError::new(path, "missing")),
        Some(v) => v
            .as_object()
            .ok_or_else(|| PayloadError::new(path, "expected an object")),
    }
}

/// Interprets an integer epoch timestamp: 10 digits are seconds, 13 digits milliseconds.
/// Anything else is not trusted as a time.
pub fn epoch_millis(value: Option<&Value>) -> Option<i64> {
    let n = value?.as_i64()?;
    match n.checked_abs()?.to_string().len() {
        10 => n.checked_mul(1000),
        13 => Some(n),
        _ => None,
    }
}

/// The first of `candidates` that is an epoch time ([`epoch_millis`]), or `why` there is none.
pub fn first_epoch_millis<const N: usize>(
    candidates: [Option<&Value>; N],
    why: &'static str,
) -> Result<i64, &'static str> {
    candidates.into_iter().find_map(epoch_millis).ok_or(why)
}

/// Collects scalars into attributes under dotted paths, bounded in count, depth, key length and
/// value length, whatever the payload: the walk stops once the cap is reached.
#[derive(Debug, Default)]
pub struct Flattener {
    pub attributes: BTreeMap<String, Attribute>,
    /// Some values were not kept (the attribute cap or the depth limit was reached).
    left_out: bool,
    long_keys: Noted,
    long_values: Noted,
    /// JSON values visited, to show that the walk stops at the cap.
    #[cfg(test)]
    visited: usize,
}

impl Flattener {
    fn full(&self) -> bool {
        self.attributes.len() >= MAX_ATTRIBUTES
    }

    /// Adds one attribute (a later value for the same key wins).
    pub fn put(&mut self, key: impl Into<String>, value: Attribute) {
        let mut key = key.into();
        if truncate_utf8(&mut key, MAX_ATTRIBUTE_KEY_BYTES) {
            self.long_keys.note(&key);
        }
        if self.full() && !self.attributes.contains_key(&key) {
            self.left_out = true;
            return;
        }
        let value = match value {
            Attribute::String(mut s) => {
                if truncate_utf8(&mut s, MAX_ATTRIBUTE_VALUE_BYTES) {
                    self.long_values.note(&key);
                }
                Attribute::String(s)
            }
            other => other,
        };
        self.attributes.insert(key, value);
    }

    /// Adds every scalar under `value`, keyed `prefix.path.to.leaf` (array items by index).
    pub fn flatten(&mut self, prefix: &str, value: &Value) {
        self.walk(prefix.to_string(), value, 0);
    }

    fn walk(&mut self, key: String, value: &Value, depth: usize) {
        #[cfg(test)]
        {
            self.visited += 1;
        }
        if self.full() {
            self.left_out = true;
            return;
        }
        if let Some(scalar) = Attribute::from_json(value) {
            if !key.is_empty() {
                self.put(key, scalar);
            }
            return;
        }
        if depth >= MAX_DEPTH {
            self.left_out = true;
            return;
        }
        let join = |child: &str| {
            if key.is_empty() {
                child.to_string()
            } else {
                format!("{key}.{child}")
            }
        };
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    self.walk(join(k), v, depth + 1);
                    if self.left_out && self.full() {
                        return;
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.walk(join(&i.to_string()), v, depth + 1);
                    if self.left_out && self.full() {
                        return;
                    }
                }
            }
            _ => {}
        }
    }

    /// The attributes. Says in `warnings` what was left out or truncated, then bounds
    /// `warnings` itself to [`MAX_WARNINGS`].
    pub fn finish(self, warnings: &mut Vec<String>) -> BTreeMap<String, Attribute> {
        if self.left_out {
            warnings.push(format!(
                "attributes: values beyond {MAX_ATTRIBUTES} attributes or {MAX_DEPTH} levels of nesting were left out; raw_payload has them"
            ));
        }
        if self.long_keys.count > 0 {
            warnings.push(format!(
                "attributes: {} key(s) longer than {MAX_ATTRIBUTE_KEY_BYTES} bytes were truncated: {}",
                self.long_keys.count,
                self.long_keys.list()
            ));
        }
        if self.long_values.count > 0 {
            warnings.push(format!(
                "attributes: {} string value(s) longer than {MAX_ATTRIBUTE_VALUE_BYTES} bytes were truncated: {}; raw_payload has them whole",
                self.long_values.count,
                self.long_values.list()
            ));
        }
        if warnings.len() > MAX_WARNINGS {
            let dropped = warnings.len() - (MAX_WARNINGS - 1);
            warnings.truncate(MAX_WARNINGS - 1);
            warnings.push(format!("{dropped} more warning(s) left out"));
        }
        self.attributes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_used_as_ids_keep_their_exact_text() {
        // Every built-in reads ids, subjects and sessions through `text`.
        for id in [
            "9007199254740993",
            "18446744073709551617",
            "123456789012345678901231",
            "-42",
            "1.50",
        ] {
            let value: Value = serde_json::from_str(id).expect("a number");
            assert_eq!(text(Some(&value)).as_deref(), Some(id));
        }
        // Arithmetic on them still works.
        let big: Value = serde_json::from_str("18446744073709551617").expect("a number");
        assert_eq!(number(Some(&big)), Some(18_446_744_073_709_551_617.0));
    }

    #[test]
    fn ten_digits_are_seconds_and_thirteen_are_millis() {
        assert_eq!(
            epoch_millis(Some(&json!(1691161881))),
            Some(1_691_161_881_000)
        );
        assert_eq!(
            epoch_millis(Some(&json!(1741717450350_i64))),
            Some(1_741_717_450_350)
        );
        assert_eq!(epoch_millis(Some(&json!(16911618810_i64))), None);
        assert_eq!(epoch_millis(Some(&json!("1691161881"))), None);
        assert_eq!(epoch_millis(Some(&json!(1.5))), None);
        assert_eq!(epoch_millis(None), None);
    }

    #[test]
    fn flattening_uses_dotted_paths_and_indexes() {
        let mut f = Flattener::default();
        f.flatten(
            "payload",
            &json!({"a": {"b": 1, "c": [true, null]}, "d": 2.5}),
        );
        let mut warnings = vec![];
        let attrs = f.finish(&mut warnings);
        assert_eq!(attrs["payload.a.b"], Attribute::Long(1));
        assert_eq!(attrs["payload.a.c.0"], Attribute::Boolean(true));
        assert_eq!(attrs["payload.a.c.1"], Attribute::Null);
        assert_eq!(attrs["payload.d"], Attribute::Double(2.5));
        assert!(warnings.is_empty());
    }

    #[test]
    fn flattening_is_bounded_and_says_so() {
        let big: Map<String, Value> = (0..MAX_ATTRIBUTES + 10)
            .map(|i| (format!("k{i}"), json!(i)))
            .collect();
        let mut f = Flattener::default();
        f.flatten("", &Value::Object(big));
        let mut warnings = vec![];
        assert_eq!(f.finish(&mut warnings).len(), MAX_ATTRIBUTES);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("left out"), "{warnings:?}");
    }

    #[test]
    fn long_keys_and_values_are_truncated_and_named() {
        let long_key = format!("k{}", "é".repeat(300));
        let mut f = Flattener::default();
        f.flatten(
            "p",
            &json!({ long_key.clone(): 1, "text": "x".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 1), "ok": "y" }),
        );
        let mut warnings = vec![];
        let attrs = f.finish(&mut warnings);
        assert!(attrs.keys().all(|k| k.len() <= MAX_ATTRIBUTE_KEY_BYTES));
        assert_eq!(
            attrs["p.text"],
            Attribute::String("x".repeat(MAX_ATTRIBUTE_VALUE_BYTES))
        );
        assert_eq!(attrs["p.ok"], Attribute::String("y".into()));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("1 key(s)"), "{warnings:?}");
        assert!(warnings[1].contains("\"p.text\""), "{warnings:?}");
    }

    #[test]
    fn a_huge_payload_costs_no_more_than_the_cap() {
        // A million-element array: the walk stops at the cap instead of visiting every element.
        let huge = Value::Array(vec![json!({"a": 1}); 1_000_000]);
        let mut f = Flattener::default();
        f.flatten("p", &huge);
        assert!(f.visited <= 2 * MAX_ATTRIBUTES + 2, "visited {}", f.visited);
        let mut warnings = vec![];
        assert_eq!(f.finish(&mut warnings).len(), MAX_ATTRIBUTES);
    }

    #[test]
    fn warnings_are_bounded() {
        let mut warnings: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
        Flattener::default().finish(&mut warnings);
        assert_eq!(warnings.len(), MAX_WARNINGS);
        assert_eq!(warnings[MAX_WARNINGS - 1], "69 more warning(s) left out");
    }

    #[test]
    fn event_ids_longer_than_256_bytes_are_invalid() {
        let ok = json!({"id": "a".repeat(256)});
        assert!(event_id(ok.as_object().unwrap(), &["id"]).is_ok());
        let long = json!({"id": "a".repeat(257)});
        let err = event_id(long.as_object().unwrap(), &["id"]).unwrap_err();
        assert_eq!(err.field, "id");
        assert!(err.problem.contains("257 bytes"), "{}", err.problem);
    }

    #[test]
    fn required_fields_name_the_path() {
        let obj = json!({"a": "", "b": 3, "c": {}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(
            required_text(&obj, &["x"], "x").unwrap_err().problem,
            "missing"
        );
        assert_eq!(
            required_text(&obj, &["a"], "a").unwrap_err().problem,
            "expected a non-empty string"
        );
        assert_eq!(required_text(&obj, &["b"], "b").unwrap(), "3");
        assert!(required_object(&obj, "c", "c").is_ok());
        assert!(required_object(&obj, "b", "b").is_err());
    }
}
