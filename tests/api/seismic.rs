use crate::support::*;

const PROVIDER: &str = "seismic";

#[tokio::test]
async fn a_session_summary_lands_keyed_by_the_participant_email() {
    let app = spawn_app().await;
    let body = fixture(PROVIDER, "livesend_session_summary_v3");
    let reply = app.post_signed(PROVIDER, body.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let topic = app.topic(PROVIDER, "livesend_session_summary");
    assert_eq!(reply.json()["topic"], topic);
    let messages = app.read_messages(&topic, 1).await;
    assert_eq!(
        key_of(&messages[0]).as_deref(),
        Some("jane.buyer@example.com")
    );
    let record = decode(&messages[0]);
    assert_eq!(
        string(&record["event_id"]),
        "e40bbaab-f86e-e62b-d3c9-5104734edb18"
    );
    assert_eq!(
        record["event_time"],
        apache_avro::types::Value::TimestampMillis(1_720_965_832_679)
    );
    assert_eq!(
        nullable_string(&record["session_id"]).as_deref(),
        Some("3c7327f5-a699-45fc-823e-7e4bf6eef271")
    );
    assert_eq!(string(&record["raw_payload"]).as_bytes(), body.as_slice());
}

#[tokio::test]
async fn camel_case_email_events_land_keyed_by_the_lowercased_email() {
    let app = spawn_app().await;
    let reply = app
        .post_signed(PROVIDER, fixture(PROVIDER, "email_v3"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let messages = app.read_messages(&app.topic(PROVIDER, "email"), 1).await;
    assert_eq!(
        key_of(&messages[0]).as_deref(),
        Some("rep.person@example.com")
    );
}

#[tokio::test]
async fn the_rotation_header_signed_with_the_previous_secret_is_accepted() {
    let app = spawn_app_with(|s| {
        s.providers.insert(
            PROVIDER.into(),
            hookstream::configuration::ProviderSettings::with_secrets("current, previous"),
        );
    })
    .await;
    let body = fixture(PROVIDER, "livesend_expired_v1");
    let (_, stale) = sign(PROVIDER, &body, "not-configured");
    let (_, old) = sign(PROVIDER, &body, "previous");
    let reply = app
        .post(
            PROVIDER,
            body.clone(),
            &[
                ("x-seismic-signature".into(), stale.clone()),
                ("x-seismic-signature-old".into(), old),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json()["topic"],
        app.topic(PROVIDER, "livesend_expired")
    );
    app.post(PROVIDER, body, &[("x-seismic-signature-old".into(), stale)])
        .await
        .assert_error(401, "invalid_signature");
}

#[tokio::test]
async fn the_verification_handshake_echoes_the_challenge_as_text_and_produces_nothing() {
    let app = spawn_app().await;
    let body = fixture(PROVIDER, "challenge_verification");
    for signed in [false, true] {
        let reply = if signed {
            app.post_signed(PROVIDER, body.clone()).await
        } else {
            app.post(PROVIDER, body.clone(), &[]).await
        };
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert!(reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(
            reply.text,
            "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
        );
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn the_webhook_challenge_v1_envelope_is_answered_as_json_and_produces_nothing() {
    let app = spawn_app().await;
    let reply = app
        .post(
            PROVIDER,
            fixture(PROVIDER, "challenge_webhook_challenge_v1"),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(
        reply.json(),
        serde_json::json!({"challenge": "Qm9vdHN0cmFwLWNoYWxsZW5nZS0xMjM0NQ=="})
    );
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn a_challenge_of_the_wrong_shape_is_400() {
    let app = spawn_app().await;
    for challenge in [
        serde_json::json!("<b>hi</b>"),
        serde_json::json!("x".repeat(1025)),
        serde_json::json!(7),
    ] {
        let body = serde_json::to_vec(
            &serde_json::json!({"type": "verification", "challenge": challenge}),
        )
        .unwrap();
        app.post(PROVIDER, body, &[])
            .await
            .assert_error(400, "invalid_payload");
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn a_signed_handshake_with_a_bad_signature_is_401() {
    let app = spawn_app().await;
    let body = fixture(PROVIDER, "challenge_verification");
    let (name, _) = sign(PROVIDER, &body, SECRET);
    app.post(PROVIDER, body, &[(name, "00".repeat(32))])
        .await
        .assert_error(401, "invalid_signature");
}

#[tokio::test]
async fn an_unsigned_event_is_missing_signature_not_a_handshake() {
    let app = spawn_app().await;
    app.post(PROVIDER, fixture(PROVIDER, "email_v3"), &[])
        .await
        .assert_error(401, "missing_signature");
    app.post(PROVIDER, b"not json".to_vec(), &[])
        .await
        .assert_error(401, "missing_signature");
    app.assert_nothing_produced().await;
}
