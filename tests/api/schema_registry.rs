//! Confluent wire format through a Schema Registry: against a real one (`rivven-schema`,
//! Confluent's REST API with compatibility checks) for what a registry does — registering,
//! looking up by id, a restart that loses every schema, a rolling schema upgrade under
//! `BACKWARD` — and against an HTTP test double for the faults a real one will not produce on
//! demand (5xx, wrong credentials, a registry that cannot be asked).

use crate::support::registry::{start_registry, Registry, PASSWORD, USER};
use crate::support::*;
use apache_avro::types::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// An app writing Confluent-framed values through the double, with credentials.
async fn app_with_registry(url: &str) -> TestApp {
    spawn_app_with(|s| {
        s.schema_registry.url = url.into();
        s.schema_registry.username = USER.into();
        s.schema_registry.set_password(PASSWORD);
    })
    .await
}

/// An app writing Confluent-framed values through a real registry.
async fn app_with_real_registry(registry: &SchemaRegistryServer) -> TestApp {
    let url = registry.url();
    spawn_app_with(|s| s.schema_registry.url = url).await
}

fn js_error(id: &str) -> Vec<u8> {
    with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = id.into()
    })
}

/// The schema id a Confluent-framed value names.
fn schema_id(message: &rdkafka::message::OwnedMessage) -> u32 {
    let value = rdkafka::Message::payload(message).expect("value");
    assert_eq!(value[0], 0, "Confluent magic byte");
    u32::from_be_bytes(value[1..5].try_into().expect("four bytes"))
}

/// The record of a Confluent-framed value, decoded with the schema the real registry has under
/// the id the value names; and that schema's name.
async fn decode_through(
    registry: &SchemaRegistryServer,
    message: &rdkafka::message::OwnedMessage,
) -> (HashMap<String, Value>, String) {
    let fetched = registry
        .get(&format!("/schemas/ids/{}", schema_id(message)))
        .await;
    let schema = apache_avro::Schema::parse_str(fetched["schema"].as_str().expect("schema"))
        .expect("the fetched schema parses");
    let name = match &schema {
        apache_avro::Schema::Record(record) => record.name.name.clone(),
        other => format!("{other:?}"),
    };
    let value = rdkafka::Message::payload(message).expect("value");
    let mut datum = &value[5..];
    let Ok(Value::Record(fields)) = apache_avro::from_avro_datum(&schema, &mut datum, None) else {
        panic!("does not decode as a record with {name}")
    };
    assert!(datum.is_empty(), "the whole datum is read");
    (fields.into_iter().collect(), name)
}

#[tokio::test]
async fn values_are_confluent_framed_and_decode_with_the_schema_fetched_back() {
    let registry = SchemaRegistryServer::start().await;
    let app = app_with_real_registry(&registry).await;
    let topic = app.topic("livesession", "js_error");
    for i in 0..2 {
        let reply = app
            .post_signed("livesession", js_error(&format!("sr-{i}")))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let subject = format!("{topic}-value");
    assert_eq!(
        registry.get("/subjects").await,
        serde_json::json!([subject]),
        "one subject per topic"
    );
    assert_eq!(
        registry.get(&format!("/subjects/{subject}/versions")).await,
        serde_json::json!([1]),
        "registered once"
    );
    let messages = app.read_messages(&topic, 2).await;
    for message in &messages {
        let (fields, name) = decode_through(&registry, message).await;
        assert_eq!(name, "WebhookEvent");
        assert!(string(&fields["event_id"]).starts_with("sr-"));
        assert_eq!(string(&fields["event_name"]), "js_error");
    }
}

#[tokio::test]
async fn a_registry_restarted_empty_that_gave_id_1_to_another_schema_gets_ours_again_before_records_decode(
) {
    let mut registry = SchemaRegistryServer::start().await;
    let app = app_with_real_registry(&registry).await;
    let topic = app.topic("livesession", "js_error");
    assert_eq!(
        app.post_signed("livesession", js_error("before"))
            .await
            .status,
        200
    );

    // Wiped (in memory), and id 1 now names another team's schema.
    registry.restart().await;
    assert_eq!(
        registry
            .register("someone-else-value", r#"{"type":"string"}"#)
            .await,
        1
    );
    // After a readiness interval (200 ms in the tests) the cached id has been checked again.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let reply = app.post_signed("livesession", js_error("after")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    let messages = app.read_messages(&topic, 2).await;
    let after = messages
        .iter()
        .find(|m| headers_of(m)["hookstream-event-id"] == "after")
        .expect("the record written after the restart");
    assert_ne!(schema_id(after), 1, "not the id another schema has now");
    let (fields, name) = decode_through(&registry, after).await;
    assert_eq!(name, "WebhookEvent", "{}", registry.log());
    assert_eq!(string(&fields["event_id"]), "after");
}

#[tokio::test]
async fn a_rolling_upgrade_registers_the_current_schema_after_the_previous_one_under_backward() {
    let registry = SchemaRegistryServer::start().await;
    let app = app_with_real_registry(&registry).await;
    let topic = app.topic("livesession", "js_error");
    let subject = format!("{topic}-value");
    // The previous release wrote with the previous schema, under BACKWARD compatibility.
    registry.set_compatibility(&subject, "BACKWARD").await;
    let previous = std::fs::read_to_string("avro/history/webhook_event.1.avsc").expect("history");
    let previous_id = registry.register(&subject, &previous).await;
    // The pair is backward compatible by apache-avro's resolution rules (the evolution tests
    // hold every shipped schema to them).
    apache_avro::schema_compatibility::SchemaCompatibility::can_read(
        &apache_avro::Schema::parse_str(&previous).expect("previous parses"),
        &apache_avro::Schema::parse_str(
            &std::fs::read_to_string("avro/webhook_event.avsc").expect("current"),
        )
        .expect("current parses"),
    )
    .expect("readers of the current schema read records of the previous one");

    // The new release registers the current schema on its first write. The registry decides:
    // accepted, the write goes through; refused, the webhook is answered 503 with the
    // registry's reason and nothing is written, so the sender's retry succeeds once the
    // operator has settled the subject. (rivven-schema 0.0.22 refuses this pair under BACKWARD:
    // its check has no rule for logical types and calls timestamp-millis incompatible with
    // itself; a subject set to NONE is how an operator lets the upgrade through.)
    let reply = app.post_signed("livesession", js_error("upgraded")).await;
    if reply.status != 200 {
        let detail = reply.assert_error(503, "schema_registry_unavailable");
        assert!(
            detail.contains("409") && detail.contains("ncompatible"),
            "the registry's reason is passed on: {detail}"
        );
        assert!(reply.headers.contains_key("retry-after"));
        assert!(
            !app.own_topics().await.contains(&topic),
            "nothing written while the schema is refused"
        );
        registry.set_compatibility(&subject, "NONE").await;
        let retry = app.post_signed("livesession", js_error("upgraded")).await;
        assert_eq!(retry.status, 200, "{}", retry.text);
    }
    assert_eq!(
        registry.get(&format!("/subjects/{subject}/versions")).await,
        serde_json::json!([1, 2]),
        "both schemas are registered, the current one as the next version"
    );
    let messages = app.read_messages(&topic, 1).await;
    assert_ne!(u64::from(schema_id(&messages[0])), previous_id);
    let (fields, _) = decode_through(&registry, &messages[0]).await;
    assert_eq!(string(&fields["event_id"]), "upgraded");
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
