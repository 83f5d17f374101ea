//! `[providers.NAME.signature]` → a [`SignatureScheme`].

use super::definition::SignatureDefinition;
use super::Invalid;
use crate::signature::{self, Algorithm, Encoding, HmacScheme, Part, SignatureScheme, Signed};
use std::time::Duration;

/// How far a signed timestamp may be from now unless configured otherwise.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The schemes, as configured.
pub const SCHEMES: &[&str] = &["hmac", "standard-webhooks", "stripe"];

fn intern(text: &str) -> &'static str {
    signature::interned::str(text)
}

/// Compiles the signature table; `invalid` names keys relative to `providers.NAME`.
pub(super) fn compile(
    d: &SignatureDefinition,
    invalid: &Invalid<'_>,
) -> Result<SignatureScheme, super::DefinitionError> {
    let tolerance = match d.tolerance {
        Some(t) if t.is_zero() => {
            return Err(invalid.at("signature.tolerance", "must be greater than zero"))
        }
        // Signed timestamps are whole seconds: "500ms" would be compared as 0 and refuse all.
        Some(t) if t.subsec_nanos() != 0 => {
            return Err(invalid.at(
                "signature.tolerance",
                &format!(
                    "is {}; it must be a whole number of seconds (signed timestamps are in seconds), e.g. \"{}s\"",
                    humantime::format_duration(t),
                    t.as_secs().max(1)
                ),
            ))
        }
        Some(t) => t,
        None => DEFAULT_TOLERANCE,
    };
    let scheme = d.scheme.as_deref().unwrap_or_default();
    if scheme != "hmac" {
        let hmac_only = [
            ("header", d.header.is_some()),
            ("algorithm", d.algorithm.is_some()),
            ("encoding", d.encoding.is_some()),
            ("prefix", d.prefix.is_some()),
            ("signed_content", d.signed_content.is_some()),
            ("timestamp_header", d.timestamp_header.is_some()),
        ];
        if let Some((key, _)) = hmac_only.iter().find(|(_, set)| *set) {
            return Err(invalid.at(
                &format!("signature.{key}"),
                &format!("applies to scheme \"hmac\" only, not {scheme:?}"),
            ));
        }
    }
    match scheme {
        "standard-webhooks" => Ok(SignatureScheme::StandardWebhooks { tolerance }),
        "stripe" => Ok(SignatureScheme::Stripe { tolerance }),
        "hmac" => hmac(d, tolerance, invalid).map(SignatureScheme::Hmac),
        other => Err(invalid.at(
            "signature.scheme",
            &format!("is {other:?}; it must be one of {}", super::quoted(SCHEMES)),
        )),
    }
}

fn hmac(
    d: &SignatureDefinition,
    tolerance: Duration,
    invalid: &Invalid<'_>,
) -> Result<HmacScheme, super::DefinitionError> {
    let headers: Vec<&'static str> = match &d.header {
        None => {
            return Err(invalid.at(
                "signature.header",
                "must be set for scheme \"hmac\" (the header carrying the signature)",
            ))
        }
        Some(list) if list.0.is_empty() => {
            return Err(invalid.at("signature.header", "must name at least one header"))
        }
        Some(list) => list
            .0
            .iter()
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                if !signature::is_header_name(&h) {
                    Err(invalid.at("signature.header", &format!("{h:?} is not a header name")))
                } else {
                    Ok(intern(&h))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let algorithm = match d.algorithm.as_deref().unwrap_or("sha256") {
        "sha1" => Algorithm::Sha1,
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        other => {
            return Err(invalid.at(
                "signature.algorithm",
                &format!("is {other:?}; it must be \"sha1\", \"sha256\" or \"sha512\""),
            ))
        }
    };
    let encoding = match d.encoding.as_deref().unwrap_or("hex") {
        "hex" => Encoding::Hex,
        "base64" => Encoding::Base64,
        other => {
            return Err(invalid.at(
                "signature.encoding",
                &format!("is {other:?}; it must be \"hex\" or \"base64\""),
            ))
        }
    };
    let signed = match d.signed_content.as_deref() {
        None | Some("{body}") => Signed::Body,
        Some(template) => Signed::Template(
            signature::parse_template(template)
                .map_err(|why| invalid.at("signature.signed_content", &why))?,
        ),
    };
    let timestamp = match d.timestamp_header.as_deref() {
        None if d.tolerance.is_some() => {
            return Err(invalid.at(
                "signature.tolerance",
                "applies to scheme \"hmac\" only with signature.timestamp_header",
            ))
        }
        None => None,
        Some(header) => {
            let header = header.trim().to_ascii_lowercase();
            if !signature::is_header_name(&header) {
                return Err(invalid.at(
                    "signature.timestamp_header",
                    &format!("{header:?} is not a header name"),
                ));
            }
            let signed_header = matches!(signed, Signed::Template(parts) if parts.iter().any(|p| matches!(p, Part::Header(h) if *h == header)));
            if !signed_header {
                return Err(invalid.at(
                    "signature.timestamp_header",
                    &format!(
                        "names {header:?}, which signature.signed_content does not sign (add {{header:{header}}}): an unsigned timestamp protects nothing"
                    ),
                ));
            }
            Some((intern(&header), tolerance))
        }
    };
    let prefix = d.prefix.as_deref().unwrap_or_default();
    if !prefix.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        return Err(invalid.at(
            "signature.prefix",
            "must be visible ASCII without ',' (a space or a comma separates several signatures in one header)",
        ));
    }
    Ok(HmacScheme {
        headers: signature::interned::names(headers),
        algorithm,
        encoding,
        prefix: intern(prefix),
        signed,
        timestamp,
    })
}
