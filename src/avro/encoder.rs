//! The Avro binary encoding of [`WebhookEvent`], written directly.
//!
//! The schema is fixed and compiled in, so there is no need to build a generic Avro value, resolve
//! the schema and validate against it for every record (which cost a quarter of the CPU of an
//! accepted webhook). A test checks the order fields are written in against
//! `avro/webhook_event.avsc`, and every test that decodes a record with the schema (golden
//! fixtures, round trips, the fuzz targets) checks the bytes.

use super::EncodeError;
use crate::event::{Attribute, Client, Geo, User, WebhookEvent};

/// Appends the datum of `event` to `out`.
pub fn encode_into(event: &WebhookEvent, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let provider = super::provider_index(event.provider)?;
    string(out, &event.event_id);
    long(out, provider as i64);
    string(out, event.provider);
    string(out, &event.event_name);
    long(out, event.event_time);
    long(out, event.received_at);
    opt_string(out, event.subject_id.as_deref());
    opt_string(out, event.session_id.as_deref());
    opt_string(out, event.account_id.as_deref());
    opt_string(out, event.source_id.as_deref());
    optional(out, event.user.as_ref(), user);
    optional(out, event.geo.as_ref(), geo);
    optional(out, event.client.as_ref(), client);
    if !event.attributes.is_empty() {
        long(out, event.attributes.len() as i64);
        for (key, value) in &event.attributes {
            string(out, key);
            attribute(out, value);
        }
    }
    long(out, 0);
    if !event.warnings.is_empty() {
        long(out, event.warnings.len() as i64);
        for warning in &event.warnings {
            string(out, warning);
        }
    }
    long(out, 0);
    string(out, &event.raw_payload);
    Ok(())
}

/// A rough upper bound of the encoded size, to allocate once.
pub fn size_hint(event: &WebhookEvent) -> usize {
    let attributes: usize = event
        .attributes
        .iter()
        .map(|(k, v)| {
            k.len()
                + 12
                + match v {
                    Attribute::String(s) => s.len() + 10,
                    _ => 10,
                }
        })
        .sum();
    let warnings: usize = event.warnings.iter().map(|w| w.len() + 10).sum();
    event.raw_payload.len()
        + event.event_id.len()
        + event.event_name.len()
        + attributes
        + warnings
        + 512
}

/// Zig-zag variable-length `long` (also `int`, enum indexes, union branches, block counts).
fn long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// `["null", T]`: branch 0 for null, 1 then the value.
fn optional<T: ?Sized>(out: &mut Vec<u8>, value: Option<&T>, write: impl Fn(&mut Vec<u8>, &T)) {
    match value {
        None => long(out, 0),
        Some(v) => {
            long(out, 1);
            write(out, v);
        }
    }
}

fn opt_string(out: &mut Vec<u8>, value: Option<&str>) {
    optional(out, value, string);
}

fn opt_double(out: &mut Vec<u8>, value: Option<f64>) {
    optional(out, value.as_ref(), |out, d| {
        out.extend_from_slice(&d.to_le_bytes())
    });
}

fn user(out: &mut Vec<u8>, u: &User) {
    opt_string(out, u.id.as_deref());
    opt_string(out, u.name.as_deref());
    opt_string(out, u.email.as_deref());
}

fn geo(out: &mut Vec<u8>, g: &Geo) {
    opt_string(out, g.country_code.as_deref());
    opt_string(out, g.country.as_deref());
    opt_string(out, g.region.as_deref());
    opt_string(out, g.city.as_deref());
    opt_double(out, g.latitude);
    opt_double(out, g.longitude);
    opt_string(out, g.timezone.as_deref());
}

fn client(out: &mut Vec<u8>, c: &Client) {
    for field in [
        &c.user_agent,
        &c.browser,
        &c.browser_version,
        &c.os,
        &c.os_version,
        &c.device_type,
        &c.device_model,
        &c.ip_address,
        &c.locale,
        &c.page_url,
        &c.referrer,
    ] {
        opt_string(out, field.as_deref());
    }
}

/// Branches of `["null","string","long","double","boolean"]`.
fn attribute(out: &mut Vec<u8>, a: &Attribute) {
    match a {
        Attribute::Null => long(out, 0),
        Attribute::String(s) => {
            long(out, 1);
            string(out, s);
        }
        Attribute::Long(i) => {
            long(out, 2);
            long(out, *i);
        }
        Attribute::Double(d) => {
            long(out, 3);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Attribute::Boolean(b) => {
            long(out, 4);
            out.push(u8::from(*b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    /// Top-level fields, in schema order.
    const FIELDS: [&str; 16] = [
        "event_id",
        "provider",
        "provider_name",
        "event_name",
        "event_time",
        "received_at",
        "subject_id",
        "session_id",
        "account_id",
        "source_id",
        "user",
        "geo",
        "client",
        "attributes",
        "warnings",
        "raw_payload",
    ];

    fn names(fields: &[apache_avro::schema::RecordField]) -> Vec<&str> {
        fields.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn fields_are_written_in_schema_order() {
        let Schema::Record(record) = super::super::schema() else {
            panic!("the schema is a record")
        };
        assert_eq!(names(&record.fields), FIELDS);
        // The nested records, written field by field above.
        let nested = |name: &str| -> Vec<String> {
            let field = record
                .fields
                .iter()
                .find(|f| f.name == name)
                .expect("field");
            match &field.schema {
                Schema::Union(u) => match &u.variants()[1] {
                    Schema::Record(r) => names(&r.fields).iter().map(|s| s.to_string()).collect(),
                    other => panic!("{name}: {other:?}"),
                },
                other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!(nested("user"), ["id", "name", "email"]);
        assert_eq!(
            nested("geo"),
            [
                "country_code",
                "country",
                "region",
                "city",
                "latitude",
                "longitude",
                "timezone"
            ]
        );
        assert_eq!(
            nested("client"),
            [
                "user_agent",
                "browser",
                "browser_version",
                "os",
                "os_version",
                "device_type",
                "device_model",
                "ip_address",
                "locale",
                "page_url",
                "referrer"
            ]
        );
    }

    #[test]
    fn longs_are_zigzag_varints() {
        let encoded = |v: i64| {
            let mut out = Vec::new();
            long(&mut out, v);
            out
        };
        // From the Avro specification's examples.
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(-1), [0x01]);
        assert_eq!(encoded(1), [0x02]);
        assert_eq!(encoded(-2), [0x03]);
        assert_eq!(encoded(2), [0x04]);
        assert_eq!(encoded(-64), [0x7f]);
        assert_eq!(encoded(64), [0x80, 0x01]);
        assert_eq!(encoded(i64::MIN).len(), 10);
    }
}
