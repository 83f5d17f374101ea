use crate::support::*;
use apache_avro::types::Value;

const PROVIDER: &str = "livesession";
const VISITOR_ID: &str = "e4d5932d-4439-4546-a8da-a8d40bc053c6";

#[tokio::test]
async fn every_documented_event_type_lands_in_its_topic_as_a_decodable_record() {
    let app = spawn_app().await;
    let cases = [
        ("js_error", "js_error"),
        ("net_error", "net_error"),
        ("error_click", "error_click"),
        ("rage_click", "rage_click"),
        ("custom", "custom"),
    ];
    for (i, (fixture_name, event_name)) in cases.into_iter().enumerate() {
        // The docs reuse one message_id for every example; give each its own.
        let event_id = format!("ls-doc-{i}");
        let body = with_json(&fixture(PROVIDER, fixture_name), |j| {
            j["message_id"] = event_id.clone().into()
        });
        let reply = app.post_signed(PROVIDER, body.clone()).await;
        assert_eq!(reply.status, 200, "{fixture_name}: {}", reply.text);
        let topic = app.topic(PROVIDER, event_name);
        assert_eq!(
            reply.json(),
            serde_json::json!({"status": "accepted", "event_id": event_id, "topic": topic})
        );

        let messages = app.read_messages(&topic, 1).await;
        let message = &messages[0];
        assert_eq!(key_of(message).as_deref(), Some(VISITOR_ID));
        let headers = headers_of(message);
        assert_eq!(headers["hookstream-provider"], PROVIDER);
        assert_eq!(headers["hookstream-event-name"], event_name);
        assert_eq!(headers["hookstream-event-id"], event_id);

        let record = decode(message);
        assert_eq!(string(&record["event_id"]), event_id);
        assert_eq!(string(&record["provider"]), PROVIDER);
        assert_eq!(string(&record["event_name"]), event_name);
        assert_eq!(
            record["event_time"],
            Value::TimestampMillis(1_691_161_881_000)
        );
        assert_eq!(
            nullable_string(&record["subject_id"]).as_deref(),
            Some(VISITOR_ID)
        );
        assert_eq!(
            nullable_string(&record["account_id"]).as_deref(),
            Some("3ca3b1b")
        );
        assert_eq!(
            nullable_string(&record["source_id"]).as_deref(),
            Some("8d53ea3")
        );
        assert_eq!(string(&record["raw_payload"]).as_bytes(), body.as_slice());
        let Value::Map(attributes) = &record["attributes"] else {
            panic!("attributes")
        };
        assert_eq!(
            attributes.get("visitor.params.plan"),
            Some(&Value::Union(1, Box::new(Value::String("pro".into()))))
        );
    }
}

#[tokio::test]
async fn event_specific_fields_become_typed_attributes() {
    let app = spawn_app().await;
    let reply = app
        .post_signed(PROVIDER, fixture(PROVIDER, "net_error"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let messages = app
        .read_messages(&app.topic(PROVIDER, "net_error"), 1)
        .await;
    let record = decode(&messages[0]);
    let Value::Map(attributes) = &record["attributes"] else {
        panic!("attributes")
    };
    assert_eq!(
        attributes["status"],
        Value::Union(2, Box::new(Value::Long(500)))
    );
    assert_eq!(
        attributes["method"],
        Value::Union(1, Box::new(Value::String("GET".into())))
    );
}

#[tokio::test]
async fn an_unknown_event_name_is_ingested_generically() {
    let app = spawn_app().await;
    let reply = app
        .post_signed(PROVIDER, fixture(PROVIDER, "mouse_click_undocumented"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["topic"], app.topic(PROVIDER, "mouse_click"));
    let messages = app
        .read_messages(&app.topic(PROVIDER, "mouse_click"), 1)
        .await;
    // No visitor id: keyed by the email instead.
    assert_eq!(key_of(&messages[0]).as_deref(), Some("anon@example.com"));
}

#[tokio::test]
async fn the_older_error_name_gets_its_own_topic() {
    let app = spawn_app().await;
    let reply = app
        .post_signed(PROVIDER, fixture(PROVIDER, "error_legacy"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["topic"], app.topic(PROVIDER, "error"));
}

#[tokio::test]
async fn a_visitor_without_id_or_email_gives_a_null_key() {
    let app = spawn_app().await;
    let body = with_json(&fixture(PROVIDER, "rage_click"), |j| {
        j["payload"]["visitor"]["id"] = "".into();
        j["payload"]["visitor"]["email"] = "".into();
    });
    let reply = app.post_signed(PROVIDER, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let messages = app
        .read_messages(&app.topic(PROVIDER, "rage_click"), 1)
        .await;
    assert_eq!(
        rdkafka::Message::key(&messages[0]),
        None,
        "null key, never an empty one"
    );
    assert_eq!(nullable_string(&decode(&messages[0])["subject_id"]), None);
}

#[tokio::test]
async fn a_redelivery_is_answered_duplicate_and_produces_nothing() {
    let app = spawn_app().await;
    let body = fixture(PROVIDER, "js_error");
    let first = app.post_signed(PROVIDER, body.clone()).await;
    assert_eq!(first.json()["status"], "accepted", "{}", first.text);
    let second = app.post_signed(PROVIDER, body).await;
    assert_eq!(second.status, 200);
    assert_eq!(
        second.json(),
        serde_json::json!({"status": "duplicate", "event_id": "d5932de4-a8da-4546-4439-3c640ba8dc05"})
    );
    app.read_messages(&app.topic(PROVIDER, "js_error"), 1).await;
    // The topic listing that `assert_nothing_produced` relies on does see produced topics.
    assert_eq!(
        app.own_topics().await,
        vec![app.topic(PROVIDER, "js_error")]
    );
}

#[tokio::test]
async fn concurrent_duplicates_produce_exactly_one_message() {
    let app = spawn_app().await;
    let body = fixture(PROVIDER, "custom");
    let requests = (0..8).map(|_| app.post_signed(PROVIDER, body.clone()));
    let replies = futures_util::future::join_all(requests).await;
    let statuses: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text);
            r.json()["status"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "accepted").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "duplicate").count(),
        7,
        "{statuses:?}"
    );
    app.read_messages(&app.topic(PROVIDER, "custom"), 1).await;
}

#[tokio::test]
async fn any_configured_secret_is_accepted_during_rotation() {
    let app = spawn_app_with(|s| {
        s.providers.insert(
            PROVIDER.into(),
            hookstream::configuration::ProviderSettings::with_secrets("new-secret, old-secret"),
        );
    })
    .await;
    for (i, secret) in ["new-secret", "old-secret"].into_iter().enumerate() {
        let body = with_json(&fixture(PROVIDER, "js_error"), |j| {
            j["message_id"] = format!("rot-{i}").into()
        });
        let header = sign(PROVIDER, &body, secret);
        let reply = app.post(PROVIDER, body, &[header]).await;
        assert_eq!(reply.status, 200, "{secret}: {}", reply.text);
    }
    let body = fixture(PROVIDER, "js_error");
    let header = sign(PROVIDER, &body, "retired-secret");
    app.post(PROVIDER, body, &[header])
        .await
        .assert_error(401, "invalid_signature");
}
