//! A provider defined in nothing but a configuration file (no preset, no code): the real binary
//! reads it, and its deliveries take the whole path — accepted and read back, a duplicate, a
//! body of the wrong shape dead-lettered and replayed once the file is fixed, a wrong signature,
//! metrics under its name.

use crate::support::process::Hookstream;
use crate::support::*;
use apache_avro::types::Value;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

const ACME_SECRET: &str = "acme-signing-secret";

/// The definition, with `event_name` as given (the vendor later renames `kind` to `type`).
fn config(event_name: &str) -> String {
    format!(
        r#"
[providers.acme]
secrets = "acme-previous-secret, {ACME_SECRET}"
ping_events = ["ping"]

[providers.acme.signature]
scheme = "hmac"
header = "X-Acme-Signature"
algorithm = "sha512"
encoding = "base64"
prefix = "v1="
signed_content = "{{header:x-acme-timestamp}}.{{body}}"
timestamp_header = "x-acme-timestamp"

[providers.acme.fields]
event_name = {event_name}
event_id = "/id"
event_time = "/occurred_at"
event_time_format = "ms"
subject = ["/customer/id", "/customer/email"]
account_id = "header:x-acme-account"
source_id = "const:acme-production"
attributes = ["/details"]

[providers.acme.fields.user]
email = "/customer/email"

[providers.acme.fields.geo]
country_code = "/customer/country"
"#
    )
}

fn config_dir(label: &str, event_name: &str) -> std::path::PathBuf {
    let dir = temp_dir(label);
    std::fs::write(dir.join("default.toml"), config(event_name)).expect("config file");
    dir
}

/// The headers Acme sends: the time, and `v1=` + base64 HMAC-SHA512 of `{time}.{body}`,
/// computed here rather than by hookstream.
fn acme_headers(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .to_string();
    let mut mac = <Hmac<sha2::Sha512> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(&[time.as_bytes(), b".", body].concat());
    let tag = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    vec![
        ("x-acme-timestamp".into(), time),
        ("x-acme-signature".into(), format!("v1={tag}")),
        ("x-acme-account".into(), "tenant-7".into()),
    ]
}

async fn post(h: &Hookstream, body: &[u8], headers: &[(String, String)]) -> Reply {
    let mut request = reqwest::Client::new()
        .post(h.webhook_url("acme"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    Reply::read(request).await
}

fn order(kind_key: &str, kind: &str, id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        kind_key: kind,
        "id": id,
        "occurred_at": 1_700_000_000_123_i64,
        "customer": {"id": "c-9", "email": "c@example.com", "country": "PL"},
        "details": {"total": 12.5, "items": 2, "coupon": null}
    }))
    .expect("JSON")
}

fn replay(config_dir: &Path, brokers: &str, prefix: &str) -> std::process::Output {
    dead_letters(config_dir, brokers, prefix, &["replay"])
}

fn dead_letters(
    config_dir: &Path,
    brokers: &str,
    prefix: &str,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("dead-letters")
        .args(args)
        .env("HOOKSTREAM_CONFIG_DIR", config_dir)
        .env("HOOKSTREAM__KAFKA__BROKERS", brokers)
        .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", prefix)
        .env(
            "HOOKSTREAM__DEAD_LETTER__REPLAY_GROUP",
            format!("{prefix}-replay"),
        )
        .output()
        .expect("hookstream runs")
}

