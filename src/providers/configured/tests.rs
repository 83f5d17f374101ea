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

fn error(name: &str, definition: &Definition) -> RegistryError {
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
        wrong.problem.contains("expected a non-empty string"),
        "{wrong}"
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
