//! Providers defined by a preset alone (`preset` + `secrets`): each verifies the vectors its
//! specification or documentation publishes, lands a signed fixture on `{prefix}.NAME.{event}`
//! with the mapped fields, key and headers (read back and decoded with a stock Avro reader), and
//! refuses a replay outside its tolerance.

use crate::support::*;
use apache_avro::types::Value;
use hmac::{Hmac, Mac};
use hookstream::configuration::ProviderSettings;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// GitHub's documented example ("Validating webhook deliveries").
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_BODY: &str = "Hello, World!";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

/// The Standard Webhooks specification's example (spec/standard-webhooks.md and the reference
/// libraries' tests).
const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const SW_TIMESTAMP: &str = "1614265330";
const SW_BODY: &str = r#"{"test": 2432232314}"#;
const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

const STRIPE_SECRET: &str = "whsec_test_stripe_endpoint_secret";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An app with `github` (GitHub), `payments` (Stripe) and `events` (Standard Webhooks), each
/// enabled by its preset and secret alone; `events` accepts timestamps up to `tolerance` old.
async fn app(tolerance: Option<Duration>) -> TestApp {
    spawn_app_with(|s| {
        s.providers.insert(
            "github".into(),
            ProviderSettings::with_preset("github", GITHUB_SECRET),
        );
        s.providers.insert(
            "payments".into(),
            ProviderSettings::with_preset("stripe", STRIPE_SECRET),
        );
        let mut events = ProviderSettings::with_preset("standard-webhooks", SW_SECRET);
        events.signature.tolerance = tolerance;
        s.providers.insert("events".into(), events);
    })
    .await
}

fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// HMAC-SHA256 of `content`, computed here rather than by hookstream.
fn hmac_sha256(key: &[u8], content: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(content);
    mac.finalize().into_bytes().to_vec()
}

/// The Standard Webhooks headers for `body`: `v1,` and the base64 HMAC of `{id}.{ts}.{body}`
/// under the base64-decoded secret.
fn standard_webhooks(id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(SW_SECRET.trim_start_matches("whsec_"))
        .expect("base64 secret");
    let content = [
        id.as_bytes(),
        b".",
        timestamp.to_string().as_bytes(),
        b".",
        body,
    ]
    .concat();
    let tag = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &content));
    h(&[
        ("webhook-id", id),
        ("webhook-timestamp", &timestamp.to_string()),
        ("webhook-signature", &format!("v1,{tag}")),
    ])
}

/// `Stripe-Signature: t=…,v1=…`: the hex HMAC of `{t}.{body}` under the secret's bytes.
fn stripe(timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let content = [timestamp.to_string().as_bytes(), b".", body].concat();
    let tag = hex::encode(hmac_sha256(STRIPE_SECRET.as_bytes(), &content));
    h(&[("stripe-signature", &format!("t={timestamp},v1={tag}"))])
}

fn github(event: &str, delivery: &str, body: &[u8]) -> Vec<(String, String)> {
    let tag = hex::encode(hmac_sha256(GITHUB_SECRET.as_bytes(), body));
    h(&[
        ("x-github-event", event),
        ("x-github-delivery", delivery),
        ("x-hub-signature-256", &format!("sha256={tag}")),
    ])
}

fn fixture_of(dir: &str, name: &str) -> Vec<u8> {
    fixture(dir, name)
}

/// The decoded record and headers of the one message on `topic`.
async fn only_record(
    app: &TestApp,
    topic: &str,
) -> (
    HashMap<String, Value>,
    HashMap<String, String>,
    Option<String>,
) {
    let messages = app.read_messages(topic, 1).await;
    let message = &messages[0];
    (decode(message), headers_of(message), key_of(message))
}

