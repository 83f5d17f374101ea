//! The Avro specification's *Parsing Canonical Form* of a schema and its CRC-64-AVRO
//! fingerprint — what single-object encoding puts in front of every value, and what Java's
//! `BinaryMessageDecoder`, fastavro and every other implementation compute to recognize it.
//!
//! Written here from the specification rather than taken from `apache-avro`, whose canonical form
//! keeps a logical type's primitive as `{"type":"long"}` where the specification reduces it to
//! `"long"`: its fingerprint therefore differs from everyone else's for any schema with a logical
//! type (ours has two), and single-object values framed with it are unreadable elsewhere.

use serde_json::Value;

/// Attributes kept by [STRIP], in the order [ORDER] writes them.
const KEPT: [&str; 7] = [
    "name", "type", "fields", "symbols", "items", "values", "size",
];

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of `schema` (its JSON), per the specification's transformations
/// [PRIMITIVES], [FULLNAMES], [STRIP], [ORDER], [STRINGS], [INTEGERS] and [WHITESPACE].
pub fn parsing_canonical_form(schema: &Value) -> String {
    let mut out = String::new();
    write(schema, None, &mut out);
    out
}

fn write(schema: &Value, namespace: Option<&str>, out: &mut String) {
    match schema {
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(branch, namespace, out);
            }
            out.push(']');
        }
        Value::Object(object) => {
            let kind = object.get("type").and_then(Value::as_str);
            // [PRIMITIVES]: {"type":"long", …} is "long" (a logical type is a primitive too).
            if let Some(primitive) = kind.filter(|t| PRIMITIVES.contains(t)) {
                out.push_str(&quoted(primitive));
                return;
            }
            let named = matches!(kind, Some("record" | "enum" | "fixed" | "error"));
            let inner_namespace = if named {
                object.get("name").and_then(Value::as_str).map(|name| {
                    fullname(
                        name,
                        object
                            .get("namespace")
                            .and_then(Value::as_str)
                            .or(namespace),
                    )
                })
            } else {
                None
            };
            let child_namespace = inner_namespace
                .as_deref()
                .and_then(|full| full.rsplit_once('.').map(|(ns, _)| ns))
                .or(namespace);
            out.push('{');
            let mut first = true;
            for key in KEPT {
                let Some(value) = object.get(key) else {
                    continue;
                };
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&quoted(key));
                out.push(':');
                match key {
                    "name" => match &inner_namespace {
                        Some(full) => out.push_str(&quoted(full)),
                        None => out.push_str(&value.to_string()),
                    },
                    "type" if value.as_str().is_some_and(is_keyword) => {
                        out.push_str(&value.to_string())
                    }
                    "type" | "items" | "values" => write(value, child_namespace, out),
                    "fields" => {
                        out.push('[');
                        for (i, field) in value.as_array().into_iter().flatten().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            // A field is not a schema: keep its name as written, canonicalize
                            // its type.
                            out.push('{');
                            if let Some(name) = field.get("name") {
                                out.push_str("\"name\":");
                                out.push_str(&name.to_string());
                                out.push(',');
                            }
                            out.push_str("\"type\":");
                            write(
                                field.get("type").unwrap_or(&Value::Null),
                                child_namespace,
                                out,
                            );
                            out.push('}');
                        }
                        out.push(']');
                    }
                    _ => out.push_str(&value.to_string()),
                }
            }
            out.push('}');
        }
        Value::String(name) if !PRIMITIVES.contains(&name.as_str()) => {
            out.push_str(&quoted(&fullname(name, namespace)));
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The complex types' own names, which are never namespaced.
fn is_keyword(kind: &str) -> bool {
    matches!(
        kind,
        "record" | "enum" | "array" | "map" | "fixed" | "error"
    )
}

/// [FULLNAMES]: a name with its namespace.
fn fullname(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

fn quoted(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

/// The CRC-64-AVRO (Rabin) fingerprint of `canonical`, as the specification defines it.
pub fn crc64_avro(canonical: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let mut table = [0u64; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut fp = i as u64;
        for _ in 0..8 {
            fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
        }
        *slot = fp;
    }
    let mut fp = EMPTY;
    for &b in canonical {
        fp = (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

/// The 8 bytes single-object encoding writes: the fingerprint, little-endian.
pub fn fingerprint(schema: &Value) -> [u8; 8] {
    crc64_avro(parsing_canonical_form(schema).as_bytes()).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_specification_s_published_fingerprint_of_int() {
        assert_eq!(crc64_avro(br#""int""#), 0x7275_d51a_3f39_5c8f);
        assert_eq!(parsing_canonical_form(&json!({"type": "int"})), r#""int""#);
    }

    #[test]
    fn logical_types_reduce_to_their_primitive() {
        let schema = json!({"type": "long", "logicalType": "timestamp-millis"});
        assert_eq!(parsing_canonical_form(&schema), r#""long""#);
    }

    #[test]
    fn names_are_full_attributes_stripped_and_ordered() {
        let schema = json!({
            "type": "record", "namespace": "a.b", "name": "R", "doc": "gone",
            "fields": [
                {"name": "e", "doc": "gone", "default": null,
                 "type": {"symbols": ["X"], "type": "enum", "name": "E"}},
                {"name": "r", "type": ["null", "R"]},
                {"name": "m", "type": {"type": "map", "values": "string"}}
            ]
        });
        assert_eq!(
            parsing_canonical_form(&schema),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"e","type":{"name":"a.b.E","type":"enum","symbols":["X"]}},{"name":"r","type":["null","a.b.R"]},{"name":"m","type":{"type":"map","values":"string"}}]}"#
        );
    }

    #[test]
    fn the_shipped_schema_has_the_fingerprint_other_implementations_compute() {
        // fastavro 1.13 (`schema.fingerprint(to_parsing_canonical_form(...), "CRC-64-AVRO")`)
        // prints c4da95d5449bc630 for avro/webhook_event.avsc: the bytes single-object encoding
        // writes.
        let schema: Value = serde_json::from_str(super::super::SCHEMA_JSON).expect("JSON");
        assert_eq!(hex::encode(fingerprint(&schema)), "c4da95d5449bc630");
    }
}
