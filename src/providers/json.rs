//! Small helpers for picking fields out of vendor JSON without panicking.

use super::PayloadError;
use crate::event::Attribute;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Most attributes kept per event; the raw payload always has the rest.
pub const MAX_ATTRIBUTES: usize = 256;
/// Deepest nesting flattened into attributes.
const MAX_DEPTH: usize = 8;

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

/// A required non-empty string (or number) field.
pub fn required_text(
    obj: &Map<String, Value>,
    keys: &[&str],
    path: &str,
) -> Result<String, PayloadError> {
    match first(obj, keys) {
        None | Some(Value::Null) => Err(PayloadError::new(path, "missing")),
        Some(v) => {
            text(Some(v)).ok_or_else(|| PayloadError::new(path, "expected a non-empty string"))
        }
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

/// Collects scalars into attributes under dotted paths, bounded in count and depth.
#[derive(Debug, Default)]
pub struct Flattener {
    pub attributes: BTreeMap<String, Attribute>,
    left_out: usize,
}

impl Flattener {
    /// Adds one attribute (a later value for the same key wins).
    pub fn put(&mut self, key: impl Into<String>, value: Attribute) {
        let key = key.into();
        if self.attributes.len() >= MAX_ATTRIBUTES && !self.attributes.contains_key(&key) {
            self.left_out += 1;
            return;
        }
        self.attributes.insert(key, value);
    }

    /// Adds every scalar under `value`, keyed `prefix.path.to.leaf` (array items by index).
    pub fn flatten(&mut self, prefix: &str, value: &Value) {
        self.walk(prefix.to_string(), value, 0);
    }

    fn walk(&mut self, key: String, value: &Value, depth: usize) {
        if let Some(scalar) = Attribute::from_json(value) {
            if !key.is_empty() {
                self.put(key, scalar);
            }
            return;
        }
        if depth >= MAX_DEPTH {
            self.left_out += 1;
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
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.walk(join(&i.to_string()), v, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// The attributes, plus a warning if any were left out.
    pub fn finish(self, warnings: &mut Vec<String>) -> BTreeMap<String, Attribute> {
        if self.left_out > 0 {
            warnings.push(format!(
                "attributes: {} value(s) beyond the limit of {MAX_ATTRIBUTES} attributes or {MAX_DEPTH} levels were left out; raw_payload has them",
                self.left_out
            ));
        }
        self.attributes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        assert!(warnings[0].contains("10 value(s)"));
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
