//! Every bad input gets its own code, and nothing rejected reaches Kafka.

use crate::support::*;
use std::time::Duration;

const PROVIDER: &str = "livesession";

/// Every provider, a fixture of it, and the field holding its event id.
const PROVIDERS: [(&str, &str, &str); 3] = [
    ("livesession", "js_error", "message_id"),
    ("lasoexperience", "user_login", "insertId"),
    ("seismic", "email_v3", "id"),
];

#[tokio::test]
async fn tampered_body_is_rejected_with_401() {
    let app = spawn_app().await;
    for (provider, fixture_name, _) in PROVIDERS {
        let body = fixture(provider, fixture_name);
        let header = sign(provider, &body, SECRET);
        // One byte more than was signed, and still valid JSON.
        let tampered = [body.as_slice(), b"\n"].concat();
        let detail = app
            .post(provider, tampered, std::slice::from_ref(&header))
            .await
            .assert_error(401, "invalid_signature");
        assert!(
            !detail.contains(&header.1),
            "{provider}: the detail must not echo the signature"
        );
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn missing_signature_is_rejected_with_401() {
    let app = spawn_app().await;
    for (provider, fixture_name, _) in PROVIDERS {
        let detail = app
            .post(provider, fixture(provider, fixture_name), &[])
            .await
            .assert_error(401, "missing_signature");
        let header = sign(provider, b"", SECRET).0;
        assert!(detail.contains(&header), "{provider}: {detail}");
    }
    app.assert_nothing_produced().await;
}

/// The tag in the encoding the provider does not use (hex for base64, base64 for hex).
fn in_the_other_encoding(tag: &str) -> String {
    use base64::Engine;
    let base64 = base64::engine::general_purpose::STANDARD;
    match hex::decode(tag) {
        Ok(bytes) => base64.encode(bytes),
        Err(_) => hex::encode(base64.decode(tag).expect("base64")),
    }
}

#[tokio::test]
async fn garbled_signature_headers_are_rejected_with_401() {
    let app = spawn_app().await;
    for (provider, fixture_name, _) in PROVIDERS {
        let body = fixture(provider, fixture_name);
        let (name, good) = sign(provider, &body, SECRET);
        for garbled in [
            String::new(),
            "%%%not-base64%%%".to_string(),
            "c2hvcnQ=".to_string(),
            in_the_other_encoding(&good),
            format!("sha256={good}"),
        ] {
            app.post(provider, body.clone(), &[(name.clone(), garbled.clone())])
                .await
                .assert_error(401, "invalid_signature");
        }
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn a_signature_from_another_secret_is_rejected_with_401() {
    let app = spawn_app().await;
    for (provider, fixture_name, _) in PROVIDERS {
        let body = fixture(provider, fixture_name);
        let header = sign(provider, &body, "some-other-secret");
        app.post(provider, body, &[header])
            .await
            .assert_error(401, "invalid_signature");
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn without_dead_letters_invalid_json_is_rejected_with_400() {
    let app = spawn_app_without_dead_letters().await;
    for (provider, ..) in PROVIDERS {
        for body in [&b"{\"message_id\": "[..], b"", b"not json", b"{\"a\":1}{"] {
            app.post_signed(provider, body.to_vec())
                .await
                .assert_error(400, "invalid_json");
        }
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn without_dead_letters_invalid_utf8_is_rejected_with_400() {
    let app = spawn_app_without_dead_letters().await;
    for (provider, ..) in PROVIDERS {
        let detail = app
            .post_signed(provider, b"{\"message_id\": \"\xff\xfe\"}".to_vec())
            .await
            .assert_error(400, "invalid_json");
        assert!(detail.contains("UTF-8"), "{provider}: {detail}");
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn without_dead_letters_every_provider_names_the_field_of_a_wrong_shape() {
    let app = spawn_app_without_dead_letters().await;
    for (provider, fixture_name, id_field) in PROVIDERS {
        let body = fixture(provider, fixture_name);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"[1, 2]".to_vec(), "body"),
            (b"\"text\"".to_vec(), "body"),
            (
                with_json(&body, |j| {
                    j.as_object_mut().unwrap().remove(id_field);
                }),
                id_field,
            ),
            (with_json(&body, |j| j[id_field] = "".into()), id_field),
            (
                with_json(&body, |j| j[id_field] = "x".repeat(257).into()),
                id_field,
            ),
        ];
        for (body, field) in cases {
            let detail = app
                .post_signed(provider, body)
                .await
                .assert_error(400, "invalid_payload");
            assert!(
                detail.starts_with(&format!("{field}:")),
                "{provider} {field}: {detail}"
            );
        }
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn without_dead_letters_json_of_the_wrong_shape_is_rejected_with_400_naming_the_field() {
    let app = spawn_app_without_dead_letters().await;
    let js_error = fixture(PROVIDER, "js_error");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"[1, 2]".to_vec(), "body"),
        (b"\"text\"".to_vec(), "body"),
        (
            with_json(&js_error, |j| {
                j.as_object_mut().unwrap().remove("message_id");
            }),
            "message_id",
        ),
        (
            with_json(&js_error, |j| j["message_id"] = "".into()),
            "message_id",
        ),
        (
            with_json(&js_error, |j| j["message_id"] = serde_json::json!({"a": 1})),
            "message_id",
        ),
        (
            with_json(&js_error, |j| j["payload"] = "oops".into()),
            "payload",
        ),
        (
            with_json(&js_error, |j| {
                j.as_object_mut().unwrap().remove("payload");
            }),
            "payload",
        ),
        (
            with_json(&js_error, |j| {
                j["payload"]["event_name"] = serde_json::Value::Null
            }),
            "payload.event_name",
        ),
        (
            with_json(&js_error, |j| j["payload"]["event_name"] = "   ".into()),
            "payload.event_name",
        ),
    ];
    for (body, field) in cases {
        let detail = app
            .post_signed(PROVIDER, body)
            .await
            .assert_error(400, "invalid_payload");
        assert!(
            detail.starts_with(&format!("{field}:")),
            "{field}: {detail}"
        );
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn an_oversized_body_is_rejected_with_413() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 2048).await;
    let body = with_json(&fixture(PROVIDER, "js_error"), |j| {
        j["payload"]["value"] = "x".repeat(4096).into();
    });
    let detail = app
        .post_signed(PROVIDER, body)
        .await
        .assert_error(413, "payload_too_large");
    assert!(detail.contains("2048"), "{detail}");
    // A body right at the limit is still accepted.
    let small = fixture(PROVIDER, "js_error");
    assert!(small.len() <= 2048);
    assert_eq!(app.post_signed(PROVIDER, small).await.status, 200);
}

#[tokio::test]
async fn the_default_limit_is_one_mebibyte() {
    let app = spawn_app().await;
    let body = vec![b' '; 1024 * 1024 + 1];
    app.post_signed(PROVIDER, body)
        .await
        .assert_error(413, "payload_too_large");
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn a_provider_without_secrets_is_404_provider_disabled() {
    let app = spawn_app_with(|s| {
        s.providers.remove("seismic");
    })
    .await;
    app.post_signed("seismic", fixture("seismic", "email_v3"))
        .await
        .assert_error(404, "provider_disabled");
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn an_unknown_provider_is_404_unknown_provider() {
    let app = spawn_app().await;
    app.post("other", b"{}".to_vec(), &[])
        .await
        .assert_error(404, "unknown_provider");
    app.post("LiveSession", b"{}".to_vec(), &[])
        .await
        .assert_error(404, "unknown_provider");
}

#[tokio::test]
async fn other_methods_and_paths_get_json_errors() {
    let app = spawn_app().await;
    let reply = app.get("/webhooks/livesession").await;
    reply.assert_error(405, "method_not_allowed");
    assert_eq!(reply.headers["allow"], "POST");
    app.get("/nope").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn an_unreachable_broker_is_503_with_retry_after_and_the_retry_is_not_a_duplicate() {
    // Nothing listens on port 1.
    let app = spawn_app_with(|s| {
        s.kafka.brokers = "127.0.0.1:1".into();
        s.kafka.ack_timeout = Duration::from_secs(1);
        s.server.retry_after = Duration::from_secs(7);
    })
    .await;
    let body = fixture(PROVIDER, "js_error");
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let reply = app.post_signed(PROVIDER, body.clone()).await;
        reply.assert_error(503, "broker_unavailable");
        assert_eq!(reply.headers["retry-after"], "7");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded by ack_timeout"
        );
    }
}
