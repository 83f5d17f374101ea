//! The schema may only evolve safely. Every schema hookstream has shipped is kept in
//! `avro/history/` (`webhook_event.N.avsc`), and against each of them the current schema must be:
//!
//! 1. **backward compatible**: a consumer holding the current schema reads every record written
//!    with the old one (apache-avro's `SchemaCompatibility::can_read(old, current)`);
//! 2. **readable by old consumers** for the records they can know of: a consumer still holding
//!    the old schema reads what the current schema writes for the old schema's providers
//!    (`can_read(current restricted to the old Provider symbols, old)`);
//! 3. **losing no field**: every field of the old schema is still there (consumers' queries name
//!    them; a field to retire is documented as such, not removed).
//!
//! The first two are also shown on real bytes: a record is written with one schema and read with
//! the other.

use super::{encode_datum, schema, SCHEMA_JSON};
use crate::event::WebhookEvent;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::Schema;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn history() -> Vec<(PathBuf, String)> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/avro/history"));
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("avro/history exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            (p, text)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "avro/history has no schema");
    files
}

/// The `Provider` enum's symbols in a schema's JSON.
fn provider_symbols(json: &serde_json::Value) -> Vec<String> {
    provider_enum(json)
        .and_then(|e| e["symbols"].as_array())
        .map(|s| {
            s.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn provider_enum(json: &serde_json::Value) -> Option<&serde_json::Value> {
    json["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == "provider")
        .map(|f| &f["type"])
}

/// `current` as it writes the records of `old`'s providers: its `Provider` enum restricted to
/// the symbols `old` has.
fn restricted(current: &str, old: &str) -> String {
    let old_symbols = provider_symbols(&serde_json::from_str(old).expect("JSON"));
    let mut json: serde_json::Value = serde_json::from_str(current).expect("JSON");
    let fields = json["fields"].as_array_mut().expect("fields");
    if let Some(field) = fields.iter_mut().find(|f| f["name"] == "provider") {
        let symbols = field["type"]["symbols"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| {
                s.as_str()
                    .is_some_and(|s| old_symbols.iter().any(|o| o == s))
            })
            .collect();
        field["type"]["symbols"] = serde_json::Value::Array(symbols);
        if let Some(object) = field["type"].as_object_mut() {
            object.remove("default");
        }
    }
    json.to_string()
}

fn field_names(json: &serde_json::Value, prefix: &str, names: &mut Vec<String>) {
    let Some(fields) = json["fields"].as_array() else {
        return;
    };
    for field in fields {
        let name = format!("{prefix}{}", field["name"].as_str().unwrap_or_default());
        names.push(name.clone());
        let nested = match &field["type"] {
            serde_json::Value::Array(branches) => branches.iter().find(|b| b.is_object()),
            other => Some(other),
        };
        if let Some(nested) = nested {
            field_names(nested, &format!("{name}."), names);
        }
    }
}

/// The rules of the module's documentation; `Err` says which one `current` breaks.
fn check(old: &str, current: &str) -> Result<(), String> {
    let old_schema = Schema::parse_str(old).map_err(|e| format!("old schema: {e}"))?;
    let current_schema = Schema::parse_str(current).map_err(|e| format!("new schema: {e}"))?;
    SchemaCompatibility::can_read(&old_schema, &current_schema)
        .map_err(|e| format!("not backward compatible (new readers, old records): {e}"))?;
    let as_written = Schema::parse_str(&restricted(current, old))
        .map_err(|e| format!("restricted schema: {e}"))?;
    SchemaCompatibility::can_read(&as_written, &old_schema).map_err(|e| {
        format!("old readers cannot read new records of the providers they know: {e}")
    })?;
    let mut old_fields = Vec::new();
    let mut current_fields = Vec::new();
    field_names(
        &serde_json::from_str(old).map_err(|e| e.to_string())?,
        "",
        &mut old_fields,
    );
    field_names(
        &serde_json::from_str(current).map_err(|e| e.to_string())?,
        "",
        &mut current_fields,
    );
    if let Some(gone) = old_fields.iter().find(|f| !current_fields.contains(f)) {
        return Err(format!("field {gone} was removed"));
    }
    Ok(())
}

#[test]
fn the_current_schema_evolves_safely_from_every_shipped_one() {
    for (path, old) in history() {
        if let Err(why) = check(&old, SCHEMA_JSON) {
            panic!("against {}: {why}", path.display());
        }
    }
}

/// The current schema with `edit` applied to its JSON.
fn edited(edit: impl FnOnce(&mut Vec<serde_json::Value>)) -> String {
    let mut json: serde_json::Value = serde_json::from_str(SCHEMA_JSON).expect("JSON");
    edit(json["fields"].as_array_mut().expect("fields"));
    json.to_string()
}

#[test]
fn removing_a_field_fails_the_check() {
    let (_, old) = history().remove(0);
    for name in ["event_name", "session_id"] {
        let current = edited(|fields| fields.retain(|f| f["name"] != name));
        let why = check(&old, &current).expect_err("a removed field is refused");
        assert!(
            why.contains(name) || why.contains("old readers"),
            "{name}: {why}"
        );
    }
}

#[test]
fn changing_a_type_fails_the_check() {
    let (_, old) = history().remove(0);
    let current = edited(|fields| {
        if let Some(f) = fields.iter_mut().find(|f| f["name"] == "event_time") {
            f["type"] = serde_json::json!("string");
        }
    });
    assert!(check(&old, &current)
        .expect_err("a changed type is refused")
        .contains("backward"));
}

#[test]
fn adding_a_field_without_a_default_fails_the_check() {
    let (_, old) = history().remove(0);
    let current = edited(|fields| {
        fields.push(serde_json::json!({"name": "tenant", "type": "string", "doc": "x"}));
    });
    assert!(check(&old, &current)
        .expect_err("new readers could not read old records")
        .contains("backward"));
}

#[test]
fn dropping_a_provider_symbol_fails_the_check() {
    let (_, old) = history().remove(0);
    let current = edited(|fields| {
        if let Some(f) = fields.iter_mut().find(|f| f["name"] == "provider") {
            f["type"]["symbols"] = serde_json::json!(["livesession", "other"]);
        }
    });
    assert!(check(&old, &current).is_err());
}

fn sample(provider: &'static str) -> WebhookEvent {
    WebhookEvent {
        event_id: "evt-1".into(),
        provider,
        event_name: "js_error".into(),
        event_time: 1_700_000_000_000,
        received_at: 1_700_000_000_500,
        subject_id: Some("visitor-1".into()),
        session_id: None,
        account_id: None,
        source_id: None,
        user: None,
        geo: None,
        client: None,
        attributes: BTreeMap::new(),
        warnings: Vec::new(),
        raw_payload: "{}".into(),
        dedupe_key: None,
    }
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    let Value::Record(fields) = record else {
        panic!("a record: {record:?}")
    };
    &fields
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
}

#[test]
fn an_old_consumer_reads_a_built_in_record_written_now() {
    let (_, old) = history().remove(0);
    let old = Schema::parse_str(&old).expect("old schema");
    for provider in crate::providers::BUILT_IN {
        let bytes = encode_datum(&sample(provider.name())).expect("encodes");
        let read = apache_avro::from_avro_datum(schema(), &mut bytes.as_slice(), Some(&old))
            .expect("an old reader reads it");
        assert!(
            matches!(field(&read, "provider"), Value::Enum(_, s) if s == provider.name()),
            "{read:?}"
        );
    }
}

#[test]
fn a_new_consumer_reads_a_record_written_before() {
    let (_, old_text) = history().remove(0);
    let old = Schema::parse_str(&old_text).expect("old schema");
    // A record as the old schema wrote it: the current record without provider_name.
    let Value::Record(mut fields) = super::to_value(&sample("seismic")) else {
        panic!("a record")
    };
    fields.retain(|(n, _)| n != "provider_name");
    if let Some((_, v)) = fields.iter_mut().find(|(n, _)| n == "provider") {
        *v = Value::Enum(2, "seismic".into());
    }
    let bytes = apache_avro::to_avro_datum(&old, Value::Record(fields)).expect("old encoding");
    let read = apache_avro::from_avro_datum(&old, &mut bytes.as_slice(), Some(schema()))
        .expect("a new reader reads it");
    assert_eq!(field(&read, "provider"), &Value::Enum(2, "seismic".into()));
    assert_eq!(field(&read, "provider_name"), &Value::String(String::new()));
}
