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
async fn an_event_name_that_is_not_a_string_is_dead_lettered_and_makes_no_topic() {
    let app = spawn_app().await;
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, &str, Edit, &str); 3] = [
        (
            "livesession",
            "js_error",
            |j| j["payload"]["event_name"] = 42.into(),
            "payload.event_name: expected a string, found a number",
        ),
        (
            "lasoexperience",
            "user_login",
            |j| j["event"] = serde_json::json!(["user_login"]),
            "event: expected a string, found an array",
        ),
        (
            "seismic",
            "email_v3",
            |j| j["version"] = 3.into(),
            "version: expected a string, found a number",
        ),
    ];
    for (provider, name, edit, says) in cases {
        let reply = app
            .post_signed(provider, with_json(&fixture(provider, name), edit))
            .await;
        let detail = assert_dead_lettered(&reply, "invalid_payload");
        assert_eq!(detail, says, "{provider}");
    }
    let topics = app.own_topics().await;
    assert!(
        topics
            .iter()
            .all(|t| t == &app.dead_letter_topic() || t.ends_with(".canary")),
        "only the dead-letter topic was written: {topics:?}"
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

#[tokio::test]
async fn a_redelivered_dead_letter_is_answered_dead_lettered_and_kept_once() {
    let app = spawn_app().await;
    let wrong = with_json(&fixture("livesession", "js_error"), |j| {
        j.as_object_mut().expect("object").remove("payload");
    });
    let first = post_with_content_type(&app, "livesession", wrong.clone()).await;
    let detail = assert_dead_lettered(&first, "invalid_payload");
    let again = post_with_content_type(&app, "livesession", wrong).await;
    assert_eq!(assert_dead_lettered(&again, "invalid_payload"), detail);
    // Unreadable bodies have no event id to remember: each is kept.
    for _ in 0..2 {
        let reply = post_with_content_type(&app, "livesession", b"not json".to_vec()).await;
        assert_dead_lettered(&reply, "invalid_json");
    }
    let messages = app.read_messages(&app.dead_letter_topic(), 3).await;
    let with_id = messages.iter().filter(|m| key_of(m).is_some()).count();
    assert_eq!(with_id, 1, "one letter for the event id");
    assert_eq!(
        app.metric(
            "hookstream_webhooks_duplicates_total",
            "provider=\"livesession\""
        )
        .await,
        1.0
    );
}

/// How a `hookstream dead-letters` run ended.
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

/// Runs `hookstream dead-letters ARGS` against `brokers` with `prefix`, the providers in
/// `enabled` having the test secret, and `env` on top.
fn dead_letters_with(
    prefix: &str,
    brokers: &str,
    enabled: &[&str],
    env: &[(&str, &str)],
    args: &[&str],
) -> Run {
    let mut command = std::process::Command::new(BIN);
    command
        .arg("dead-letters")
        .args(args)
        .env("HOOKSTREAM__KAFKA__BROKERS", brokers)
        .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", prefix)
        .env(
            "HOOKSTREAM__DEAD_LETTER__REPLAY_GROUP",
            format!("{prefix}-replay"),
        );
    for provider in enabled {
        command.env(
            format!(
                "HOOKSTREAM__PROVIDERS__{}__SECRETS",
                provider.to_uppercase()
            ),
            SECRET,
        );
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("hookstream runs");
    Run {
        code: output.status.code(),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn dead_letters(prefix: &str, brokers: &str, args: &[&str]) -> Run {
    dead_letters_with(prefix, brokers, &["livesession"], &[], args)
}

/// A test app record for a prefix of the test's own (no server: the test writes dead letters
/// itself, as an older hookstream would have).
async fn replay_app() -> TestApp {
    let brokers = test_brokers();
    let prefix = format!("replay-{}", unique_prefix());
    let app = TestApp::reading(&brokers, &prefix);
    create_topic(&brokers, &app.dead_letter_topic()).await;
    app
}

const RECEIVED_AT: &str = "1700000123456";

/// Writes a dead letter as hookstream writes them: a valid `fixture` body of `provider` whose
/// event id is set to `id` (under `id_field`).
async fn dead_letter_of(
    app: &TestApp,
    provider: &str,
    fixture_name: &str,
    id_field: &str,
    id: &str,
) {
    let body = with_json(&fixture(provider, fixture_name), |j| {
        j[id_field] = id.into()
    });
    produce_raw(
        &app.brokers,
        &app.dead_letter_topic(),
        Some(id),
        &body,
        &[
            ("hookstream-provider", provider),
            ("hookstream-error", "invalid_payload"),
            (
                "hookstream-error-detail",
                "an older hookstream could not read it",
            ),
            ("hookstream-received-at", RECEIVED_AT),
            ("hookstream-event-id", id),
            ("content-type", "application/json"),
        ],
    )
    .await;
}

async fn unreadable_dead_letter(app: &TestApp) {
    produce_raw(
        &app.brokers,
        &app.dead_letter_topic(),
        None,
        b"still not json",
        &[
            ("hookstream-provider", "livesession"),
            ("hookstream-error", "invalid_json"),
            ("hookstream-error-detail", "the body is not valid JSON"),
            ("hookstream-received-at", RECEIVED_AT),
        ],
    )
    .await;
}

#[tokio::test]
async fn replay_writes_what_now_normalizes_to_its_topic_once_and_keeps_the_rest_for_the_next() {
    let app = replay_app().await;
    let brokers = app.brokers.clone();
    let prefix = app.prefix.clone();
    // A valid event an older hookstream could not normalize, and one that still does not.
    dead_letter_of(&app, "livesession", "js_error", "message_id", "replayed-1").await;
    unreadable_dead_letter(&app).await;
    let topic = app.topic("livesession", "js_error");

    let run = dead_letters(&prefix, &brokers, &["replay", "--dry-run"]);
    assert_eq!(
        run.code,
        Some(3),
        "not everything would be replayed: {}",
        run.err
    );
    assert!(
        run.out.contains(&format!(
            "read 2, would replay 1 ({topic}: 1), still failing 1 (invalid_json: 1)"
        )),
        "{}",
        run.out
    );
    assert!(
        !app.own_topics().await.contains(&topic),
        "a dry run writes nothing"
    );

    let run = dead_letters(&prefix, &brokers, &["replay"]);
    assert_eq!(run.code, Some(3), "{}", run.err);
    assert!(
        run.out.contains(&format!(
            "read 2, replayed 1 ({topic}: 1), still failing 1 (invalid_json: 1)"
        )),
        "{} (a dry run commits nothing)",
        run.out
    );
    assert!(
        run.err.contains("stay in the dead-letter topic"),
        "{}",
        run.err
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

    // The letter that still fails was written again at the end; the next replay reads only it.
    let run = dead_letters(&prefix, &brokers, &["replay"]);
    assert_eq!(run.code, Some(3), "{}", run.err);
    assert!(
        run.out
            .contains("read 1, replayed 0, still failing 1 (invalid_json: 1)"),
        "{}",
        run.out
    );
    app.read_messages(&topic, 1).await;

    let run = dead_letters(&prefix, &brokers, &["list"]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    let listed: Vec<serde_json::Value> = run
        .out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(listed.len(), 4, "{}", run.out);
    assert_eq!(listed[0]["event_id"], "replayed-1");
    assert_eq!(listed[0]["received_at"], 1_700_000_123_456_i64);
    assert_eq!(listed[1]["error"], "invalid_json");
    assert_eq!(listed[1]["body"], "still not json");
    for (copy, attempts) in [(&listed[2], 1), (&listed[3], 2)] {
        assert_eq!(copy["body"], "still not json");
        assert_eq!(copy["error"], "invalid_json");
        assert_eq!(copy["replay_attempts"], attempts);
        assert_eq!(copy["received_at"], 1_700_000_123_456_i64, "kept");
    }

    // From the beginning: the replayed event is written again (consumers dedupe by event_id);
    // letters the group already read are not written back a second time.
    let run = dead_letters(&prefix, &brokers, &["replay", "--from-beginning"]);
    assert_eq!(run.code, Some(3), "{}", run.err);
    assert!(
        run.out.contains(&format!(
            "read 4, replayed 1 ({topic}: 1), still failing 3 (invalid_json: 3)"
        )),
        "{}",
        run.out
    );
    app.read_messages(&topic, 2).await;
    app.read_messages(&app.dead_letter_topic(), 5).await;
}

#[tokio::test]
async fn replay_skips_letters_of_a_disabled_provider_until_it_is_enabled_again() {
    let app = replay_app().await;
    let (brokers, prefix) = (app.brokers.clone(), app.prefix.clone());
    dead_letter_of(&app, "seismic", "email_v3", "id", "seismic-1").await;
    let topic = app.topic("seismic", "email");

    for _ in 0..2 {
        let run = dead_letters(&prefix, &brokers, &["replay"]);
        assert_eq!(run.code, Some(3), "{}", run.err);
        assert!(
            run.out
                .contains("read 1, replayed 0, still failing 0, skipped (provider disabled) 1"),
            "{}",
            run.out
        );
        assert!(
            !app.own_topics().await.contains(&topic),
            "nothing written for a disabled provider"
        );
    }

    let run = dead_letters_with(&prefix, &brokers, &["seismic"], &[], &["replay"]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(
        run.out
            .contains(&format!("read 1, replayed 1 ({topic}: 1), still failing 0")),
        "{}",
        run.out
    );
    let messages = app.read_messages(&topic, 1).await;
    assert_eq!(string(&decode(&messages[0])["event_id"]), "seismic-1");
    let run = dead_letters_with(&prefix, &brokers, &["seismic"], &[], &["replay"]);
    assert!(run.out.contains("read 0, replayed 0"), "{}", run.out);
}

#[tokio::test]
async fn replay_of_large_letters_finishes_through_a_small_producer_queue() {
    let app = replay_app().await;
    let (brokers, prefix) = (app.brokers.clone(), app.prefix.clone());
    let letters = 8;
    for i in 0..letters {
        let id = format!("large-{i}");
        let body = with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = id.clone().into();
            j["payload"]["value"] = "x".repeat(300 * 1024).into();
        });
        produce_raw(
            &brokers,
            &app.dead_letter_topic(),
            Some(&id),
            &body,
            &[
                ("hookstream-provider", "livesession"),
                ("hookstream-error", "invalid_payload"),
                (
                    "hookstream-error-detail",
                    "an older hookstream could not read it",
                ),
                ("hookstream-received-at", RECEIVED_AT),
                ("hookstream-event-id", &id),
            ],
        )
        .await;
    }
    // A producer queue of 1 MiB holds three of these records at most.
    let config = temp_dir("small-queue");
    std::fs::write(
        config.join("default.toml"),
        "[kafka.options]\n\"queue.buffering.max.kbytes\" = \"1024\"\n",
    )
    .expect("config written");
    let config_dir = config.to_string_lossy().into_owned();
    let run = dead_letters_with(
        &prefix,
        &brokers,
        &["livesession"],
        &[("HOOKSTREAM_CONFIG_DIR", &config_dir)],
        &["replay"],
    );
    assert_eq!(run.code, Some(0), "{}{}", run.out, run.err);
    assert!(
        run.out
            .contains(&format!("read {letters}, replayed {letters}")),
        "{}",
        run.out
    );
    let messages = app
        .read_messages(&app.topic("livesession", "js_error"), letters)
        .await;
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| headers_of(m)["hookstream-event-id"].clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), letters, "each once");
}

#[test]
fn replay_exits_non_zero_on_a_broker_error() {
    let run = dead_letters("unreachable", "127.0.0.1:1", &["replay"]);
    assert_eq!(run.code, Some(1));
    assert!(run.err.contains("hookstream dead-letters:"), "{}", run.err);
}

#[tokio::test]
async fn a_dry_run_forecasts_duplicates_and_list_and_replay_take_one_provider() {
    let app = replay_app().await;
    let (brokers, prefix) = (app.brokers.clone(), app.prefix.clone());
    // Two letters of one event (a redelivery kept twice), and one of another provider.
    dead_letter_of(&app, "livesession", "js_error", "message_id", "twice").await;
    dead_letter_of(&app, "livesession", "js_error", "message_id", "twice").await;
    dead_letter_of(&app, "seismic", "email_v3", "id", "seismic-2").await;
    let enabled = ["livesession", "seismic"];

    let dry = dead_letters_with(&prefix, &brokers, &enabled, &[], &["replay", "--dry-run"]);
    assert!(
        dry.out.contains("read 3, would replay 2 (") && dry.out.contains("already written 1"),
        "the dry run sees the second copy as what the real run will make of it: {}",
        dry.out
    );

    let listed = dead_letters_with(
        &prefix,
        &brokers,
        &enabled,
        &[],
        &["list", "--provider", "seismic"],
    );
    assert_eq!(listed.code, Some(0), "{}", listed.err);
    assert_eq!(listed.out.lines().count(), 1, "{}", listed.out);
    assert!(listed.out.contains("seismic-2"), "{}", listed.out);

    let run = dead_letters_with(
        &prefix,
        &brokers,
        &enabled,
        &[],
        &["replay", "--provider", "livesession"],
    );
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(
        run.out.contains(&format!(
            "read 3, replayed 1 ({}: 1), already written 1, still failing 0, left as they were (other providers) 1",
            app.topic("livesession", "js_error")
        )),
        "{}",
        run.out
    );
    // The seismic letter is still pending, as it was: the next replay of it writes it.
    let pending = dead_letters_with(&prefix, &brokers, &enabled, &[], &["list", "--pending"]);
    let pending: Vec<serde_json::Value> = pending
        .out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["event_id"], "seismic-2");
    assert_eq!(pending[0]["replay_attempts"], 0);
    assert!(pending[0]["replay_error"].is_null());
    let run = dead_letters_with(&prefix, &brokers, &enabled, &[], &["replay"]);
    assert_eq!(run.code, Some(0), "{}", run.err);
    assert!(run.out.contains("read 1, replayed 1 ("), "{}", run.out);
}

/// The command `send` printed after `label` (`list it:`), as arguments after `hookstream`.
fn printed_command(err: &str, label: &str) -> Vec<String> {
    let line = err
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in:\n{err}"));
    let command = line.split('(').next().unwrap_or_default();
    let mut words = command.split_whitespace().map(str::to_string);
    assert_eq!(words.next().as_deref(), Some("hookstream"), "{line}");
    words.collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn send_explains_a_dead_letter_with_its_error_exits_3_and_names_commands_that_work() {
    let app = spawn_app().await;
    let dir = temp_dir("send-dead-letter");
    let file = dir.join("no_payload.json");
    let body = with_json(&fixture("livesession", "js_error"), |j| {
        j.as_object_mut().expect("object").remove("payload");
    });
    std::fs::write(&file, &body).expect("written");
    let command = |args: &[String]| {
        let mut command = std::process::Command::new(BIN);
        command
            .args(args)
            .env("HOOKSTREAM__KAFKA__BROKERS", &app.brokers)
            .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &app.prefix)
            .env("HOOKSTREAM__PROVIDERS__LIVESESSION__SECRETS", SECRET);
        command
    };
    let send = [
        "send".to_string(),
        "--url".to_string(),
        format!("{}/webhooks/livesession", app.address),
        file.display().to_string(),
    ];
    let (code, out, err) = run_off_runtime(command(&send)).await;
    assert_eq!(code, Some(3), "{out}{err}");
    let answer: serde_json::Value =
        serde_json::from_str(out.trim().strip_prefix("200 ").expect("200")).expect("JSON");
    assert_eq!(answer["status"], "dead_lettered", "{out}");
    let detail = answer["detail"].as_str().expect("detail");
    assert!(
        err.contains(&format!(
            "kept as a dead letter (invalid_payload: {detail})"
        )),
        "{err}"
    );
    assert!(!err.contains("which is not accepted"), "{err}");
    let letters = app.read_messages(&app.dead_letter_topic(), 1).await;
    assert_eq!(letters[0].payload(), Some(body.as_slice()));

    // The commands it names run as printed, and find the letter.
    let list = printed_command(&err, "list it:");
    let (code, out, err_list) = run_off_runtime(command(&list)).await;
    assert_eq!(code, Some(0), "{list:?}: {err_list}");
    let listed: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(listed.len(), 1, "{out}");
    assert_eq!(listed[0]["error"], "invalid_payload", "{out}");
    let mut replay = printed_command(&err, "replay it:");
    replay.push("--dry-run".into());
    let (code, out, err_replay) = run_off_runtime(command(&replay)).await;
    assert_eq!(code, Some(3), "{replay:?}: {out}{err_replay}");
    assert!(out.contains("read 1"), "{out}");
}
