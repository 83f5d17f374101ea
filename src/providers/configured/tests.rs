//! The unit tests of providers defined in configuration: mappings, time formats, presets and
//! definition errors.
//!
//! Length: twelve tests of one module, one of them a table of every definition error by key;
//! split further, they would share their fixtures through another file.

use super::definition::{FieldsDefinition, SignatureDefinition, Sources, UserFields};
use super::*;
use crate::providers::Registry;
use serde_json::json;
use sha2::Digest as _;

fn sources(items: &[&str]) -> Option<Sources> {
    Some(Sources(items.iter().map(|s| s.to_string()).collect()))
}

/// A fully custom definition: HMAC-SHA256 in hex of the body, a few fields.
fn custom() -> Definition {
    Definition {
        signature: SignatureDefinition {
            scheme: Some("hmac".into()),
            header: sources(&["x-acme-signature"]),
            ..SignatureDefinition::default()
        },
        fields: FieldsDefinition {
            event_name: sources(&["/kind"]),
            event_id: sources(&["/id"]),
            event_time: sources(&["/at"]),
            subject: sources(&["/user/id", "/user/email"]),
            user: UserFields {
                email: sources(&["/user/email"]),
                ..UserFields::default()
            },
            attributes: Some(vec!["/details".into(), "/count".into()]),
            ..FieldsDefinition::default()
        },
        ..Definition::default()
    }
}

fn error(name: &str, definition: &Definition) -> DefinitionError {
    Configured::compile(name, definition).expect_err("refused")
}

fn extract(provider: &Configured, body: serde_json::Value) -> Result<Extracted, PayloadError> {
    extract_with(provider, body, &[])
}

fn extract_with(
    provider: &Configured,
    body: serde_json::Value,
    headers: &[(&str, &str)],
) -> Result<Extracted, PayloadError> {
    let raw = body.to_string();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let request = Request {
        raw: &raw,
        body: body.as_object().expect("an object"),
        headers: &headers,
    };
    provider.extract(&request)
}

#[test]
fn a_custom_mapping_reads_every_kind_of_source() {
    let provider = Configured::compile("acme", &custom()).expect("compiles");
    let x = extract(
        &provider,
        json!({
            "kind": "Order.Created", "id": 42, "at": "2024-05-01T10:00:00+02:00",
            "user": {"email": "a@example.com"},
            "details": {"total": 12.5, "lines": [{"sku": "x"}]}, "count": 3
        }),
    )
    .expect("maps");
    assert_eq!(x.event_name, "order_created");
    assert_eq!(x.event_id, "42");
    assert_eq!(x.event_time, Some(Ok(1_714_550_400_000)));
    assert_eq!(
        x.subject_id.as_deref(),
        Some("a@example.com"),
        "first present wins"
    );
    assert_eq!(x.user.email.as_deref(), Some("a@example.com"));
    let mut warnings = Vec::new();
    let attributes = x.attributes.finish(&mut warnings);
    let keys: Vec<_> = attributes.keys().map(String::as_str).collect();
    assert_eq!(keys, ["count", "lines.0.sku", "total"]);
}

#[test]
fn a_body_of_the_wrong_shape_names_the_source_and_the_field() {
    let provider = Configured::compile("acme", &custom()).expect("compiles");
    let missing = extract(&provider, json!({"type": "x", "id": "1"})).unwrap_err();
    assert_eq!(missing.field, "/kind");
    assert!(
        missing.problem.contains("missing (fields.event_name)"),
        "{missing}"
    );
    let wrong = extract(&provider, json!({"kind": {"a": 1}, "id": "1"})).unwrap_err();
    assert!(
        wrong.problem.contains("expected a string, found an object"),
        "{wrong}"
    );
    // A number is no event name: it would become a topic of its own.
    let number = extract(&provider, json!({"kind": 42, "id": "1"})).unwrap_err();
    assert_eq!(number.field, "/kind");
    assert!(
        number.problem.contains("expected a string, found a number"),
        "{number}"
    );
    let long = extract(&provider, json!({"kind": "a", "id": "x".repeat(300)})).unwrap_err();
    assert!(long.problem.contains("at most 256"), "{long}");
}

#[test]
fn without_an_id_the_body_digest_is_used_only_when_configured() {
    let mut definition = custom();
    let provider = Configured::compile("acme", &definition).expect("compiles");
    assert!(extract(&provider, json!({"kind": "a"})).is_err());
    definition.fields.event_id_from_body_digest = Some(true);
    let provider = Configured::compile("acme", &definition).expect("compiles");
    let x = extract(&provider, json!({"kind": "a"})).expect("maps");
    // sha256 of the raw body `{"kind":"a"}`.
    assert_eq!(
        x.event_id,
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(br#"{"kind":"a"}"#))
        )
    );
}