#[tokio::test]
async fn a_provider_defined_only_in_a_config_file_takes_the_whole_path() {
    let brokers = test_brokers();
    let prefix = unique_prefix();
    let dir = config_dir(&format!("{prefix}-config"), "\"/kind\"");
    let dir_text = dir.display().to_string();
    let h = Hookstream::start_with(
        &brokers,
        &prefix,
        &[("HOOKSTREAM_CONFIG_DIR", dir_text.as_str())],
    )
    .await;
    let topic = format!("{prefix}.acme.order_created");

    // Accepted, and read back from the broker with the mapped fields.
    let body = order("kind", "order.created", "ord-1");
    let reply = post(&h, &body, &acme_headers(ACME_SECRET, &body)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["status"], "accepted", "{}", reply.text);
    assert_eq!(reply.json()["topic"], topic.as_str());
    let messages = read_blocking(&brokers, &topic, 1);
    let record = decode(&messages[0]);
    assert_eq!(string(&record["provider"]), "other");
    assert_eq!(string(&record["provider_name"]), "acme");
    assert_eq!(string(&record["event_name"]), "order_created");
    assert_eq!(string(&record["event_id"]), "ord-1");
    assert_eq!(
        record["event_time"],
        Value::TimestampMillis(1_700_000_000_123)
    );
    assert_eq!(key_of(&messages[0]).as_deref(), Some("c-9"));
    assert_eq!(
        nullable_string(&record["account_id"]).as_deref(),
        Some("tenant-7")
    );
    assert_eq!(
        nullable_string(&record["source_id"]).as_deref(),
        Some("acme-production")
    );
    let Value::Union(1, user) = &record["user"] else {
        panic!("a user: {:?}", record["user"])
    };
    assert!(format!("{user:?}").contains("c@example.com"));
    let Value::Map(attributes) = &record["attributes"] else {
        panic!("attributes")
    };
    assert_eq!(
        attributes["total"],
        Value::Union(3, Box::new(Value::Double(12.5)))
    );
    assert_eq!(
        attributes["items"],
        Value::Union(2, Box::new(Value::Long(2)))
    );
    assert_eq!(headers_of(&messages[0])["hookstream-provider"], "acme");

    // The same delivery again: a duplicate, nothing written.
    let again = post(&h, &body, &acme_headers(ACME_SECRET, &body)).await;
    assert_eq!(again.json()["status"], "duplicate", "{}", again.text);

    // The vendor renames `kind` to `type`: kept as a dead letter, with the header it needs.
    let renamed = order("type", "order.shipped", "ord-2");
    let reply = post(&h, &renamed, &acme_headers(ACME_SECRET, &renamed)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["status"], "dead_lettered", "{}", reply.text);
    assert!(
        reply
            .detail()
            .contains("/kind: missing (fields.event_name)"),
        "{}",
        reply.text
    );

    // An event name that is a number: the wrong shape, kept as a dead letter — never a topic
    // `webhooks.acme.42`.
    let numeric = order("kind", "order.created", "ord-4");
    let numeric = with_json(&numeric, |j| j["kind"] = 42.into());
    let reply = post(&h, &numeric, &acme_headers(ACME_SECRET, &numeric)).await;
    assert_eq!(reply.json()["status"], "dead_lettered", "{}", reply.text);
    assert_eq!(reply.json()["error"], "invalid_payload", "{}", reply.text);
    assert!(
        reply
            .detail()
            .contains("/kind: expected a string, found a number (fields.event_name)"),
        "{}",
        reply.text
    );

    // Signed with a secret it does not have: 401, nothing written.
    let forged = order("kind", "order.created", "ord-3");
    let reply = post(&h, &forged, &acme_headers("not-acme", &forged)).await;
    reply.assert_error(401, "invalid_signature");

    // Metrics under its name.
    for (metric, labels, count) in [
        (
            "hookstream_webhooks_accepted_total",
            "provider=\"acme\"",
            1.0,
        ),
        (
            "hookstream_webhooks_duplicates_total",
            "provider=\"acme\"",
            1.0,
        ),
        (
            "hookstream_webhooks_dead_lettered_total",
            "provider=\"acme\"",
            2.0,
        ),
        (
            "hookstream_webhooks_rejected_total",
            "provider=\"acme\",reason=\"invalid_signature\"",
            1.0,
        ),
        (
            "hookstream_kafka_messages_produced_total",
            "event_name=\"order_created\",provider=\"acme\"",
            1.0,
        ),
    ] {
        assert_eq!(
            h.metric(metric, labels).await,
            count,
            "{metric}{{{labels}}}"
        );
    }
    read_blocking(&brokers, &topic, 1);

    // A replay run with a configuration that does not define acme (not the server's): nothing
    // is tried, no attempt is counted, and the summary asks.
    let defaults = temp_dir(&format!("{prefix}-defaults"));
    std::fs::copy("config/default.toml", defaults.join("default.toml")).expect("copied");
    let run = replay(&defaults, &brokers, &prefix);
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(3), "{out}");
    assert!(
        out.contains("skipped (provider not configured) 2")
            && out.contains("is this the server's configuration?"),
        "{out}"
    );

    // The configuration is fixed (either name), and the dead letter replayed through it; the
    // one whose event name is a number still fails.
    let fixed = config_dir(&format!("{prefix}-fixed"), "[\"/kind\", \"/type\"]");
    let run = replay(&fixed, &brokers, &prefix);
    let out = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(3),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains(&format!(
            "read 2, replayed 1 ({prefix}.acme.order_shipped: 1), still failing 1 (invalid_payload: 1)"
        )),
        "{out}"
    );
    // The letter written back keeps the error it arrived with; the replay's reason is beside it.
    let listed = dead_letters(&fixed, &brokers, &prefix, &["list", "--pending"]);
    let letters: Vec<serde_json::Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["error"], "invalid_payload");
    assert_eq!(
        letter["detail"],
        "/kind: expected a string, found a number (fields.event_name)"
    );
    assert_eq!(letter["replay_error"], "invalid_payload");
    assert_eq!(
        letter["replay_attempts"], 1,
        "the unconfigured run counted none"
    );
    let shipped = read_blocking(&brokers, &format!("{prefix}.acme.order_shipped"), 1);
    let record = decode(&shipped[0]);
    assert_eq!(string(&record["event_id"]), "ord-2");
    assert_eq!(
        nullable_string(&record["account_id"]).as_deref(),
        Some("tenant-7"),
        "the header kept with the dead letter is read by the replay"
    );
}