#[tokio::test]
async fn github_preset_verifies_githubs_documented_example_and_refuses_a_tampered_one() {
    let app = app(None).await;
    // The documented example is not JSON: verified, then kept as a dead letter.
    let reply = app
        .post(
            "github",
            GITHUB_BODY.into(),
            &h(&[
                ("x-hub-signature-256", GITHUB_SIGNATURE),
                ("x-github-event", "push"),
                ("x-github-delivery", "doc-example"),
            ]),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["status"], "dead_lettered", "{}", reply.text);
    assert_eq!(reply.json()["error"], "invalid_json");
    let letters = app.read_messages(&app.dead_letter_topic(), 1).await;
    let headers = headers_of(&letters[0]);
    assert_eq!(headers["hookstream-provider"], "github");
    assert_eq!(headers["hookstream-header-x-github-event"], "push");
    assert_eq!(
        headers["hookstream-header-x-github-delivery"],
        "doc-example"
    );
    assert_eq!(
        rdkafka::message::Message::payload(&letters[0]),
        Some(GITHUB_BODY.as_bytes())
    );

    let tampered = app
        .post(
            "github",
            "Hello, World?".into(),
            &h(&[("x-hub-signature-256", GITHUB_SIGNATURE)]),
        )
        .await;
    tampered.assert_error(401, "invalid_signature");
}

#[tokio::test]
async fn standard_webhooks_preset_verifies_the_specifications_example_and_refuses_a_tampered_one() {
    // The example was signed in 2021: it verifies only with a tolerance reaching back that far.
    let app = app(Some(Duration::from_secs(20 * 365 * 24 * 3600))).await;
    let headers = h(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", SW_TIMESTAMP),
        ("webhook-signature", SW_SIGNATURE),
    ]);
    let reply = app.post("events", SW_BODY.into(), &headers).await;
    // Verified; the example has no `type`, so it is kept as a dead letter under its id.
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["status"], "dead_lettered", "{}", reply.text);
    assert!(reply.detail().contains("/type"), "{}", reply.text);
    let letters = app.read_messages(&app.dead_letter_topic(), 1).await;
    assert_eq!(key_of(&letters[0]).as_deref(), Some(SW_ID));
    assert_eq!(
        headers_of(&letters[0])["hookstream-header-webhook-id"],
        SW_ID
    );

    let tampered = app
        .post("events", r#"{"test": 2432232315}"#.into(), &headers)
        .await;
    tampered.assert_error(401, "invalid_signature");
}

#[tokio::test]
async fn the_standard_webhooks_example_is_a_replay_under_the_default_tolerance() {
    let app = app(None).await;
    let headers = h(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", SW_TIMESTAMP),
        ("webhook-signature", SW_SIGNATURE),
    ]);
    let detail = app
        .post("events", SW_BODY.into(), &headers)
        .await
        .assert_error(401, "signature_expired");
    assert!(detail.contains("tolerance of 300 s"), "{detail}");
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn stripe_preset_verifies_its_documented_scheme_and_refuses_a_tampered_one() {
    let app = app(None).await;
    let body = fixture_of("stripe", "payment_intent_succeeded");
    let signed = stripe(now(), &body);
    let reply = app.post("payments", body.clone(), &signed).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["status"], "accepted", "{}", reply.text);

    let mut tampered = body.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    app.post("payments", tampered, &signed)
        .await
        .assert_error(401, "invalid_signature");
    // Several v1 signatures (a secret being rolled): any one matching is enough.
    let again = with_json(&body, |j| j["id"] = "evt_rolled".into());
    let t = now();
    let signed = stripe(t, &again);
    let (_, good) = signed[0].1.split_once(",v1=").expect("t=…,v1=…");
    let both = format!("t={t},v1={},v1={good}", "ab".repeat(32));
    let reply = app
        .post("payments", again, &h(&[("stripe-signature", &both)]))
        .await;
    assert_eq!(reply.json()["status"], "accepted", "{}", reply.text);
}

