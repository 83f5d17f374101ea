use crate::support::*;

const PROVIDER: &str = "lasoexperience";

#[tokio::test]
async fn every_documented_event_type_lands_in_its_topic() {
    let app = spawn_app().await;
    let cases = [
        ("user_login", "user_login"),
        ("screen_view", "screen_view"),
        ("content_view_activity", "content_view_activity"),
        ("event_view", "event_view"),
        ("home_cta_click_image", "home_cta_click"),
    ];
    for (fixture_name, event_name) in cases {
        let body = fixture(PROVIDER, fixture_name);
        let reply = app.post_signed(PROVIDER, body.clone()).await;
        assert_eq!(reply.status, 200, "{fixture_name}: {}", reply.text);
        let topic = app.topic(PROVIDER, event_name);
        assert_eq!(reply.json()["topic"], topic);
        let messages = app.read_messages(&topic, 1).await;
        assert_eq!(key_of(&messages[0]).as_deref(), Some("user-123"));
        let record = decode(&messages[0]);
        assert_eq!(string(&record["event_name"]), event_name);
        assert_eq!(string(&record["provider"]), PROVIDER);
        assert_eq!(
            nullable_string(&record["account_id"]).as_deref(),
            Some("gnoml4IQloqBqyfX9aIP")
        );
        assert_eq!(string(&record["raw_payload"]).as_bytes(), body.as_slice());
        assert_eq!(
            headers_of(&messages[0])["hookstream-event-id"],
            string(&record["event_id"])
        );
    }
}

#[tokio::test]
async fn without_a_distinct_id_the_device_id_is_the_key() {
    let app = spawn_app().await;
    let reply = app
        .post_signed(PROVIDER, fixture(PROVIDER, "snake_case_curl_style"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let messages = app
        .read_messages(&app.topic(PROVIDER, "activity_view"), 1)
        .await;
    assert_eq!(key_of(&messages[0]).as_deref(), Some("device-456"));
}

#[tokio::test]
async fn uppercase_hex_signatures_are_accepted() {
    let app = spawn_app().await;
    let body = fixture(PROVIDER, "screen_view");
    let (name, value) = sign(PROVIDER, &body, SECRET);
    let reply = app
        .post(PROVIDER, body, &[(name, value.to_uppercase())])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn malformed_signature_headers_are_invalid_signature() {
    let app = spawn_app().await;
    let body = fixture(PROVIDER, "screen_view");
    let (name, good) = sign(PROVIDER, &body, SECRET);
    for bad in [
        String::new(),
        "not-hex".to_string(),
        format!("sha256={good}"),
        good[..62].to_string(),
        format!("{good}00"),
    ] {
        app.post(PROVIDER, body.clone(), &[(name.clone(), bad)])
            .await
            .assert_error(401, "invalid_signature");
    }
    app.post(PROVIDER, body, &[])
        .await
        .assert_error(401, "missing_signature");
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn without_dead_letters_a_missing_insert_id_is_invalid_payload() {
    let app = spawn_app_without_dead_letters().await;
    let body = with_json(&fixture(PROVIDER, "screen_view"), |j| {
        j.as_object_mut().unwrap().remove("insertId");
    });
    let detail = app
        .post_signed(PROVIDER, body)
        .await
        .assert_error(400, "invalid_payload");
    assert!(detail.starts_with("insertId:"), "{detail}");
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn redelivered_insert_ids_are_duplicates() {
    let app = spawn_app().await;
    let body = fixture(PROVIDER, "event_view");
    assert_eq!(
        app.post_signed(PROVIDER, body.clone()).await.json()["status"],
        "accepted"
    );
    assert_eq!(
        app.post_signed(PROVIDER, body).await.json()["status"],
        "duplicate"
    );
    app.read_messages(&app.topic(PROVIDER, "event_view"), 1)
        .await;
}

#[tokio::test]
async fn event_names_kafka_would_see_as_colliding_share_one_topic() {
    // Kafka refuses `screen.view` next to `screen_view` (their metric names collide).
    let app = spawn_app().await;
    for (i, name) in ["screen.view", "screen_view"].into_iter().enumerate() {
        let body = with_json(&fixture(PROVIDER, "screen_view"), |j| {
            j["event"] = name.into();
            j["insertId"] = format!("collide-{i}").into();
        });
        let reply = app.post_signed(PROVIDER, body).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text);
        assert_eq!(reply.json()["topic"], app.topic(PROVIDER, "screen_view"));
    }
    app.read_messages(&app.topic(PROVIDER, "screen_view"), 2)
        .await;
}
