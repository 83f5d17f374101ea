//! Several replicas, one stream: deduplication shared on a real Redis, across processes and
//! restarts, and what a delivery gets when Redis cannot be asked.

use crate::support::process::{serve_refused, Hookstream};
use crate::support::proxy::{Fault, ProxiedBroker};
use crate::support::*;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The environment of a replica deduplicating on `redis` under `key_prefix`.
pub(crate) fn redis_env<'a>(redis: &'a str, key_prefix: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("HOOKSTREAM__DEDUPE__BACKEND", "redis"),
        ("HOOKSTREAM__DEDUPE__REDIS__URL", redis),
        ("HOOKSTREAM__DEDUPE__REDIS__KEY_PREFIX", key_prefix),
    ]
}

pub(crate) fn js_error(id: &str) -> Vec<u8> {
    with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = id.into()
    })
}

/// Posts a signed LiveSession body to a replica; (status, "status" or "error" of the answer).
pub(crate) async fn deliver(
    client: &reqwest::Client,
    replica: &Hookstream,
    body: Vec<u8>,
) -> (u16, String) {
    post_signed_to(client, &replica.url(), body).await
}

/// Posts a LiveSession body signed with the processes' secret to `url`; (status, "status" or
/// "error" of the answer, or `(0, "no answer")`).
pub(crate) async fn post_signed_to(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let Ok(response) = send_signed(client, url, body).await else {
        return (0, "no answer".into());
    };
    let status = response.status().as_u16();
    let json: serde_json::Value = response.json().await.unwrap_or_default();
    let what = json["status"]
        .as_str()
        .or_else(|| json["error"].as_str())
        .unwrap_or_default()
        .to_string();
    (status, what)
}

/// Posts a LiveSession body signed with the processes' secret to `url`: the whole response.
pub(crate) async fn send_signed(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> reqwest::Result<reqwest::Response> {
    let scheme = hookstream::providers::built_in("livesession")
        .expect("provider")
        .signature();
    let signature = scheme.sign_value(&body, &hookstream::signature::Secret::new(SECRET));
    client
        .post(url)
        .header("content-type", "application/json")
        .header(scheme.primary_header(), signature)
        .body(body)
        .send()
        .await
}

/// A view of the replicas' shared topics for reading records back.
fn topics(prefix: &str) -> TestApp {
    TestApp::reading(&test_brokers(), prefix)
}

fn ids_of(messages: &[rdkafka::message::OwnedMessage]) -> HashMap<String, usize> {
    let mut copies = HashMap::new();
    for m in messages {
        *copies
            .entry(headers_of(m)["hookstream-event-id"].clone())
            .or_default() += 1;
    }
    copies
}

#[tokio::test]
async fn three_replicas_write_each_delivery_once_and_answer_the_others_duplicate() {
    let redis = test_redis();
    let prefix = unique_prefix();
    let env = redis_env(&redis, &prefix);
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Hookstream::start_with(&test_brokers(), &prefix, &env).await);
    }
    let client = reqwest::Client::new();
    for i in 0..20 {
        let body = js_error(&format!("fleet-{i}"));
        let answers = futures_util::future::join_all(
            replicas
                .iter()
                .map(|replica| deliver(&client, replica, body.clone())),
        )
        .await;
        let mut kinds: Vec<&str> = answers.iter().map(|(_, k)| k.as_str()).collect();
        kinds.sort();
        assert_eq!(
            kinds,
            ["accepted", "duplicate", "duplicate"],
            "delivery {i}: {answers:?}"
        );
        assert!(
            answers.iter().all(|(status, _)| *status == 200),
            "{answers:?}"
        );
    }
    // Accepted by one replica, then redelivered to the other two.
    let body = js_error("fleet-redelivered");
    assert_eq!(
        deliver(&client, &replicas[0], body.clone()).await.1,
        "accepted"
    );
    for replica in &replicas[1..] {
        assert_eq!(deliver(&client, replica, body.clone()).await.1, "duplicate");
    }
    let view = topics(&prefix);
    let messages = view
        .read_messages(&view.topic("livesession", "js_error"), 21)
        .await;
    let copies = ids_of(&messages);
    assert_eq!(copies.len(), 21);
    assert!(copies.values().all(|n| *n == 1), "{copies:?}");
}

#[tokio::test]
async fn an_id_accepted_before_a_restart_is_a_duplicate_after_it() {
    let redis = test_redis();
    let prefix = unique_prefix();
    let mut replica =
        Hookstream::start_with(&test_brokers(), &prefix, &redis_env(&redis, &prefix)).await;
    let client = reqwest::Client::new();
    let body = js_error("before-restart");
    assert_eq!(deliver(&client, &replica, body.clone()).await.1, "accepted");
    replica.signal("KILL");
    replica.wait_exit(Duration::from_secs(10)).await;
    replica.restart().await;
    assert_eq!(
        deliver(&client, &replica, body).await.1,
        "duplicate",
        "the restarted replica remembers through Redis"
    );
}

