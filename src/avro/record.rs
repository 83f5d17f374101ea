//! [`WebhookEvent`] → Avro [`Value`], union branch by union branch.

use crate::event::{Attribute, Client, Geo, User, WebhookEvent};
use apache_avro::types::Value;
use std::collections::HashMap;

/// Builds the datum for `avro/webhook_event.avsc`. Field order and union branch indices follow
/// the schema; `crate::avro::encode_datum` validates the result against it.
pub fn to_value(e: &WebhookEvent) -> Value {
    Value::Record(vec![
        ("event_id".into(), Value::String(e.event_id.clone())),
        ("provider".into(), provider_symbol(e.provider)),
        (
            "provider_name".into(),
            Value::String(e.provider.to_string()),
        ),
        ("event_name".into(), Value::String(e.event_name.clone())),
        ("event_time".into(), Value::TimestampMillis(e.event_time)),
        ("received_at".into(), Value::TimestampMillis(e.received_at)),
        ("subject_id".into(), opt_string(&e.subject_id)),
        ("session_id".into(), opt_string(&e.session_id)),
        ("account_id".into(), opt_string(&e.account_id)),
        ("source_id".into(), opt_string(&e.source_id)),
        ("user".into(), nullable(e.user.as_ref().map(user))),
        ("geo".into(), nullable(e.geo.as_ref().map(geo))),
        ("client".into(), nullable(e.client.as_ref().map(client))),
        (
            "attributes".into(),
            Value::Map(
                e.attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), attribute(v)))
                    .collect::<HashMap<_, _>>(),
            ),
        ),
        (
            "warnings".into(),
            Value::Array(e.warnings.iter().cloned().map(Value::String).collect()),
        ),
        ("raw_payload".into(), Value::String(e.raw_payload.clone())),
    ])
}

/// The `Provider` enum value: the provider's own symbol, or `other` for a provider defined in
/// configuration. Indexes are looked up in the schema so the symbol list is written in one place.
fn provider_symbol(name: &str) -> Value {
    let symbols = provider_symbols();
    match provider_index(name) {
        Ok(index) => Value::Enum(
            u32::try_from(index).unwrap_or(u32::MAX),
            symbols.get(index).cloned().unwrap_or_default(),
        ),
        Err(_) => Value::Enum(u32::MAX, name.to_string()),
    }
}

/// The `Provider` symbol written for provider `name`: its own, or `other`.
pub fn provider_index(name: &str) -> Result<usize, super::EncodeError> {
    let symbols = provider_symbols();
    symbols
        .iter()
        .position(|s| s == name)
        .or_else(|| symbols.iter().position(|s| s == OTHER))
        .ok_or(super::EncodeError::UnknownProvider(
            "the schema's Provider enum has no `other` symbol",
        ))
}

/// The `Provider` symbol of every provider defined in configuration.
pub const OTHER: &str = "other";

/// The symbols of the schema's `Provider` enum.
pub fn provider_symbols() -> &'static [String] {
    use apache_avro::Schema;
    let Schema::Record(record) = super::schema() else {
        return &[];
    };
    record
        .fields
        .iter()
        .find(|f| f.name == "provider")
        .and_then(|f| match &f.schema {
            Schema::Enum(e) => Some(e.symbols.as_slice()),
            _ => None,
        })
        .unwrap_or(&[])
}

