//! What a configuration says about a provider, as written (`[providers.NAME]`), and the presets.
//!
//! Every key is optional here; [`super::Configured::compile`] decides what is required and
//! checks every value, naming the key at fault. A preset is a [`Definition`] too: the keys a
//! configuration sets override the preset's, one by one.

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// `[providers.NAME]` of a provider defined in configuration (its `secrets` are read beside).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definition {
    /// `standard-webhooks`, `github` or `stripe`.
    pub preset: Option<String>,
    pub signature: SignatureDefinition,
    pub fields: FieldsDefinition,
    /// Event names (topic-safe) answered `200 {"status":"ping"}` and never written: a vendor's
    /// "is this endpoint there?" (GitHub's `ping`).
    pub ping_events: Option<Vec<String>>,
}

/// `[providers.NAME.signature]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct SignatureDefinition {
    /// `hmac`, `standard-webhooks` or `stripe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// `hmac`: the header(s) carrying the signature; a tag in any of them may match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Sources>,
    /// `hmac`: `sha1`, `sha256` (default) or `sha512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// `hmac`: `hex` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// `hmac`: text before the encoded tag, e.g. `sha256=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// `hmac`: what is signed, e.g. `{header:x-timestamp}.{body}` (default `{body}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_content: Option<String>,
    /// `hmac`: a signed header holding the Unix time of the request, checked against
    /// `tolerance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_header: Option<String>,
    /// How far a signed timestamp may be from now (default 5 minutes).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub tolerance: Option<Duration>,
}

/// `[providers.NAME.fields]`: where each field of the record comes from. Every value is a
/// source — a JSON pointer (`/data/id`), `header:NAME` or `const:VALUE` — or a list of sources,
/// the first one present winning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct FieldsDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<Sources>,
    /// Appended to the event name as `.{value}` when present (GitHub: `issues` + `opened`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name_qualifier: Option<Sources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Sources>,
    /// Without an event id, use `sha256:` and the hex SHA-256 of the raw body instead of
    /// dead-lettering the delivery.
    #[serde(
        default,
        deserialize_with = "crate::boolean::option::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_id_from_body_digest: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<Sources>,
    /// `auto` (default: 10-digit numbers are seconds, 13-digit ones milliseconds, text is
    /// RFC 3339), `s`, `ms` or `rfc3339`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time_format: Option<String>,
    /// The person, and the Kafka key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Sources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Sources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Sources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<Sources>,
    #[serde(default, skip_serializing_if = "UserFields::is_empty")]
    pub user: UserFields,
    #[serde(default, skip_serializing_if = "GeoFields::is_empty")]
    pub geo: GeoFields,
    #[serde(default, skip_serializing_if = "ClientFields::is_empty")]
    pub client: ClientFields,
    /// JSON pointers to subtrees whose scalars become attributes, keyed by their dotted path
    /// within the subtree.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub attributes: Option<Vec<String>>,
    /// Headers the signature does not cover that `event_id`, `event_name` or
    /// `event_name_qualifier` may still read. Anyone who saw one delivery can resend it with
    /// such a header changed, so a provider listing any is deduplicated on its body's digest:
    /// a resend under a fresh id or another event name is a duplicate, not a new record on a
    /// new topic. Without this key, such a header is refused at startup.
    #[serde(
        default,
        deserialize_with = "list",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_unsigned_headers: Option<Vec<String>>,
}

/// Declares a table of optional sources, its merge and its emptiness, keeping the field list in
/// one place.
macro_rules! source_table {
    ($(#[$doc:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
        pub struct $name {
            $(
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<Sources>,
            )*
        }

        impl $name {
            /// The names of its keys, for strict configuration.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn is_empty(&self) -> bool {
                true $(&& self.$field.is_none())*
            }

            fn merged(self, over: Self) -> Self {
                Self { $($field: over.$field.or(self.$field)),* }
            }

            /// `(key, sources)` of every key set.
            pub fn set(&self) -> Vec<(&'static str, &Sources)> {
                let mut set = Vec::new();
                $(if let Some(s) = &self.$field { set.push((stringify!($field), s)); })*
                set
            }
        }
    };
}

source_table!(
    /// `[providers.NAME.fields.user]`.
    UserFields { id, name, email }
);
source_table!(
    /// `[providers.NAME.fields.geo]`.
    GeoFields { country_code, country, region, city, latitude, longitude, timezone }
);
source_table!(
    /// `[providers.NAME.fields.client]`.
    ClientFields {
        user_agent,
        browser,
        browser_version,
        os,
        os_version,
        device_type,
        device_model,
        ip_address,
        locale,
        page_url,
        referrer,
    }
);

/// One source or several, in order: written as a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources(pub Vec<String>);