#[tokio::test]
async fn a_claim_whose_replica_died_is_written_once_by_another_within_one_claim_expiry() {
    let redis = test_redis();
    let prefix = unique_prefix();
    let proxied = ProxiedBroker::start().await;
    let mut env = redis_env(&redis, &prefix);
    env.push(("HOOKSTREAM__KAFKA__ACK_TIMEOUT", "3s"));
    let mut a = Hookstream::start_with(&proxied.brokers(), &prefix, &env).await;
    let b = Hookstream::start_with(&proxied.brokers(), &prefix, &env).await;
    let client = reqwest::Client::new();
    for (replica, id) in [(&a, "warm-a"), (&b, "warm-b")] {
        assert_eq!(deliver(&client, replica, js_error(id)).await.0, 200);
    }

    // A claims the id, and its write is never acknowledged: A dies holding the claim.
    proxied.set(Fault::StallProduce);
    let stuck = {
        let (client, url, body) = (client.clone(), a.url(), js_error("orphan"));
        let scheme = hookstream::providers::built_in("livesession")
            .expect("provider")
            .signature();
        let signature = scheme.sign_value(&body, &hookstream::signature::Secret::new(SECRET));
        tokio::spawn(async move {
            client
                .post(url)
                .header(scheme.primary_header(), signature)
                .body(body)
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(10)).await;
    let killed = Instant::now();
    assert!(stuck.await.expect("task").is_err(), "A never answered");
    proxied.set(Fault::None);

    // The provider retries on B until it is answered 200.
    let mut answers = Vec::new();
    let accepted_after = loop {
        let (status, kind) = deliver(&client, &b, js_error("orphan")).await;
        answers.push((status, kind.clone()));
        assert_ne!(
            kind, "duplicate",
            "a duplicate before any record exists: {answers:?}"
        );
        if status == 200 {
            break killed.elapsed();
        }
        assert_eq!(status, 503, "{answers:?}");
        assert!(killed.elapsed() < Duration::from_secs(30), "{answers:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The claim expires 3 s (ack_timeout) + 2 s after A took it; a retry may be waiting for it.
    assert!(
        accepted_after < Duration::from_secs(5) + Duration::from_secs(3) + Duration::from_secs(1),
        "written {accepted_after:?} after the kill: {answers:?}"
    );
    assert_eq!(
        deliver(&client, &b, js_error("orphan")).await.1,
        "duplicate"
    );
    let view = TestApp::reading(&proxied.brokers(), &prefix);
    let messages = view
        .read_messages(&view.topic("livesession", "js_error"), 3)
        .await;
    assert_eq!(
        ids_of(&messages).get("orphan"),
        Some(&1),
        "the event landed once"
    );
}

#[tokio::test]
async fn with_redis_unreachable_write_mode_writes_and_counts_while_reject_mode_answers_503() {
    let unreachable = "redis://:unreachable-secret@127.0.0.1:1";
    let write = spawn_app_with(|s| {
        s.dedupe.backend = hookstream::configuration::DedupeBackend::Redis;
        s.dedupe.redis.url = unreachable.to_string().into();
    })
    .await;
    let reply = write
        .post_signed("livesession", js_error("redis-down-write"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        write
            .metric("hookstream_dedupe_errors_total", "operation=\"claim\"")
            .await
            >= 1.0
    );
    assert_eq!(wait_for_status(&write, "/readyz", 200).await.status, 200);

    let reject = spawn_app_with(|s| {
        s.dedupe.backend = hookstream::configuration::DedupeBackend::Redis;
        s.dedupe.redis.url = unreachable.to_string().into();
        s.dedupe.redis.on_unavailable = hookstream::configuration::OnUnavailable::Reject;
    })
    .await;
    let reply = reject
        .post_signed("livesession", js_error("redis-down-reject"))
        .await;
    let detail = reply.assert_error(503, "dedupe_unavailable");
    assert!(reply.headers.contains_key("retry-after"));
    assert!(!detail.contains("unreachable-secret"), "{detail}");
    reject.assert_nothing_produced().await;
    wait_for_error(&reject, "/readyz", 503, "dedupe_unavailable")
        .await
        .assert_error(503, "dedupe_unavailable");
}

#[tokio::test]
async fn a_redis_password_never_appears_in_the_log() {
    let prefix = unique_prefix();
    let password = "pw-that-must-not-leak";
    let url = format!("redis://default:{password}@127.0.0.1:1/0");
    let mut env = redis_env(&url, &prefix);
    env.push(("HOOKSTREAM__LOG__LEVEL", "debug"));
    let replica = Hookstream::start_with(&test_brokers(), &prefix, &env).await;
    let client = reqwest::Client::new();
    for i in 0..3 {
        assert_eq!(
            deliver(&client, &replica, js_error(&format!("leak-{i}")))
                .await
                .0,
            200
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = replica.log();
    assert!(
        log.contains("deduplication store call failed"),
        "the failures were logged: {log}"
    );
    assert!(!log.contains(password), "{log}");

    // Nor in a configuration error.
    let (code, stderr) = serve_refused(
        &[],
        &[
            ("HOOKSTREAM__DEDUPE__BACKEND", "redis"),
            (
                "HOOKSTREAM__DEDUPE__REDIS__URL",
                &format!("http://user:{password}@host"),
            ),
        ],
    );
    assert!(code != Some(0));
    assert!(stderr.contains("dedupe.redis.url"), "{stderr}");
    assert!(!stderr.contains(password), "{stderr}");
}
