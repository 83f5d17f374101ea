//! `[providers.NAME.fields]` → the record's fields, for one delivery.

use super::definition::{FieldsDefinition, Sources};
use super::source::{self, Found, Source};
use super::{DefinitionError, Invalid};
use crate::event::{Attribute, Client, Geo, User};
use crate::naming::snake_case;
use crate::providers::json::{self, Flattener, MAX_EVENT_ID_BYTES};
use crate::providers::{Extracted, PayloadError, Request};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How `fields.event_time` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeFormat {
    /// 10-digit numbers are seconds, 13-digit ones milliseconds; text is RFC 3339.
    Auto,
    Seconds,
    Millis,
    Rfc3339,
}

/// A field's sources, in order, and the key they were configured under (for errors).
#[derive(Debug, Clone)]
struct Field {
    key: &'static str,
    sources: Vec<Source>,
}

/// A compiled field mapping.
#[derive(Debug)]
pub(super) struct Mapping {
    event_name: Field,
    event_name_qualifier: Option<Field>,
    /// `None`: only the body digest gives the id.
    event_id: Option<Field>,
    event_id_from_body_digest: bool,
    event_time: Option<Field>,
    time_format: TimeFormat,
    subject: Option<Field>,
    session_id: Option<Field>,
    account_id: Option<Field>,
    source_id: Option<Field>,
    /// `(key within the table, sources)`: `user.*`, `geo.*` and `client.*`.
    user: Vec<(&'static str, Field)>,
    geo: Vec<(&'static str, Field)>,
    client: Vec<(&'static str, Field)>,
    /// Attribute subtrees ([`Source::Pointer`]s).
    attributes: Vec<Source>,
    /// The event's identity or name comes from a header the signature does not cover
    /// (`fields.allow_unsigned_headers`): deduplicate on the body's digest.
    pub(super) dedupe_on_body_digest: bool,
}

fn compile_field(
    key: &'static str,
    sources: Option<&Sources>,
    invalid: &Invalid<'_>,
) -> Result<Option<Field>, DefinitionError> {
    let Some(sources) = sources else {
        return Ok(None);
    };
    if sources.0.is_empty() {
        return Err(invalid.at(key, "is an empty list: name at least one source"));
    }
    let sources = sources
        .0
        .iter()
        .map(|s| Source::parse(s).map_err(|why| invalid.at(key, &why)))
        .collect::<Result<_, _>>()?;
    Ok(Some(Field { key, sources }))
}

fn compile_table(
    table: &'static str,
    set: Vec<(&'static str, &Sources)>,
    invalid: &Invalid<'_>,
) -> Result<Vec<(&'static str, Field)>, DefinitionError> {
    set.into_iter()
        .map(|(key, sources)| {
            let full = crate::signature::interned::str(&format!("fields.{table}.{key}"));
            compile_field(full, Some(sources), invalid).map(|field| field.map(|f| (key, f)))
        })
        .filter_map(Result::transpose)
        .collect()
}

impl Mapping {
    pub(super) fn compile(
        d: &FieldsDefinition,
        invalid: &Invalid<'_>,
    ) -> Result<Mapping, DefinitionError> {
        let event_name = compile_field("fields.event_name", d.event_name.as_ref(), invalid)?
            .ok_or_else(|| {
                invalid.at(
                    "fields.event_name",
                    "must be set: every event needs a name (its topic is {prefix}.NAME.{event_name})",
                )
            })?;
        let event_id_from_body_digest = d.event_id_from_body_digest.unwrap_or(false);
        let event_id = compile_field("fields.event_id", d.event_id.as_ref(), invalid)?;
        if event_id.is_none() && !event_id_from_body_digest {
            return Err(invalid.at(
                "fields.event_id",
                "must be set (or fields.event_id_from_body_digest = true): duplicates are recognized by it",
            ));
        }
        let time_format = match d.event_time_format.as_deref().unwrap_or("auto") {
            "auto" => TimeFormat::Auto,
            "s" => TimeFormat::Seconds,
            "ms" => TimeFormat::Millis,
            "rfc3339" => TimeFormat::Rfc3339,
            other => {
                return Err(invalid.at(
                    "fields.event_time_format",
                    &format!("is {other:?}; it must be \"auto\", \"s\", \"ms\" or \"rfc3339\""),
                ))
            }
        };
        let attributes = d
            .attributes
            .iter()
            .flatten()
            .map(|pointer| {
                source::check_pointer(pointer)
                    .map(|()| Source::Pointer(pointer.clone()))
                    .map_err(|why| invalid.at("fields.attributes", &why))
            })
            .collect::<Result<_, _>>()?;
        Ok(Mapping {
            event_name,
            event_name_qualifier: compile_field(
                "fields.event_name_qualifier",
                d.event_name_qualifier.as_ref(),
                invalid,
            )?,
            event_id,
            event_id_from_body_digest,
            event_time: compile_field("fields.event_time", d.event_time.as_ref(), invalid)?,
            time_format,
            subject: compile_field("fields.subject", d.subject.as_ref(), invalid)?,
            session_id: compile_field("fields.session_id", d.session_id.as_ref(), invalid)?,
            account_id: compile_field("fields.account_id", d.account_id.as_ref(), invalid)?,
            source_id: compile_field("fields.source_id", d.source_id.as_ref(), invalid)?,
            user: compile_table("user", d.user.set(), invalid)?,
            geo: compile_table("geo", d.geo.set(), invalid)?,
            client: compile_table("client", d.client.set(), invalid)?,
            attributes,
            dedupe_on_body_digest: false,
        })
    }

    /// `(key, header)` of every header that decides an event's identity or topic: those
    /// `event_id`, `event_name` and `event_name_qualifier` read.
    pub(super) fn identity_headers(&self) -> Vec<(&'static str, &'static str)> {
        [
            Some(&self.event_name),
            self.event_name_qualifier.as_ref(),
            self.event_id.as_ref(),
        ]
        .into_iter()
        .flatten()
        .flat_map(|f| {
            f.sources.iter().filter_map(|s| match s {
                Source::Header(h) => Some((f.key, *h)),
                _ => None,
            })
        })
        .collect()
    }

    /// What deduplication keys on when not the event id: the body's digest.
    /// The header of the event id's first source, when it is a header.
    pub(super) fn event_id_header(&self) -> Option<&'static str> {
        match self.event_id.as_ref()?.sources.first()? {
            Source::Header(name) => Some(name),
            _ => None,
        }
    }

    pub(super) fn dedupe_key(&self, request: &Request<'_>) -> Option<String> {
        self.dedupe_on_body_digest.then(|| digest(request.raw))
    }

    fn fields(&self) -> impl Iterator<Item = &Field> {
        [
            Some(&self.event_name),
            self.event_name_qualifier.as_ref(),
            self.event_id.as_ref(),
            self.event_time.as_ref(),
            self.subject.as_ref(),
            self.session_id.as_ref(),
            self.account_id.as_ref(),
            self.source_id.as_ref(),
        ]
        .into_iter()
        .flatten()
        .chain(self.user.iter().map(|(_, f)| f))
        .chain(self.geo.iter().map(|(_, f)| f))
        .chain(self.client.iter().map(|(_, f)| f))
    }

    /// The request headers any field reads.
    pub(super) fn headers(&self) -> Vec<&'static str> {
        let mut headers: Vec<&'static str> = self
            .fields()
            .flat_map(|f| &f.sources)
            .filter_map(|s| match s {
                Source::Header(h) => Some(*h),
                _ => None,
            })
            .collect();
        headers.sort_unstable();
        headers.dedup();
        headers
    }

    /// The topic-safe event name: the first source present, and `.{qualifier}` when present.
    pub(super) fn event_name(&self, request: &Request<'_>) -> Result<String, PayloadError> {
        let mut name = required_string(&self.event_name, request)?;
        if let Some(qualifier) = &self.event_name_qualifier {
            if let Some(qualifier) = optional_string(qualifier, request)? {
                name.push('.');
                name.push_str(&qualifier);
            }
        }
        let name = snake_case(&name);
        if name.trim_matches('_').is_empty() {
            return Err(PayloadError::new(
                self.event_name.sources[0].describe(),
                "is not usable as an event name",
            ));
        }
        Ok(name)
    }

    /// The event id: the first source present, else the body's digest when so configured.
    pub(super) fn event_id(&self, request: &Request<'_>) -> Result<String, PayloadError> {
        let id = match &self.event_id {
            Some(field) => match (
                required_text(field, request),
                self.event_id_from_body_digest,
            ) {
                (Ok(id), _) => id,
                (Err(_), true) => digest(request.raw),
                (Err(e), false) => return Err(e),
            },
            None => digest(request.raw),
        };
        if id.len() > MAX_EVENT_ID_BYTES {
            return Err(PayloadError::new(
                self.event_id
                    .as_ref()
                    .map_or("event_id".to_string(), |f| f.sources[0].describe()),
                format!(
                    "is {} bytes long; event ids are at most {MAX_EVENT_ID_BYTES}",
                    id.len()
                ),
            ));
        }
        Ok(id)
    }

    pub(super) fn extract(&self, request: &Request<'_>) -> Result<Extracted, PayloadError> {
        let event_name = self.event_name(request)?;
        let event_id = self.event_id(request)?;
        let text = |field: &Option<Field>| field.as_ref().and_then(|f| optional_text(f, request));
        let mut user = User::default();
        for (key, field) in &self.user {
            let value = optional_text(field, request);
            match *key {
                "id" => user.id = value,
                "name" => user.name = value,
                _ => user.email = value,
            }
        }
        let mut geo = Geo::default();
        for (key, field) in &self.geo {
            match *key {
                "latitude" => geo.latitude = optional_number(field, request),
                "longitude" => geo.longitude = optional_number(field, request),
                "country_code" => geo.country_code = optional_text(field, request),
                "country" => geo.country = optional_text(field, request),
                "region" => geo.region = optional_text(field, request),
                "city" => geo.city = optional_text(field, request),
                _ => geo.timezone = optional_text(field, request),
            }
        }
        let mut client = Client::default();
        for (key, field) in &self.client {
            let value = optional_text(field, request);
            let slot = match *key {
                "user_agent" => &mut client.user_agent,
                "browser" => &mut client.browser,
                "browser_version" => &mut client.browser_version,
                "os" => &mut client.os,
                "os_version" => &mut client.os_version,
                "device_type" => &mut client.device_type,
                "device_model" => &mut client.device_model,
                "ip_address" => &mut client.ip_address,
                "locale" => &mut client.locale,
                "page_url" => &mut client.page_url,
                _ => &mut client.referrer,
            };
            *slot = value;
        }
        Ok(Extracted {
            event_id,
            event_name,
            // Without a configured time, the time it arrived: no surprise worth a warning.
            event_time: self
                .event_time
                .as_ref()
                .map(|field| self.event_time(field, request)),
            subject_id: text(&self.subject),
            session_id: text(&self.session_id),
            account_id: text(&self.account_id),
            source_id: text(&self.source_id),
            user,
            geo,
            client,
            attributes: self.attributes(request),
            warnings: Vec::new(),
        })
    }

    fn event_time(&self, field: &Field, request: &Request<'_>) -> Result<i64, &'static str> {
        let Some(found) = field.sources.iter().find_map(|s| s.find(request)) else {
            return Err("no event time in the delivery");
        };
        let millis = match (self.time_format, found) {
            (TimeFormat::Seconds, found) => number_of(found).and_then(|s| finite(s * 1000.0)),
            (TimeFormat::Millis, found) => number_of(found).and_then(finite),
            (TimeFormat::Auto, Found::Json(number @ Value::Number(_))) => {
                json::epoch_millis(Some(number))
            }
            (TimeFormat::Auto | TimeFormat::Rfc3339, found) => text_of(found).and_then(rfc3339),
        };
        millis.ok_or(match self.time_format {
            TimeFormat::Auto => {
                "the event time is neither a 10- or 13-digit epoch time nor RFC 3339"
            }
            TimeFormat::Seconds => "the event time is not a number of seconds",
            TimeFormat::Millis => "the event time is not a number of milliseconds",
            TimeFormat::Rfc3339 => "the event time is not an RFC 3339 date-time",
        })
    }

    fn attributes(&self, request: &Request<'_>) -> Flattener {
        let mut attributes = Flattener::default();
        for subtree in &self.attributes {
            let Some(Found::Json(value)) = subtree.find(request) else {
                continue;
            };
            match value {
                Value::Object(_) | Value::Array(_) => attributes.flatten("", value),
                scalar => {
                    if let Some(attribute) = Attribute::from_json(scalar) {
                        attributes.put(subtree.last_token(), attribute);
                    }
                }
            }
        }
        attributes
    }
}

/// `sha256:` and the hex SHA-256 of the raw body.
fn digest(raw: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(raw.as_bytes())))
}

fn finite(ms: f64) -> Option<i64> {
    // Within ±10,000 years of the epoch: anything else is not a time.
    (ms.is_finite() && ms.abs() < 3.2e14).then(|| ms.round() as i64)
}

fn rfc3339(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A number, or a number written as text.
fn number_of(found: Found<'_>) -> Option<f64> {
    match found {
        Found::Json(Value::Number(n)) => n.as_f64(),
        other => text_of(other)?.trim().parse().ok(),
    }
}

fn text_of(found: Found<'_>) -> Option<&str> {
    match found {
        Found::Json(Value::String(s)) => Some(s),
        Found::Text(s) => Some(s),
        Found::Json(_) => None,
    }
}

/// A found value as text: a non-empty string, or a number.
fn as_text(found: Found<'_>) -> Option<String> {
    match found {
        Found::Json(value) => json::text(Some(value)),
        Found::Text(text) => {
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_string())
        }
    }
}

/// The first source with a usable value.
fn optional_text(field: &Field, request: &Request<'_>) -> Option<String> {
    field
        .sources
        .iter()
        .find_map(|s| s.find(request).and_then(as_text))
}

fn optional_number(field: &Field, request: &Request<'_>) -> Option<f64> {
    field
        .sources
        .iter()
        .find_map(|s| s.find(request).and_then(number_of))
}

/// A name's part: text read from a header or a constant, or a JSON **string** — an event name
/// decides a topic, so a number there is the wrong shape. `Err` names what was found instead.
fn as_string(found: Found<'_>) -> Result<Option<String>, &'static str> {
    match found {
        Found::Json(Value::String(s)) => Ok((!s.trim().is_empty()).then(|| s.clone())),
        Found::Json(Value::Null) => Ok(None),
        Found::Json(other) => Err(json::kind(other)),
        Found::Text(text) => Ok(as_text(Found::Text(text))),
    }
}

/// The first source with a non-empty string; `Err` when a source holds something else.
fn optional_string(field: &Field, request: &Request<'_>) -> Result<Option<String>, PayloadError> {
    for source in &field.sources {
        if let Some(found) = source.find(request) {
            match as_string(found) {
                Ok(Some(text)) => return Ok(Some(text)),
                Ok(None) => {}
                Err(kind) => {
                    return Err(PayloadError::new(
                        source.describe(),
                        format!("expected a string, found {kind} ({})", field.key),
                    ))
                }
            }
        }
    }
    Ok(None)
}

/// [`optional_string`], required.
fn required_string(field: &Field, request: &Request<'_>) -> Result<String, PayloadError> {
    optional_string(field, request)?.ok_or_else(|| {
        PayloadError::new(
            field.sources[0].describe(),
            format!("missing ({})", field.key),
        )
    })
}

/// The first source with a usable value, or why there is none: naming the first source, and
/// saying whether it was missing or of another type.
fn required_text(field: &Field, request: &Request<'_>) -> Result<String, PayloadError> {
    let mut first_present = None;
    for source in &field.sources {
        if let Some(found) = source.find(request) {
            if let Some(text) = as_text(found) {
                return Ok(text);
            }
            first_present.get_or_insert(source);
        }
    }
    Err(match first_present {
        Some(source) => PayloadError::new(
            source.describe(),
            format!("expected a non-empty string or a number ({})", field.key),
        ),
        None => PayloadError::new(
            field.sources[0].describe(),
            format!("missing ({})", field.key),
        ),
    })
}