#[tokio::test]
async fn a_github_delivery_lands_on_its_topic_with_the_mapped_fields_key_and_headers() {
    let app = app(None).await;
    let body = fixture_of("github", "issues_opened");
    let reply = app
        .post(
            "github",
            body.clone(),
            &github("issues", "72d3162e-cc78-11e3-81ab-4c9367dc0958", &body),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let topic = app.topic("github", "issues_opened");
    assert_eq!(reply.json()["topic"], topic.as_str());
    let (record, headers, key) = only_record(&app, &topic).await;
    assert_eq!(string(&record["provider"]), "other");
    assert_eq!(string(&record["provider_name"]), "github");
    assert_eq!(string(&record["event_name"]), "issues_opened");
    assert_eq!(
        string(&record["event_id"]),
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(nullable_string(&record["subject_id"]).as_deref(), Some("1"));
    assert_eq!(
        nullable_string(&record["source_id"]).as_deref(),
        Some("octo-org/octo-repo")
    );
    assert_eq!(key.as_deref(), Some("1"));
    assert_eq!(headers["hookstream-provider"], "github");
    assert_eq!(headers["hookstream-event-name"], "issues_opened");
    assert_eq!(
        headers["hookstream-event-id"],
        "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    );
    assert_eq!(
        string(&record["raw_payload"]).as_bytes(),
        body.as_slice(),
        "the exact body"
    );

    // The ping GitHub sends when a webhook is created: answered, never written.
    let ping = fixture_of("github", "ping");
    let reply = app
        .post("github", ping.clone(), &github("ping", "ping-1", &ping))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json(), serde_json::json!({"status": "ping"}));
    assert!(!app
        .own_topics()
        .await
        .iter()
        .any(|t| t.ends_with(".github.ping")));
    assert_eq!(
        app.metric("hookstream_handshakes_total", "provider=\"github\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_stripe_event_lands_on_its_topic_with_the_mapped_fields_key_and_headers() {
    let app = app(None).await;
    let body = fixture_of("stripe", "customer_subscription_created");
    let reply = app
        .post("payments", body.clone(), &stripe(now(), &body))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let topic = app.topic("payments", "customer_subscription_created");
    let (record, headers, key) = only_record(&app, &topic).await;
    assert_eq!(string(&record["provider"]), "other");
    assert_eq!(string(&record["provider_name"]), "payments");
    assert_eq!(string(&record["event_id"]), "evt_1NG8Du2eZvKYlo2CUI79vXWy");
    assert_eq!(
        record["event_time"],
        Value::TimestampMillis(1_686_089_970_000)
    );
    assert_eq!(key.as_deref(), Some("cus_O2CK0SEpZ4Mjqt"));
    assert_eq!(headers["hookstream-provider"], "payments");
    let Value::Map(attributes) = &record["attributes"] else {
        panic!("attributes are a map")
    };
    assert_eq!(
        attributes["items.data.0.price.unit_amount"],
        Value::Union(2, Box::new(Value::Long(1500)))
    );
}

#[tokio::test]
async fn a_standard_webhooks_event_lands_on_its_topic_and_a_stale_replay_writes_nothing() {
    let app = app(None).await;
    let body = fixture_of("standard-webhooks", "contact_created_full");
    let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let reply = app
        .post("events", body.clone(), &standard_webhooks(id, now(), &body))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let topic = app.topic("events", "contact_created");
    let (record, headers, key) = only_record(&app, &topic).await;
    assert_eq!(string(&record["provider_name"]), "events");
    assert_eq!(string(&record["event_id"]), id);
    assert_eq!(
        record["event_time"],
        Value::TimestampMillis(1_667_507_170_344)
    );
    assert_eq!(key, None, "the preset maps no subject");
    assert_eq!(headers["hookstream-event-id"], id);

    // The same delivery captured and sent again six minutes later, and a new one signed with a
    // clock ten minutes fast: both refused, nothing more written.
    let replayed = standard_webhooks("msg_replayed", now() - 360, &body);
    let detail = app
        .post("events", body.clone(), &replayed)
        .await
        .assert_error(401, "signature_expired");
    assert!(
        detail.contains("more than the tolerance of 300 s"),
        "{detail}"
    );
    let ahead = standard_webhooks("msg_ahead", now() + 600, &body);
    app.post("events", body.clone(), &ahead)
        .await
        .assert_error(401, "signature_expired");
    let stale_stripe = fixture_of("stripe", "payment_intent_succeeded");
    app.post(
        "payments",
        stale_stripe.clone(),
        &stripe(now() - 3600, &stale_stripe),
    )
    .await
    .assert_error(401, "signature_expired");
    app.read_messages(&topic, 1).await;
    assert_eq!(
        app.metric(
            "hookstream_webhooks_rejected_total",
            "reason=\"signature_expired\""
        )
        .await,
        3.0
    );
    assert!(!app
        .own_topics()
        .await
        .iter()
        .any(|t| t.contains(".payments.")));
}