#[test]
fn event_times_are_read_in_the_configured_format() {
    let cases = [
        ("s", json!(1_700_000_000), Some(1_700_000_000_000)),
        ("s", json!("1700000000.5"), Some(1_700_000_000_500)),
        ("ms", json!(1_700_000_000_123_i64), Some(1_700_000_000_123)),
        (
            "rfc3339",
            json!("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000),
        ),
        ("rfc3339", json!(1_700_000_000), None),
        ("auto", json!(1_700_000_000), Some(1_700_000_000_000)),
        (
            "auto",
            json!(1_700_000_000_000_i64),
            Some(1_700_000_000_000),
        ),
        (
            "auto",
            json!("2023-11-14T22:13:20.5Z"),
            Some(1_700_000_000_500),
        ),
        ("auto", json!(17), None),
        ("s", json!("soon"), None),
        ("ms", json!(1e300), None),
    ];
    for (format, at, expected) in cases {
        let mut definition = custom();
        definition.fields.event_time_format = Some(format.into());
        let provider = Configured::compile("acme", &definition).expect("compiles");
        let x = extract(&provider, json!({"kind": "a", "id": "1", "at": at})).expect("maps");
        assert_eq!(x.event_time.and_then(Result::ok), expected, "{format} {at}");
    }
    let mut definition = custom();
    definition.fields.event_time = None;
    let provider = Configured::compile("acme", &definition).expect("compiles");
    let x = extract(&provider, json!({"kind": "a", "id": "1"})).expect("maps");
    assert_eq!(
        x.event_time, None,
        "no time configured: received_at, no warning"
    );
}

#[test]
fn github_names_events_with_their_action_and_answers_pings() {
    let github = Definition {
        preset: Some("github".into()),
        ..Definition::default()
    };
    let provider = Configured::compile("github", &github).expect("compiles");
    assert_eq!(
        provider.request_headers(),
        ["x-github-delivery", "x-github-event"]
    );
    let headers = [("x-github-event", "issues"), ("x-github-delivery", "d-1")];
    let x = extract_with(
        &provider,
        json!({"action": "opened", "sender": {"id": 7, "login": "octocat"}}),
        &headers,
    )
    .expect("maps");
    assert_eq!(
        (x.event_name.as_str(), x.event_id.as_str()),
        ("issues_opened", "d-1")
    );
    assert_eq!(x.subject_id.as_deref(), Some("7"));
    let raw = "{}".to_string();
    let body = json!({"zen": "Keep it simple."});
    let ping_headers = [("x-github-event".to_string(), "ping".to_string())];
    let request = Request {
        raw: &raw,
        body: body.as_object().expect("object"),
        headers: &ping_headers,
    };
    assert_eq!(provider.handshake(&request), Ok(Some(Handshake::Ping)));
}

#[test]
fn definitions_are_checked_naming_the_key_at_fault() {
    let cases: Vec<(&str, Definition, &str, &str)> = vec![
        ("Acme", custom(), "providers.Acme", "\"acme\""),
        ("livesession", custom(), "providers.livesession", "built-in"),
        ("unknown", custom(), "providers.unknown", "reserved"),
        (
            "acme",
            Definition::default(),
            "providers.acme",
            "set `preset`",
        ),
        (
            "acme",
            Definition {
                preset: Some("gitlab".into()),
                ..Definition::default()
            },
            "providers.acme.preset",
            "\"github\"",
        ),
        (
            "acme",
            Definition {
                fields: FieldsDefinition {
                    event_id: sources(&["data.id"]),
                    ..custom().fields
                },
                ..custom()
            },
            "providers.acme.fields.event_id",
            "JSON pointer",
        ),
        (
            "acme",
            Definition {
                fields: FieldsDefinition {
                    subject: sources(&["/a~2"]),
                    ..custom().fields
                },
                ..custom()
            },
            "providers.acme.fields.subject",
            "'~'",
        ),
        (
            "acme",
            Definition {
                fields: FieldsDefinition {
                    event_name: None,
                    ..custom().fields
                },
                ..custom()
            },
            "providers.acme.fields.event_name",
            "must be set",
        ),
        (
            "acme",
            Definition {
                fields: FieldsDefinition {
                    event_id: None,
                    ..custom().fields
                },
                ..custom()
            },
            "providers.acme.fields.event_id",
            "event_id_from_body_digest",
        ),
        (
            "acme",
            Definition {
                fields: FieldsDefinition {
                    attributes: Some(vec!["details".into()]),
                    ..custom().fields
                },
                ..custom()
            },
            "providers.acme.fields.attributes",
            "JSON pointer",
        ),
        (
            "acme",
            Definition {
                signature: SignatureDefinition {
                    algorithm: Some("md5".into()),
                    ..custom().signature
                },
                ..custom()
            },
            "providers.acme.signature.algorithm",
            "sha512",
        ),
        (
            "acme",
            Definition {
                signature: SignatureDefinition {
                    header: None,
                    ..custom().signature
                },
                ..custom()
            },
            "providers.acme.signature.header",
            "must be set",
        ),
        (
            "acme",
            Definition {
                signature: SignatureDefinition {
                    timestamp_header: Some("x-ts".into()),
                    ..custom().signature
                },
                ..custom()
            },
            "providers.acme.signature.timestamp_header",
            "does not sign",
        ),
        (
            "acme",
            Definition {
                signature: SignatureDefinition {
                    signed_content: Some("{header:x-ts}".into()),
                    ..custom().signature
                },
                ..custom()
            },
            "providers.acme.signature.signed_content",
            "{body}",
        ),
        (
            "acme",
            Definition {
                signature: SignatureDefinition {
                    scheme: Some("stripe".into()),
                    ..custom().signature
                },
                ..custom()
            },
            "providers.acme.signature.header",
            "\"hmac\" only",
        ),
        (
            "acme",
            Definition {
                signature: SignatureDefinition {
                    prefix: Some("sig =".into()),
                    ..custom().signature
                },
                ..custom()
            },
            "providers.acme.signature.prefix",
            "separates several signatures",
        ),
        (
            "acme",
            Definition {
                ping_events: Some(vec!["Ping".into()]),
                ..custom()
            },
            "providers.acme.ping_events",
            "\"ping\"",
        ),
    ];
    for (name, definition, key, says) in cases {
        let e = error(name, &definition);
        assert_eq!(e.key, key, "{e}");
        assert!(e.problem.contains(says), "{key}: {e}");
    }
}

#[test]
fn an_hmac_template_with_a_timestamp_header_compiles_to_a_replay_protected_scheme() {
    let definition = Definition {
        signature: SignatureDefinition {
            signed_content: Some("{header:X-Acme-Time}.{body}".into()),
            timestamp_header: Some("X-Acme-Time".into()),
            encoding: Some("base64".into()),
            algorithm: Some("sha512".into()),
            prefix: Some("v1=".into()),
            ..custom().signature
        },
        ..custom()
    };
    let provider = Configured::compile("acme", &definition).expect("compiles");
    let scheme = provider.signature();
    let secret = crate::signature::Secret::new("k");
    let signed = scheme.sign_at(b"{}", &secret, 1_000_000, "");
    let pairs: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let headers = crate::signature::tests::headers(&pairs);
    assert!(scheme
        .verify_at(&headers, b"{}", std::slice::from_ref(&secret), 1_000_000)
        .is_ok());
    assert!(matches!(
        scheme.verify_at(&headers, b"{}", &[secret], 1_000_000 + 301),
        Err(crate::signature::SignatureError::Expired { .. })
    ));
}

#[test]
fn a_registry_serves_built_ins_and_configured_providers() {
    let stripe = Definition {
        preset: Some("stripe".into()),
        ..Definition::default()
    };
    let registry =
        Registry::with_definitions([("acme", &custom()), ("billing", &stripe)]).expect("compiles");
    assert_eq!(
        registry.names(),
        [
            "livesession",
            "lasoexperience",
            "seismic",
            "acme",
            "billing"
        ]
    );
    assert!(registry.find("billing").is_some_and(|p| !p.is_built_in()));
    assert!(registry
        .find("livesession")
        .is_some_and(|p| p.is_built_in()));
}

/// `custom()` with its event id and name read from headers, and `allowed` unsigned headers.
fn header_identity(signed_content: Option<&str>, allowed: Option<&[&str]>) -> Definition {
    let mut d = custom();
    d.fields.event_id = sources(&["header:x-acme-delivery"]);
    d.fields.event_name = sources(&["header:x-acme-event", "/kind"]);
    d.signature.signed_content = signed_content.map(String::from);
    d.fields.allow_unsigned_headers = allowed.map(|a| a.iter().map(|h| (*h).to_string()).collect());
    d
}

#[test]
fn a_header_the_signature_does_not_cover_cannot_decide_identity_or_topic_unless_allowed() {
    let refused = error("acme", &header_identity(None, None));
    assert_eq!(refused.key, "providers.acme.fields.event_name");
    assert!(
        refused.problem.contains("\"x-acme-event\"")
            && refused.problem.contains("does not cover")
            && refused.problem.contains("fields.allow_unsigned_headers"),
        "{refused}"
    );
    let only_event = error("acme", &header_identity(None, Some(&["x-acme-event"])));
    assert_eq!(only_event.key, "providers.acme.fields.event_id");
    assert!(
        only_event.problem.contains("\"x-acme-delivery\""),
        "{only_event}"
    );

    // Signed through the template: usable, deduplicated on the id as usual.
    let signed = Configured::compile(
        "acme",
        &header_identity(
            Some("{header:x-acme-delivery}.{header:x-acme-event}.{body}"),
            None,
        ),
    )
    .expect("signed headers are fine");
    let body = json!({"kind": "x", "at": 1_714_550_400});
    let raw = body.to_string();
    let headers = vec![
        ("x-acme-delivery".to_string(), "d-1".to_string()),
        ("x-acme-event".to_string(), "Order.Paid".to_string()),
    ];
    let request = Request {
        raw: &raw,
        body: body.as_object().expect("object"),
        headers: &headers,
    };
    assert_eq!(signed.dedupe_key(&request), None);
    assert_eq!(signed.extract(&request).expect("maps").event_id, "d-1");

    // Allowed: the record keeps the header's id, deduplication keys on the body's digest.
    let allowed = Configured::compile(
        "acme",
        &header_identity(None, Some(&["X-Acme-Delivery", "x-acme-event"])),
    )
    .expect("allowed");
    let digest = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(raw.as_bytes()))
    );
    assert_eq!(allowed.dedupe_key(&request), Some(digest.clone()));
    assert_eq!(allowed.extract(&request).expect("maps").event_id, "d-1");
    assert_eq!(allowed.event_id(&request), Some(digest), "dead letters too");

    let bad = error("acme", &header_identity(None, Some(&["not a header"])));
    assert_eq!(bad.key, "providers.acme.fields.allow_unsigned_headers");
}

