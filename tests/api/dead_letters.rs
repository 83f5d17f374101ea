//! Dead letters: a verified delivery that cannot be normalized is kept in Kafka exactly as
//! received, answered 200 `dead_lettered`, and can be replayed.

use crate::support::proxy::{Fault, ProxiedBroker};
use crate::support::*;
use rdkafka::message::Message;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// For each provider: a fixture, a way to break its shape, and the event id it keeps.
const CASES: &[(&str, &str, &str, &str)] = &[
    // provider, fixture, field removed (a required one), event id of the fixture
    (
        "livesession",
        "js_error",
        "payload",
        "d5932de4-a8da-4546-4439-3c640ba8dc05",
    ),
    (
        "lasoexperience",
        "user_login",
        "event",
        "1741717450350-a1b2c3d4e5f6",
    ),
    (
        "seismic",
        "email_v3",
        "version",
        "7a0c9e1f-1111-4222-8333-444455556666",
    ),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn post_with_content_type(app: &TestApp, provider: &str, body: Vec<u8>) -> Reply {
    let (name, value) = sign(provider, &body, SECRET);
    Reply::read(
        app.client
            .post(format!("{}/webhooks/{provider}", app.address))
            .header("content-type", "text/plain; charset=x-hookstream-test")
            .header(name, value)
            .body(body),
    )
    .await
}

/// Asserts the reply is `dead_lettered` with `code`; returns its detail.
fn assert_dead_lettered(reply: &Reply, code: &str) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let json = reply.json();
    assert_eq!(json["status"], "dead_lettered", "{}", reply.text);
    assert_eq!(json["error"], code, "{}", reply.text);
    json["detail"].as_str().expect("detail").to_string()
}

fn assert_headers(
    headers: &HashMap<String, String>,
    provider: &str,
    code: &str,
    detail: &str,
    sent: (i64, i64),
) {
    assert_eq!(headers["hookstream-provider"], provider);
    assert_eq!(headers["hookstream-error"], code);
    assert_eq!(headers["hookstream-error-detail"], detail);
    assert_eq!(
        headers["content-type"],
        "text/plain; charset=x-hookstream-test"
    );
    let received: i64 = headers["hookstream-received-at"]
        .parse()
        .expect("epoch milliseconds");
    assert!(
        (sent.0..=sent.1).contains(&received),
        "{received} not in {sent:?}"
    );
}

#[tokio::test]
async fn signed_bodies_that_cannot_be_normalized_are_kept_byte_for_byte_with_every_header() {
    let app = spawn_app().await;
    let mut expected = Vec::new();
    for (provider, fixture_name, field, event_id) in CASES {
        // Not JSON at all (and not UTF-8 either).
        let garbage = [&b"\xff\xfe not json {"[..], provider.as_bytes()].concat();
        let before = now_ms();
        let reply = post_with_content_type(&app, provider, garbage.clone()).await;
        let detail = assert_dead_lettered(&reply, "invalid_json");
        expected.push((
            garbage,
            provider,
            "invalid_json",
            detail,
            None,
            (before, now_ms()),
        ));

        // JSON of the wrong shape: the event id can still be read.
        let wrong = with_json(&fixture(provider, fixture_name), |j| {
            j.as_object_mut().expect("object").remove(*field);
        });
        let before = now_ms();
        let reply = post_with_content_type(&app, provider, wrong.clone()).await;
        let detail = assert_dead_lettered(&reply, "invalid_payload");
        assert!(detail.starts_with(field), "{detail}");
        expected.push((
            wrong,
            provider,
            "invalid_payload",
            detail,
            Some(event_id.to_string()),
            (before, now_ms()),
        ));
    }

    let messages = app
        .read_messages(&app.dead_letter_topic(), expected.len())
        .await;
    assert_eq!(messages.len(), expected.len());
    for (body, provider, code, detail, event_id, sent) in expected {
        let message = messages
            .iter()
            .find(|m| m.payload() == Some(body.as_slice()))
            .unwrap_or_else(|| panic!("{provider} {code}: no dead letter with this exact body"));
        let headers = headers_of(message);
        assert_headers(&headers, provider, code, &detail, sent);
        assert_eq!(key_of(message), event_id, "{provider} {code}: key");
        assert_eq!(
            headers.get("hookstream-event-id").cloned(),
            event_id,
            "{provider} {code}"
        );
    }
    for (provider, ..) in CASES {
        for code in ["invalid_json", "invalid_payload"] {
            let series = format!("provider=\"{provider}\",reason=\"{code}\"");
            assert_eq!(
                app.metric("hookstream_webhooks_dead_lettered_total", &series)
                    .await,
                1.0,
                "{series}"
            );
        }
    }
}