fn nullable(value: Option<Value>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

fn opt_string(value: &Option<String>) -> Value {
    nullable(value.clone().map(Value::String))
}

fn opt_double(value: Option<f64>) -> Value {
    nullable(value.map(Value::Double))
}

fn user(u: &User) -> Value {
    Value::Record(vec![
        ("id".into(), opt_string(&u.id)),
        ("name".into(), opt_string(&u.name)),
        ("email".into(), opt_string(&u.email)),
    ])
}

fn geo(g: &Geo) -> Value {
    Value::Record(vec![
        ("country_code".into(), opt_string(&g.country_code)),
        ("country".into(), opt_string(&g.country)),
        ("region".into(), opt_string(&g.region)),
        ("city".into(), opt_string(&g.city)),
        ("latitude".into(), opt_double(g.latitude)),
        ("longitude".into(), opt_double(g.longitude)),
        ("timezone".into(), opt_string(&g.timezone)),
    ])
}

fn client(c: &Client) -> Value {
    Value::Record(vec![
        ("user_agent".into(), opt_string(&c.user_agent)),
        ("browser".into(), opt_string(&c.browser)),
        ("browser_version".into(), opt_string(&c.browser_version)),
        ("os".into(), opt_string(&c.os)),
        ("os_version".into(), opt_string(&c.os_version)),
        ("device_type".into(), opt_string(&c.device_type)),
        ("device_model".into(), opt_string(&c.device_model)),
        ("ip_address".into(), opt_string(&c.ip_address)),
        ("locale".into(), opt_string(&c.locale)),
        ("page_url".into(), opt_string(&c.page_url)),
        ("referrer".into(), opt_string(&c.referrer)),
    ])
}

/// Branches of `["null","string","long","double","boolean"]`.
fn attribute(a: &Attribute) -> Value {
    let (index, value) = match a {
        Attribute::Null => (0, Value::Null),
        Attribute::String(s) => (1, Value::String(s.clone())),
        Attribute::Long(i) => (2, Value::Long(*i)),
        Attribute::Double(d) => (3, Value::Double(*d)),
        Attribute::Boolean(b) => (4, Value::Boolean(*b)),
    };
    Value::Union(index, Box::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::{encode_datum, schema};
    use std::collections::BTreeMap;

    fn sample() -> WebhookEvent {
        let mut attributes = BTreeMap::new();
        attributes.insert("s".into(), Attribute::String("x".into()));
        attributes.insert("l".into(), Attribute::Long(-7));
        attributes.insert("d".into(), Attribute::Double(1.5));
        attributes.insert("b".into(), Attribute::Boolean(true));
        attributes.insert("n".into(), Attribute::Null);
        WebhookEvent {
            event_id: "id-1".into(),
            provider: "seismic",
            event_name: "email".into(),
            event_time: 1_691_161_881_000,
            received_at: 1_691_161_882_000,
            subject_id: Some("someone".into()),
            session_id: None,
            account_id: Some("acct".into()),
            source_id: None,
            user: Some(User {
                id: None,
                name: Some("Ann".into()),
                email: Some("ann@example.com".into()),
            }),
            geo: Some(Geo {
                latitude: Some(51.1),
                longitude: Some(17.03),
                ..Geo::default()
            }),
            client: Some(Client {
                browser: Some("edge".into()),
                ..Client::default()
            }),
            attributes,
            warnings: vec!["w".into()],
            raw_payload: "{}".into(),
            dedupe_key: None,
        }
    }

    #[test]
    fn every_field_round_trips_through_the_schema() {
        let event = sample();
        let bytes = encode_datum(&event).expect("encodes");
        let decoded =
            apache_avro::from_avro_datum(schema(), &mut bytes.as_slice(), None).expect("decodes");
        assert_eq!(decoded, to_value(&event));
    }

    #[test]
    fn every_field_in_the_schema_has_a_doc() {
        let json: serde_json::Value =
            serde_json::from_str(crate::avro::SCHEMA_JSON).expect("schema is JSON");
        fn walk(v: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(fields) = v.get("fields").and_then(|f| f.as_array()) {
                for f in fields {
                    if f.get("doc")
                        .and_then(|d| d.as_str())
                        .unwrap_or("")
                        .is_empty()
                    {
                        missing.push(f["name"].to_string());
                    }
                    walk(&f["type"], missing);
                }
            }
            if let Some(items) = v.as_array() {
                items.iter().for_each(|i| walk(i, missing));
            }
        }
        let mut missing = Vec::new();
        walk(&json, &mut missing);
        assert!(missing.is_empty(), "fields without doc: {missing:?}");
    }

    #[test]
    fn every_built_in_provider_is_a_schema_enum_symbol() {
        let symbols = provider_symbols();
        for p in crate::providers::BUILT_IN {
            assert!(symbols.iter().any(|s| s == p.name()), "{}", p.name());
        }
    }

    #[test]
    fn a_configured_provider_is_written_as_other_with_its_name() {
        let mut event = sample();
        event.provider = "github";
        let bytes = encode_datum(&event).expect("encodes");
        let decoded =
            apache_avro::from_avro_datum(schema(), &mut bytes.as_slice(), None).expect("decodes");
        let Value::Record(fields) = decoded else {
            panic!("a record")
        };
        assert_eq!(fields[1].1, Value::Enum(3, OTHER.into()));
        assert_eq!(fields[2].1, Value::String("github".into()));
    }
}
