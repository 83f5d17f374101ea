//! Providers defined in configuration: a signature scheme and a field mapping, or a preset.
//!
//! ```toml
//! [providers.acme]
//! secrets = "…"
//! signature = { scheme = "hmac", header = "x-acme-signature", encoding = "base64" }
//! fields = { event_name = "/type", event_id = "/id", subject = ["/user/id", "/user/email"] }
//! ```
//!
//! A configured provider goes through the same pipeline as a built-in: the same body limits,
//! dedupe, dead letters, topics (`{prefix}.NAME.{event}`), metrics and record. Its name reaches
//! the record as `provider_name`, with `provider = "other"`.

pub mod definition;
mod mapping;
mod scheme;
mod source;

pub use definition::{Definition, PRESETS};
pub use scheme::{DEFAULT_TOLERANCE, SCHEMES};

use super::{DefinitionError, Extracted, Handshake, PayloadError, Provider, Request, Spec};
use crate::naming::snake_case;
use mapping::Mapping;

/// Names no configured provider may take: `unknown` labels requests for no provider.
const RESERVED_NAMES: &[&str] = &["unknown"];
/// Longest provider name (it is part of every topic name).
const MAX_NAME_LEN: usize = 64;

/// A provider compiled from its [`Definition`].
#[derive(Debug)]
pub struct Configured {
    spec: Spec,
    /// Headers the mapping reads, captured with the body and kept with a dead letter.
    request_headers: Vec<&'static str>,
    mapping: Mapping,
    /// Topic-safe event names answered as pings.
    ping_events: Vec<String>,
}

/// Makes the errors of one provider's definition, naming keys under `providers.NAME`.
pub(crate) struct Invalid<'a> {
    name: &'a str,
}

impl Invalid<'_> {
    pub(crate) fn at(&self, key: &str, problem: &str) -> DefinitionError {
        DefinitionError {
            key: if key.is_empty() {
                format!("providers.{}", self.name)
            } else {
                format!("providers.{}.{key}", self.name)
            },
            problem: problem.to_string(),
        }
    }
}

impl Configured {
    /// Checks and compiles the provider `name` defines: every error names its key.
    pub fn compile(name: &str, definition: &Definition) -> Result<Configured, DefinitionError> {
        let invalid = Invalid { name };
        check_name(name, &invalid)?;
        let definition = match &definition.preset {
            None => definition.clone(),
            Some(preset) => Definition::preset(preset)
                .ok_or_else(|| {
                    invalid.at(
                        "preset",
                        &format!("is {preset:?}; presets are {}", quoted(PRESETS)),
                    )
                })?
                .merged(definition.clone()),
        };
        if definition.signature.scheme.is_none() {
            return Err(invalid.at(
                "",
                &format!(
                    "is not a built-in provider ({}) and defines none: set `preset` ({}) or `signature.scheme` and `fields`",
                    super::BUILT_IN.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
                    PRESETS.join(", "),
                ),
            ));
        }
        let signature = scheme::compile(&definition.signature, &invalid)?;
        let mut mapping = Mapping::compile(&definition.fields, &invalid)?;
        mapping.dedupe_on_body_digest = unsigned_identity(
            &mapping,
            &signature,
            definition.fields.allow_unsigned_headers.as_deref(),
            &invalid,
        )?;
        let ping_events = definition.ping_events.clone().unwrap_or_default();
        if let Some(bad) = ping_events
            .iter()
            .find(|e| snake_case(e) != **e || e.is_empty())
        {
            return Err(invalid.at(
                "ping_events",
                &format!(
                    "lists {bad:?}, which is not a topic-safe event name (write {:?})",
                    snake_case(bad)
                ),
            ));
        }
        let spec = Spec {
            name: crate::signature::interned::str(name),
            signature,
            event_id_keys: &[],
        };
        Ok(Configured {
            spec,
            request_headers: mapping.headers(),
            mapping,
            ping_events,
        })
    }
}

/// Whether the event's identity or topic comes from a header the signature does not cover and
/// `fields.allow_unsigned_headers` lists; such a header that it does not list is refused: what
/// decides identity (dedupe) or routing (topic) must be signed, or knowingly trusted.
fn unsigned_identity(
    mapping: &Mapping,
    signature: &crate::signature::SignatureScheme,
    allowed: Option<&[String]>,
    invalid: &Invalid<'_>,
) -> Result<bool, DefinitionError> {
    let allowed = allowed
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let h = h.trim().to_ascii_lowercase();
            if crate::signature::is_header_name(&h) {
                Ok(h)
            } else {
                Err(invalid.at(
                    "fields.allow_unsigned_headers",
                    &format!("{h:?} is not a header name"),
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signed = signature.signed_headers();
    let mut unsigned = false;
    for (key, header) in mapping.identity_headers() {
        if signed.contains(&header) {
            continue;
        }
        if !allowed.iter().any(|a| a == header) {
            let what = if key == "fields.event_id" {
                "id, so a replay would be written again"
            } else {
                "event name, so a replay could create topics at will"
            };
            return Err(invalid.at(
                key,
                &format!(
                    "reads header {header:?}, which the signature does not cover: anyone who saw one delivery could resend it under another {what}. Read it from the body, sign it (scheme \"hmac\" with {{header:{header}}} in signature.signed_content), or list it in fields.allow_unsigned_headers (deliveries are then deduplicated on the body's digest)"
                ),
            ));
        }
        unsigned = true;
    }
    Ok(unsigned)
}

/// `"a", "b", "c"`: the values a key may take, for its error.
pub(crate) fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A provider's name is a topic part, a path segment and a metric label: it follows the
/// event-name rules, and is nobody else's.
fn check_name(name: &str, invalid: &Invalid<'_>) -> Result<(), DefinitionError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid.at(
            "",
            &format!("needs a name of 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if snake_case(name) != name {
        return Err(invalid.at(
            "",
            &format!(
                "is not a valid provider name: names are lowercase [a-z0-9_-], as in topic names (write {:?})",
                snake_case(name)
            ),
        ));
    }
    if super::built_in(name).is_some() {
        return Err(invalid.at(
            "",
            "is a built-in provider, defined in code: only its `secrets` can be set",
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(invalid.at("", "is a reserved name"));
    }
    Ok(())
}

impl Provider for Configured {
    fn spec(&self) -> &Spec {
        &self.spec
    }

    fn request_headers(&self) -> &[&'static str] {
        &self.request_headers
    }

    fn event_id(&self, request: &Request<'_>) -> Option<String> {
        // A dead letter is deduplicated on what the event would be.
        self.mapping
            .dedupe_key(request)
            .or_else(|| self.mapping.event_id(request).ok())
    }

    fn dedupe_key(&self, request: &Request<'_>) -> Option<String> {
        self.mapping.dedupe_key(request)
    }

    fn event_id_header(&self) -> Option<&'static str> {
        self.mapping.event_id_header()
    }

    fn dedupes_on_body(&self) -> bool {
        self.mapping.dedupe_on_body_digest
    }

    fn handshake(&self, request: &Request<'_>) -> Result<Option<Handshake>, PayloadError> {
        if self.ping_events.is_empty() {
            return Ok(None);
        }
        Ok(self
            .mapping
            .event_name(request)
            .ok()
            .filter(|name| self.ping_events.contains(name))
            .map(|_| Handshake::Ping))
    }

    fn extract(&self, request: &Request<'_>) -> Result<Extracted, PayloadError> {
        self.mapping.extract(request)
    }

    fn is_built_in(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests;
