//! What decides an event's identity (dedupe) and its topic is covered by the signature: a signed
//! body replayed with other unsigned headers is a duplicate and makes no topic; the topics a
//! provider can create are capped; numeric ids beyond 2^64 stay distinct.

use crate::support::*;
use hmac::{Hmac, Mac};
use hookstream::configuration::ProviderSettings;
use hookstream::signature::Secret;

const GITHUB_SECRET: &str = "github-test-secret";
const ACME_SECRET: &str = "acme-test-secret";

fn github(event: &str, delivery: &str, body: &[u8]) -> Vec<(String, String)> {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(GITHUB_SECRET.as_bytes()).expect("any key");
    mac.update(body);
    let tag = hex::encode(mac.finalize().into_bytes());
    vec![
        ("x-github-event".into(), event.into()),
        ("x-github-delivery".into(), delivery.into()),
        ("x-hub-signature-256".into(), format!("sha256={tag}")),
    ]
}

/// `acme`: HMAC-SHA256 (hex) of the body in `x-acme-signature`; name `/kind`, id `/id`.
fn acme() -> ProviderSettings {
    toml::from_str(&format!(
        r#"
secrets = "{ACME_SECRET}"
signature = {{ scheme = "hmac", header = "x-acme-signature" }}
fields = {{ event_name = "/kind", event_id = "/id", subject = "/user" }}
"#
    ))
    .expect("a provider definition")
}

async fn post_acme(app: &TestApp, body: Vec<u8>) -> Reply {
    let registry =
        hookstream::providers::Registry::with_definitions([("acme", &acme().definition())])
            .expect("compiles");
    let headers = registry
        .find("acme")
        .expect("acme")
        .signature()
        .sign(&body, &Secret::new(ACME_SECRET))
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect::<Vec<_>>();
    app.post("acme", body, &headers).await
}

#[tokio::test]
async fn a_signed_github_body_resent_under_a_fresh_delivery_id_or_another_event_is_a_duplicate_and_makes_no_topic(
) {
    let app = spawn_app_with(|s| {
        s.providers.insert(
            "github".into(),
            ProviderSettings::with_preset("github", GITHUB_SECRET),
        );
    })
    .await;
    let body = fixture("github", "issues_opened");
    let first = app
        .post(
            "github",
            body.clone(),
            &github("issues", "delivery-1", &body),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json()["status"], "accepted");

    // Someone who saw it replays it with a fresh delivery id, then under ten other events.
    let replay = app
        .post(
            "github",
            body.clone(),
            &github("issues", "delivery-2", &body),
        )
        .await;
    assert_eq!(replay.json()["status"], "duplicate", "{}", replay.text);
    for i in 0..10 {
        let event = format!("forged_event_{i}");
        let forged = app
            .post(
                "github",
                body.clone(),
                &github(&event, &format!("d-{i}"), &body),
            )
            .await;
        assert_eq!(forged.status, 200, "{}", forged.text);
        assert_eq!(forged.json()["status"], "duplicate", "{}", forged.text);
    }

    let topic = app.topic("github", "issues_opened");
    let records = app.read_messages(&topic, 1).await;
    assert_eq!(
        headers_of(&records[0])["hookstream-event-id"],
        "delivery-1",
        "the record keeps GitHub's delivery id"
    );
    assert_eq!(app.own_topics().await, vec![topic], "no topic on demand");
}

#[tokio::test]
async fn past_max_topics_per_provider_new_event_names_go_to_its_overflow_topic_keeping_their_names()
{
    let app = spawn_app_with(|s| {
        s.kafka.max_topics_per_provider = 2;
        s.providers.insert("acme".into(), acme());
    })
    .await;
    let mut answered = Vec::new();
    for (i, kind) in ["alpha", "beta", "gamma", "delta", "alpha"]
        .iter()
        .enumerate()
    {
        let body = serde_json::json!({"kind": kind, "id": format!("e-{i}"), "user": "u"});
        let reply = post_acme(&app, body.to_string().into_bytes()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        answered.push(
            reply.json()["topic"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let own = |event: &str| app.topic("acme", event);
    let overflow = format!("{}.acme.OVERFLOW", app.prefix);
    assert_eq!(
        answered,
        [
            own("alpha"),
            own("beta"),
            overflow.clone(),
            overflow.clone(),
            own("alpha")
        ],
        "the answer names the topic written to"
    );
    let mut topics = app.own_topics().await;
    topics.sort();
    let mut expected = vec![own("alpha"), own("beta"), overflow.clone()];
    expected.sort();
    assert_eq!(topics, expected);
    let overflowed = app.read_messages(&overflow, 2).await;
    let names: Vec<String> = overflowed
        .iter()
        .map(|m| string(&decode(m)["event_name"]))
        .collect();
    assert_eq!(
        names,
        ["gamma", "delta"],
        "the record keeps its real event name"
    );
    assert_eq!(
        app.metric("hookstream_kafka_topic_overflow_total", "provider=\"acme\"")
            .await,
        2.0
    );
}

#[tokio::test]
async fn the_topic_cap_counts_the_topics_the_cluster_already_has() {
    // A first process created two topics; a second one (a replica, or after a restart) with
    // the same prefix starts at the cap.
    let prefix = unique_prefix();
    for event in ["alpha", "beta"] {
        create_topic(&test_brokers(), &format!("{prefix}.acme.{event}")).await;
    }
    let app = spawn_app_with(|s| {
        s.kafka.topic_prefix = prefix.clone();
        s.kafka.max_topics_per_provider = 2;
        s.providers.insert("acme".into(), acme());
    })
    .await;
    let body = serde_json::json!({"kind": "gamma", "id": "g-1", "user": "u"});
    let reply = post_acme(&app, body.to_string().into_bytes()).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["topic"], format!("{prefix}.acme.OVERFLOW"));
    let body = serde_json::json!({"kind": "beta", "id": "b-1", "user": "u"});
    let reply = post_acme(&app, body.to_string().into_bytes()).await;
    assert_eq!(reply.json()["topic"], format!("{prefix}.acme.beta"));
}

#[tokio::test]
async fn numeric_event_ids_past_2_pow_53_and_2_pow_64_are_distinct_events_written_exactly() {
    let app = spawn_app_with(|s| {
        s.providers.insert("acme".into(), acme());
    })
    .await;
    let ids = [
        "9007199254740993",
        "9007199254740992",
        "123456789012345678901231",
        "123456789012345678901232",
    ];
    for id in ids {
        let body = format!(r#"{{"kind": "order", "id": {id}, "user": {id}}}"#);
        let reply = post_acme(&app, body.into_bytes()).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json()["status"], "accepted", "{id}: {}", reply.text);
        assert_eq!(reply.json()["event_id"], id);
    }
    let records = app.read_messages(&app.topic("acme", "order"), 4).await;
    let mut written: Vec<String> = records
        .iter()
        .map(|m| string(&decode(m)["event_id"]))
        .collect();
    written.sort();
    let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(written, expected);
    assert_eq!(
        key_of(&records[0]).map(|k| k.len() >= 16),
        Some(true),
        "the key is the exact subject"
    );
}