#[test]
fn presets_take_identity_only_from_what_their_signature_covers() {
    // Standard Webhooks signs webhook-id: it stays the dedupe key. GitHub signs the body alone:
    // its delivery header and event header are trusted for the record, and it is deduplicated
    // on the body's digest.
    let registry = Registry::with_definitions([
        (
            "sw",
            &Definition::preset("standard-webhooks").expect("preset"),
        ),
        ("gh", &Definition::preset("github").expect("preset")),
    ])
    .expect("presets compile");
    let body = json!({"type": "x", "action": "opened", "sender": {"id": 1}});
    let raw = body.to_string();
    let headers = vec![("webhook-id".to_string(), "msg_1".to_string())];
    let request = Request {
        raw: &raw,
        body: body.as_object().expect("object"),
        headers: &headers,
    };
    assert_eq!(registry.find("sw").expect("sw").dedupe_key(&request), None);
    assert!(registry
        .find("gh")
        .expect("gh")
        .dedupe_key(&request)
        .is_some_and(|k| k.starts_with("sha256:")));
}

#[test]
fn a_sub_second_tolerance_is_refused_rather_than_rounded_to_zero() {
    let mut d = custom();
    d.signature.signed_content = Some("{header:x-acme-timestamp}.{body}".into());
    d.signature.timestamp_header = Some("x-acme-timestamp".into());
    for (tolerance, shown) in [(500, "500ms"), (1500, "1s 500ms")] {
        d.signature.tolerance = Some(std::time::Duration::from_millis(tolerance));
        let refused = error("acme", &d);
        assert_eq!(refused.key, "providers.acme.signature.tolerance");
        assert!(
            refused.problem.contains(shown) && refused.problem.contains("whole number of seconds"),
            "{refused}"
        );
    }
    d.signature.tolerance = Some(std::time::Duration::from_secs(2));
    assert!(Configured::compile("acme", &d).is_ok());
}

#[test]
fn numeric_ids_past_2_pow_53_and_2_pow_64_are_kept_exactly_and_stay_distinct() {
    let provider = Configured::compile("acme", &custom()).expect("compiles");
    let mut ids = Vec::new();
    for id in [
        "9007199254740993",         // 2^53 + 1: a double would make it ...992
        "18446744073709551617",     // 2^64 + 1
        "123456789012345678901231", // the review's pair
        "123456789012345678901232",
    ] {
        let raw = format!(r#"{{"kind": "x", "id": {id}, "user": {{"id": {id}}}}}"#);
        let body: serde_json::Value = serde_json::from_str(&raw).expect("JSON");
        let request = Request {
            raw: &raw,
            body: body.as_object().expect("object"),
            headers: &[],
        };
        let x = provider.extract(&request).expect("maps");
        assert_eq!(x.event_id, id);
        assert_eq!(x.subject_id.as_deref(), Some(id));
        ids.push(x.event_id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 4);
}
