//! Confluent wire format through a Schema Registry, against an HTTP test double of the
//! registry's REST API (register, look up by id, list subjects).

use crate::support::registry::{start_registry, Registry, PASSWORD, USER};
use crate::support::*;
use apache_avro::types::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

async fn app_with_registry(url: &str) -> TestApp {
    spawn_app_with(|s| {
        s.schema_registry.url = url.into();
        s.schema_registry.username = USER.into();
        s.schema_registry.set_password(PASSWORD);
    })
    .await
}

#[tokio::test]
async fn values_are_confluent_framed_and_decode_with_the_schema_fetched_back() {
    let (url, registry) = start_registry().await;
    let app = app_with_registry(&url).await;
    let topic = app.topic("livesession", "js_error");
    for i in 0..2 {
        let body = with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = format!("sr-{i}").into()
        });
        let reply = app.post_signed("livesession", body).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    assert_eq!(
        registry.registrations.load(Ordering::Relaxed),
        1,
        "registered once per topic"
    );
    let subjects = registry.subjects.lock().unwrap().clone();
    assert_eq!(
        subjects.keys().collect::<Vec<_>>(),
        vec![&format!("{topic}-value")]
    );

    let messages = app.read_messages(&topic, 2).await;
    let client = reqwest::Client::new();
    for (i, message) in messages.iter().enumerate() {
        let value = rdkafka::Message::payload(message).expect("value");
        assert_eq!(value[0], 0, "Confluent magic byte");
        let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
        let fetched: serde_json::Value = client
            .get(format!("{url}/schemas/ids/{id}"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("lookup")
            .json()
            .await
            .expect("lookup JSON");
        let schema = apache_avro::Schema::parse_str(fetched["schema"].as_str().expect("schema"))
            .expect("fetched schema parses");
        let mut datum = &value[5..];
        let Value::Record(fields) =
            apache_avro::from_avro_datum(&schema, &mut datum, None).expect("decodes")
        else {
            panic!("record")
        };
        assert!(datum.is_empty());
        let fields: HashMap<_, _> = fields.into_iter().collect();
        assert_eq!(string(&fields["event_id"]), format!("sr-{i}"));
        assert_eq!(string(&fields["event_name"]), "js_error");
    }
}

#[tokio::test]
async fn a_registry_failure_is_503_never_an_unframed_message() {
    let (url, registry) = start_registry().await;
    registry.failing.store(true, Ordering::Relaxed);
    let app = app_with_registry(&url).await;
    let reply = app
        .post_signed("livesession", fixture("livesession", "js_error"))
        .await;
    reply.assert_error(503, "schema_registry_unavailable");
    assert!(reply.headers.contains_key("retry-after"));
    app.assert_nothing_produced().await;
    wait_for_error(&app, "/readyz", 503, "schema_registry_unavailable")
        .await
        .assert_error(503, "schema_registry_unavailable");

    // The registry recovers: the provider's retry goes through.
    registry.failing.store(false, Ordering::Relaxed);
    let reply = app
        .post_signed("livesession", fixture("livesession", "js_error"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(wait_for_status(&app, "/readyz", 200).await.status, 200);
}

#[tokio::test]
async fn wrong_registry_credentials_are_503() {
    let (url, _registry) = start_registry().await;
    let app = spawn_app_with(|s| {
        s.schema_registry.url = url.clone();
        s.schema_registry.username = USER.into();
        s.schema_registry.set_password("wrong");
    })
    .await;
    let detail = app
        .post_signed("livesession", fixture("livesession", "js_error"))
        .await
        .assert_error(503, "schema_registry_unavailable");
    assert!(detail.contains("401"), "{detail}");
    assert!(
        !detail.contains("wrong"),
        "no credentials in the detail: {detail}"
    );
    app.assert_nothing_produced().await;
}

impl Registry {
    /// Loses every schema, as a wiped registry does, and gives id 1 to another schema.
    fn lose_state(&self) {
        *self.schemas.lock().unwrap() = vec![r#"{"type":"string"}"#.to_string()];
        self.subjects.lock().unwrap().clear();
    }
}

/// The schema a Confluent-framed message names, fetched from the registry double.
async fn schema_of(url: &str, message: &rdkafka::message::OwnedMessage) -> apache_avro::Schema {
    let value = rdkafka::Message::payload(message).expect("value");
    let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
    let fetched: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/schemas/ids/{id}"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("lookup")
        .json()
        .await
        .expect("lookup JSON");
    apache_avro::Schema::parse_str(fetched["schema"].as_str().expect("schema")).expect("parses")
}

fn decodes_with(schema: &apache_avro::Schema, message: &rdkafka::message::OwnedMessage) -> bool {
    let value = rdkafka::Message::payload(message).expect("value");
    let mut datum = &value[5..];
    matches!(
        apache_avro::from_avro_datum(schema, &mut datum, None),
        Ok(Value::Record(_))
    ) && datum.is_empty()
}

#[tokio::test]
async fn a_registry_that_lost_its_state_gets_the_schema_registered_again_before_the_next_write() {
    let (url, registry) = start_registry().await;
    let app = app_with_registry(&url).await;
    let send = |id: &'static str| {
        let body = with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = id.into()
        });
        app.post_signed("livesession", body)
    };
    assert_eq!(send("before").await.status, 200);
    registry.lose_state();
    // The readiness check notices and registers again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while registry.registrations.load(Ordering::Relaxed) < 2 {
        assert!(std::time::Instant::now() < deadline, "not registered again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reply = send("after").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let messages = app
        .read_messages(&app.topic("livesession", "js_error"), 2)
        .await;
    let after = messages
        .iter()
        .find(|m| headers_of(m)["hookstream-event-id"] == "after")
        .expect("the second record");
    let schema = schema_of(&url, after).await;
    assert!(
        decodes_with(&schema, after),
        "the record decodes with the schema its id names now"
    );
}

#[tokio::test]
async fn while_cached_ids_cannot_be_checked_writes_are_503() {
    let (url, registry) = start_registry().await;
    let app = app_with_registry(&url).await;
    let body = |id: &str| {
        with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = id.into()
        })
    };
    assert_eq!(
        app.post_signed("livesession", body("first")).await.status,
        200
    );
    registry.lose_state();
    registry.failing.store(true, Ordering::Relaxed);
    wait_for_error(&app, "/readyz", 503, "schema_registry_unavailable").await;
    app.post_signed("livesession", body("while-down"))
        .await
        .assert_error(503, "schema_registry_unavailable");

    registry.failing.store(false, Ordering::Relaxed);
    let reply = app.post_signed("livesession", body("back")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let messages = app
        .read_messages(&app.topic("livesession", "js_error"), 2)
        .await;
    let back = messages
        .iter()
        .find(|m| headers_of(m)["hookstream-event-id"] == "back")
        .expect("the record written after the registry came back");
    assert!(decodes_with(&schema_of(&url, back).await, back));
}