impl Sources {
    fn of(items: &[&str]) -> Self {
        Self(items.iter().map(|s| (*s).to_string()).collect())
    }
}

impl<'de> Deserialize<'de> for Sources {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(OneOrMany(
                "a source (\"/json/pointer\", \"header:NAME\" or \"const:VALUE\") or a list of them",
            ))
            .map(Sources)
    }
}

/// A string or a list of strings. An environment variable holds text only, so a string that
/// is a JSON array (`["/a", "/b"]`) is read as that list. A single JSON pointer with a comma in
/// it is refused: it is almost certainly two pointers meant as a list, and as one it could never
/// match.
struct OneOrMany(&'static str);

impl<'de> Visitor<'de> for OneOrMany {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<String>, E> {
        let trimmed = value.trim();
        if trimmed.starts_with('[') {
            return serde_json::from_str::<Vec<String>>(trimmed).map_err(|e| {
                E::custom(format!(
                    "{value:?} is not a JSON array of strings like [\"/a\", \"/b\"] ({e})"
                ))
            });
        }
        if trimmed.starts_with('/') && trimmed.contains(',') {
            let parts: Vec<&str> = trimmed.split(',').map(str::trim).collect();
            return Err(E::custom(format!(
                "{value:?} is one JSON pointer with a comma in it, which matches nothing you meant; for several sources write an array: {} (as the value of an environment variable too)",
                serde_json::to_string(&parts).unwrap_or_default()
            )));
        }
        Ok(vec![value.to_string()])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(items)
    }
}

/// `Option<Vec<String>>` written as a list, a JSON array in a string (an environment
/// variable), or a single string.
pub fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    deserializer
        .deserialize_any(OneOrMany("a list of strings"))
        .map(Some)
}

impl Serialize for Sources {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

/// The presets: name, and what they define.
pub const PRESETS: &[&str] = &["standard-webhooks", "github", "stripe"];

impl Definition {
    /// The preset called `name`.
    pub fn preset(name: &str) -> Option<Definition> {
        let d = match name {
            "standard-webhooks" => Definition {
                preset: None,
                signature: SignatureDefinition {
                    scheme: Some("standard-webhooks".into()),
                    ..SignatureDefinition::default()
                },
                fields: FieldsDefinition {
                    event_name: Some(Sources::of(&["/type"])),
                    event_id: Some(Sources::of(&["header:webhook-id"])),
                    event_time: Some(Sources::of(&["/timestamp"])),
                    event_time_format: Some("rfc3339".into()),
                    attributes: Some(vec!["/data".into()]),
                    ..FieldsDefinition::default()
                },
                ping_events: None,
            },
            "github" => Definition {
                preset: None,
                signature: SignatureDefinition {
                    scheme: Some("hmac".into()),
                    header: Some(Sources::of(&["x-hub-signature-256"])),
                    algorithm: Some("sha256".into()),
                    encoding: Some("hex".into()),
                    prefix: Some("sha256=".into()),
                    ..SignatureDefinition::default()
                },
                fields: FieldsDefinition {
                    event_name: Some(Sources::of(&["header:x-github-event"])),
                    event_name_qualifier: Some(Sources::of(&["/action"])),
                    event_id: Some(Sources::of(&["header:x-github-delivery"])),
                    // GitHub signs the body alone: its delivery id and event name are trusted
                    // for the record, and deliveries are deduplicated on the body's digest.
                    allow_unsigned_headers: Some(vec![
                        "x-github-delivery".into(),
                        "x-github-event".into(),
                    ]),
                    subject: Some(Sources::of(&["/sender/id"])),
                    account_id: Some(Sources::of(&["/organization/login"])),
                    source_id: Some(Sources::of(&["/repository/full_name"])),
                    user: UserFields {
                        id: Some(Sources::of(&["/sender/id"])),
                        name: Some(Sources::of(&["/sender/login"])),
                        email: None,
                    },
                    ..FieldsDefinition::default()
                },
                ping_events: Some(vec!["ping".into()]),
            },
            "stripe" => Definition {
                preset: None,
                signature: SignatureDefinition {
                    scheme: Some("stripe".into()),
                    ..SignatureDefinition::default()
                },
                fields: FieldsDefinition {
                    event_name: Some(Sources::of(&["/type"])),
                    event_id: Some(Sources::of(&["/id"])),
                    event_time: Some(Sources::of(&["/created"])),
                    event_time_format: Some("s".into()),
                    subject: Some(Sources::of(&["/data/object/customer"])),
                    account_id: Some(Sources::of(&["/account"])),
                    attributes: Some(vec!["/data/object".into()]),
                    ..FieldsDefinition::default()
                },
                ping_events: None,
            },
            _ => return None,
        };
        Some(d)
    }