#[tokio::test]
async fn a_configured_provider_with_a_mistake_stops_startup_naming_the_key() {
    let prefix = unique_prefix();
    let dir = config_dir(&format!("{prefix}-bad"), "\"kind\"");
    let output = std::process::Command::new(BIN)
        .args(["config", "check"])
        .env("HOOKSTREAM_CONFIG_DIR", &dir)
        .output()
        .expect("hookstream runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`providers.acme.fields.event_name`") && err.contains("JSON pointer"),
        "{err}"
    );
    assert!(!err.contains(ACME_SECRET), "{err}");
}

#[tokio::test]
async fn a_preset_is_enabled_from_the_environment_with_two_variables() {
    let brokers = test_brokers();
    let prefix = unique_prefix();
    let h = Hookstream::start_with(
        &brokers,
        &prefix,
        &[
            ("HOOKSTREAM__PROVIDERS__BILLING__PRESET", "stripe"),
            (
                "HOOKSTREAM__PROVIDERS__BILLING__SECRETS",
                "whsec_env_secret",
            ),
        ],
    )
    .await;
    let body = fixture("stripe", "payment_intent_succeeded");
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"whsec_env_secret").expect("key");
    mac.update(&[t.to_string().as_bytes(), b".", &body].concat());
    let signature = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    let reply = Reply::read(
        reqwest::Client::new()
            .post(h.webhook_url("billing"))
            .header("content-type", "application/json")
            .header("Stripe-Signature", signature)
            .body(body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let topic = format!("{prefix}.billing.payment_intent_succeeded");
    let messages = read_blocking(&brokers, &topic, 1);
    assert_eq!(string(&decode(&messages[0])["provider_name"]), "billing");
    assert_eq!(key_of(&messages[0]).as_deref(), Some("cus_NffrFeUfNV2Hib"));
}