#[tokio::test]
async fn unsigned_or_badly_signed_bodies_are_401_and_write_nothing_anywhere() {
    let app = spawn_app().await;
    for (provider, ..) in CASES {
        let garbage = b"not json".to_vec();
        app.post(provider, garbage.clone(), &[])
            .await
            .assert_error(401, "missing_signature");
        let forged = sign(provider, &garbage, "not-the-secret");
        app.post(provider, garbage, &[forged])
            .await
            .assert_error(401, "invalid_signature");
    }
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn a_failed_dead_letter_write_is_503_so_the_provider_retries() {
    let proxied = ProxiedBroker::start().await;
    let brokers = proxied.brokers();
    let app = spawn_app_with(move |s| {
        s.kafka.brokers = brokers;
        s.kafka.ack_timeout = Duration::from_secs(2);
    })
    .await;
    proxied.set(Fault::StallProduce);
    let reply = app.post_signed("livesession", b"not json".to_vec()).await;
    reply.assert_error(503, "broker_unavailable");
    assert!(reply.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_record_too_large_for_its_topic_is_kept_as_its_body_alone() {
    // The broker (here: librdkafka's own check) takes messages of at most 50,000 bytes.
    let app = spawn_app_with(|s| {
        s.kafka
            .options
            .insert("message.max.bytes".into(), "50000".into());
    })
    .await;
    // The body fits, but the record (body, attributes, envelope) does not.
    let body = with_json(&fixture("livesession", "js_error"), |j| {
        j["payload"]["value"] = "x".repeat(46_000).into()
    });
    assert!(body.len() < 50_000);
    let reply = app.post_signed("livesession", body.clone()).await;
    let detail = assert_dead_lettered(&reply, "payload_too_large");
    let messages = app.read_messages(&app.dead_letter_topic(), 1).await;
    assert_eq!(messages[0].payload(), Some(body.as_slice()));
    let headers = headers_of(&messages[0]);
    assert_eq!(headers["hookstream-error"], "payload_too_large");
    assert_eq!(headers["hookstream-error-detail"], detail);
    assert_eq!(
        headers["hookstream-event-id"],
        "d5932de4-a8da-4546-4439-3c640ba8dc05"
    );

    // Even the body alone is too large: the answer stays 413.
    let huge = with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = "huge".into();
        j["payload"]["value"] = "x".repeat(60_000).into()
    });
    app.post_signed("livesession", huge)
        .await
        .assert_error(413, "payload_too_large");
    app.read_messages(&app.dead_letter_topic(), 1).await;
}

#[tokio::test]
async fn a_handshake_is_never_dead_lettered() {
    let app = spawn_app().await;
    let bad = br#"{"type":"verification","challenge":"<script>"}"#.to_vec();
    app.post_signed("seismic", bad)
        .await
        .assert_error(400, "invalid_payload");
    app.assert_nothing_produced().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_hookstream");

/// Runs `hookstream dead-letters ARGS` against the test broker with `prefix`.
fn dead_letters(prefix: &str, brokers: &str, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(BIN)
        .arg("dead-letters")
        .args(args)
        .env("HOOKSTREAM__KAFKA__BROKERS", brokers)
        .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", prefix)
        .env(
            "HOOKSTREAM__DEAD_LETTER__REPLAY_GROUP",
            format!("{prefix}-replay"),
        )
        .output()
        .expect("hookstream runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn replay_writes_what_now_normalizes_to_its_topic_once_and_leaves_the_rest() {
    let brokers = test_brokers();
    let prefix = format!("replay-{}", unique_prefix());
    let app = TestApp {
        address: String::new(),
        port: 0,
        brokers: brokers.clone(),
        prefix: prefix.clone(),
        client: reqwest::Client::new(),
        sink: None,
    };
    let dead_letter_topic = app.dead_letter_topic();
    create_topic(&brokers, &dead_letter_topic).await;
    // A valid event an older hookstream could not normalize, written as hookstream writes them.
    let body = with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = "replayed-1".into()
    });
    let received_at = "1700000123456";
    produce_raw(
        &brokers,
        &dead_letter_topic,
        Some("replayed-1"),
        &body,
        &[
            ("hookstream-provider", "livesession"),
            ("hookstream-error", "invalid_payload"),
            ("hookstream-error-detail", "payload.event_name: missing"),
            ("hookstream-received-at", received_at),
            ("hookstream-event-id", "replayed-1"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    // And one that still does not.
    produce_raw(
        &brokers,
        &dead_letter_topic,
        None,
        b"still not json",
        &[
            ("hookstream-provider", "livesession"),
            ("hookstream-error", "invalid_json"),
            ("hookstream-error-detail", "the body is not valid JSON"),
            ("hookstream-received-at", received_at),
        ],
    )
    .await;
    let topic = app.topic("livesession", "js_error");

    let (ok, out, err) = dead_letters(&prefix, &brokers, &["replay", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("read 2, would replay 1, still failing 1 (invalid_json: 1)"),
        "{out}"
    );
    assert!(
        !app.own_topics().await.contains(&topic),
        "a dry run writes nothing"
    );

    let (ok, out, err) = dead_letters(&prefix, &brokers, &["replay"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("read 2, replayed 1, still failing 1 (invalid_json: 1)"),
        "{out} (a dry run commits nothing)"
    );
    let messages = app.read_messages(&topic, 1).await;
    let headers = headers_of(&messages[0]);
    assert_eq!(headers["hookstream-event-id"], "replayed-1");
    assert_eq!(headers["hookstream-provider"], "livesession");
    assert_eq!(headers["hookstream-event-name"], "js_error");
    assert_eq!(
        key_of(&messages[0]).as_deref(),
        Some("e4d5932d-4439-4546-a8da-a8d40bc053c6")
    );
    let record = decode(&messages[0]);
    assert_eq!(string(&record["event_id"]), "replayed-1");
    assert_eq!(
        record["received_at"],
        apache_avro::types::Value::TimestampMillis(1_700_000_123_456),
        "the original received_at"
    );

    let (ok, out, err) = dead_letters(&prefix, &brokers, &["replay"]);
    assert!(ok, "{err}");
    assert!(out.contains("read 0, replayed 0"), "{out}");
    app.read_messages(&topic, 1).await;

    let (ok, out, err) = dead_letters(
        &prefix,
        &brokers,
        &["replay", "--from-beginning", "--dry-run"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("read 2, would replay 1"), "{out}");

    let (ok, out, err) = dead_letters(&prefix, &brokers, &["list"]);
    assert!(ok, "{err}");
    let listed: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(listed.len(), 2, "{out}");
    assert_eq!(listed[0]["event_id"], "replayed-1");
    assert_eq!(listed[0]["received_at"], 1_700_000_123_456_i64);
    assert_eq!(listed[1]["error"], "invalid_json");
    assert_eq!(listed[1]["body"], "still not json");
}

#[test]
fn replay_exits_non_zero_on_a_broker_error() {
    let (ok, _, err) = dead_letters("unreachable", "127.0.0.1:1", &["replay"]);
    assert!(!ok);
    assert!(err.contains("hookstream dead-letters:"), "{err}");
}