    /// Whether anything besides secrets is set (a built-in provider takes secrets alone).
    pub fn is_empty(&self) -> bool {
        *self == Definition::default()
    }

    /// `self` with every key `over` sets replaced.
    pub fn merged(self, over: Definition) -> Definition {
        let (s, o) = (self.signature, over.signature);
        let (f, g) = (self.fields, over.fields);
        Definition {
            preset: over.preset.or(self.preset),
            signature: SignatureDefinition {
                scheme: o.scheme.or(s.scheme),
                header: o.header.or(s.header),
                algorithm: o.algorithm.or(s.algorithm),
                encoding: o.encoding.or(s.encoding),
                prefix: o.prefix.or(s.prefix),
                signed_content: o.signed_content.or(s.signed_content),
                timestamp_header: o.timestamp_header.or(s.timestamp_header),
                tolerance: o.tolerance.or(s.tolerance),
            },
            fields: FieldsDefinition {
                event_name: g.event_name.or(f.event_name),
                event_name_qualifier: g.event_name_qualifier.or(f.event_name_qualifier),
                event_id: g.event_id.or(f.event_id),
                event_id_from_body_digest: g
                    .event_id_from_body_digest
                    .or(f.event_id_from_body_digest),
                event_time: g.event_time.or(f.event_time),
                event_time_format: g.event_time_format.or(f.event_time_format),
                subject: g.subject.or(f.subject),
                session_id: g.session_id.or(f.session_id),
                account_id: g.account_id.or(f.account_id),
                source_id: g.source_id.or(f.source_id),
                user: f.user.merged(g.user),
                geo: f.geo.merged(g.geo),
                client: f.client.merged(g.client),
                attributes: g.attributes.or(f.attributes),
                allow_unsigned_headers: g.allow_unsigned_headers.or(f.allow_unsigned_headers),
            },
            ping_events: over.ping_events.or(self.ping_events),
        }
    }
}

/// Every key a provider table may have besides `secrets`, relative to `providers.NAME` (for the
/// nearest-key suggestion of strict configuration).
pub fn keys() -> Vec<String> {
    let mut keys: Vec<String> = ["preset", "ping_events"].map(String::from).to_vec();
    keys.extend(
        [
            "scheme",
            "header",
            "algorithm",
            "encoding",
            "prefix",
            "signed_content",
            "timestamp_header",
            "tolerance",
        ]
        .map(|k| format!("signature.{k}")),
    );
    keys.extend(
        [
            "event_name",
            "event_name_qualifier",
            "event_id",
            "event_id_from_body_digest",
            "event_time",
            "event_time_format",
            "subject",
            "session_id",
            "account_id",
            "source_id",
            "attributes",
            "allow_unsigned_headers",
        ]
        .map(|k| format!("fields.{k}")),
    );
    keys.extend(UserFields::KEYS.iter().map(|k| format!("fields.user.{k}")));
    keys.extend(GeoFields::KEYS.iter().map(|k| format!("fields.geo.{k}")));
    keys.extend(
        ClientFields::KEYS
            .iter()
            .map(|k| format!("fields.client.{k}")),
    );
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_defined() {
        for name in PRESETS {
            assert!(Definition::preset(name).is_some(), "{name}");
        }
        assert!(Definition::preset("gitlab").is_none());
    }

    #[test]
    fn configured_keys_override_a_preset_one_by_one() {
        let preset = Definition::preset("stripe").expect("preset");
        let over = Definition {
            fields: FieldsDefinition {
                subject: Some(Sources::of(&["/data/object/metadata/user_id"])),
                user: UserFields {
                    email: Some(Sources::of(&["/data/object/email"])),
                    ..UserFields::default()
                },
                ..FieldsDefinition::default()
            },
            ..Definition::default()
        };
        let merged = preset.merged(over);
        assert_eq!(
            merged.fields.subject,
            Some(Sources::of(&["/data/object/metadata/user_id"]))
        );
        assert_eq!(merged.fields.event_id, Some(Sources::of(&["/id"])));
        assert_eq!(merged.signature.scheme.as_deref(), Some("stripe"));
        assert_eq!(
            merged.fields.user.email,
            Some(Sources::of(&["/data/object/email"]))
        );
    }

    #[test]
    fn a_source_is_a_string_or_a_list() {
        let one: FieldsDefinition = toml::from_str("subject = \"/a\"").expect("parses");
        let many: FieldsDefinition = toml::from_str("subject = [\"/a\", \"/b\"]").expect("parses");
        assert_eq!(one.subject, Some(Sources::of(&["/a"])));
        assert_eq!(many.subject, Some(Sources::of(&["/a", "/b"])));
        assert!(toml::from_str::<FieldsDefinition>("subject = 3").is_err());
    }
}
