//! Production Kafka through the real binary: a cluster that requires SASL (SCRAM-SHA-512), TLS
//! and a client certificate (Tansu behind stunnel, [`crate::support::secured`]). Webhooks are
//! written and read back through it; the password comes from the environment and is printed
//! nowhere; a refused password and a failed handshake are named as such at once, everywhere;
//! a client certificate replaced on disk is used without a restart.
//!
//! A note on what these prove: in Tansu 0.6.0 a wrong password is stopped by librdkafka on the
//! broker's error token, not by Tansu itself, so the wrong-password test proves hookstream's
//! handling of the failure rather than the broker's strictness. The TLS failures are stunnel's
//! (OpenSSL's) for real.

use crate::replicas::{deliver, js_error, post_signed_to, send_signed};
use crate::spool::start;
use crate::spool_integrity::wait_ready;
use crate::support::process::Hookstream;
use crate::support::secured::{SecuredCluster, PASSWORD};
use crate::support::*;
use std::time::{Duration, Instant};

/// The configuration `options` as `env` (the name of its TOML file), pointed at by the
/// variables of the returned list (with `password` as `KAFKA_PASSWORD`), plus `prefix`.
fn configured(
    cluster: &SecuredCluster,
    env: &str,
    options: &[(&str, String)],
    password: &str,
    prefix: &str,
) -> Vec<(&'static str, String)> {
    let dir = cluster.config_dir(env, options);
    let mut vars = SecuredCluster::config_env(&dir, env, password);
    vars.push(("HOOKSTREAM__KAFKA__TOPIC_PREFIX", prefix.into()));
    vars
}

/// `/readyz` as (status, detail).
async fn readyz(replica: &Hookstream) -> (u16, String) {
    let answer = reqwest::get(replica.admin_url("/readyz"))
        .await
        .expect("readyz answers");
    let status = answer.status().as_u16();
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn sasl_ssl_with_scram_512_and_a_client_certificate_carries_webhooks_that_tail_and_topics_read_back(
) {
    let cluster = SecuredCluster::start().await;
    let env = configured(&cluster, "secured", &cluster.options(), PASSWORD, "sec1");
    let replica = start(&cluster.brokers(), "sec1", &env).await;
    wait_ready(&replica, 200, "", Duration::from_secs(30)).await;

    let client = reqwest::Client::new();
    let ids: Vec<String> = (0..5).map(|i| format!("secured-{i}")).collect();
    for id in &ids {
        let (status, what) = deliver(&client, &replica, js_error(id)).await;
        assert_eq!(
            (status, what.as_str()),
            (200, "accepted"),
            "{id}\n{}",
            replica.log()
        );
    }

    // Read back through the same cluster, with the same configuration, by the tools a user has.
    let found =
        SecuredCluster::tailed_ids(&env, &replica.topic(), &ids, Duration::from_secs(30)).await;
    for id in &ids {
        assert!(found.contains(id), "{id} not tailed: {found:?}");
    }
    let (code, out, err) = SecuredCluster::hookstream(&["topics"], &env).await;
    assert_eq!(code, Some(0), "topics: {out}{err}");
    assert!(out.contains(&replica.topic()), "topics: {out}");
    // Over TLS with the client certificate: stunnel accepted it.
    assert!(
        cluster
            .stunnel_log()
            .contains("Certificate accepted at depth=0: CN=client-1"),
        "{}",
        cluster.stunnel_log()
    );
}

#[tokio::test]
async fn the_kafka_password_comes_from_the_environment_and_is_printed_nowhere() {
    let cluster = SecuredCluster::start().await;
    let dir = cluster.config_dir("secured", &cluster.options());

    // Unset: startup stops, naming the key and the variable.
    let unset = vec![
        ("HOOKSTREAM_CONFIG_DIR", dir.display().to_string()),
        ("HOOKSTREAM_ENV", "secured".to_string()),
    ];
    for args in [&["config", "check"][..], &["serve"][..]] {
        let (code, out, err) = SecuredCluster::hookstream(args, &unset).await;
        assert_ne!(
            code,
            Some(0),
            "{args:?} with KAFKA_PASSWORD unset: {out}{err}"
        );
        assert!(
            err.contains("kafka.options.\"sasl.password\"")
                && err.contains("${KAFKA_PASSWORD}")
                && err.contains("KAFKA_PASSWORD is not set"),
            "{args:?}: {err}"
        );
    }

    // Set: used, and in no output, log line or metric.
    let mut env = SecuredCluster::config_env(&dir, "secured", PASSWORD);
    env.push(("HOOKSTREAM__KAFKA__TOPIC_PREFIX", "sec2".into()));
    let (code, out, err) =
        SecuredCluster::hookstream(&["config", "check", "--connect"], &env).await;
    assert_eq!(code, Some(0), "config check --connect: {out}{err}");
    assert!(
        !out.contains(PASSWORD) && !err.contains(PASSWORD),
        "{out}{err}"
    );
    assert!(
        out.contains("sasl.password"),
        "the key is shown, its value redacted: {out}"
    );

    env.push(("HOOKSTREAM__LOG__LEVEL", "debug".into()));
    let replica = start(&cluster.brokers(), "sec2", &env).await;
    wait_ready(&replica, 200, "", Duration::from_secs(30)).await;
    let (status, _) = deliver(&reqwest::Client::new(), &replica, js_error("pw-1")).await;
    assert_eq!(status, 200, "{}", replica.log());
    let metrics = replica.metrics_text().await.expect("metrics");
    assert!(!metrics.contains(PASSWORD));
    let log = replica.log();
    assert!(log.contains("pw-1"), "the debug log is on: {log}");
    assert!(!log.contains(PASSWORD), "the password is in the log");
}

#[tokio::test]
async fn a_refused_password_is_named_at_once_everywhere_and_after_a_restart_with_the_right_one_every_spooled_webhook_reaches_kafka(
) {
    let cluster = SecuredCluster::start().await;
    let wrong = configured(
        &cluster,
        "secured",
        &cluster.options(),
        "not-the-password",
        "sec3",
    );

    // config check --connect: one line per check naming authentication, exit 1.
    let (code, out, err) =
        SecuredCluster::hookstream(&["config", "check", "--connect"], &wrong).await;
    assert_eq!(code, Some(1), "{out}{err}");
    let metadata_line = out
        .lines()
        .find(|l| l.contains("kafka metadata"))
        .unwrap_or_default();
    assert!(
        metadata_line.contains("FAILED") && metadata_line.contains("kafka authentication failed:"),
        "{out}"
    );
    assert!(metadata_line.contains("SCRAM"), "librdkafka's words: {out}");
    assert!(
        out.lines().any(|l| l.contains("kafka write to")
            && l.contains("not tried: kafka authentication failed")),
        "{out}"
    );

    // Without the spool: 503 at once, with Retry-After and the cause.
    let plain = start(&cluster.brokers(), "sec3", &wrong).await;
    wait_ready(
        &plain,
        503,
        "kafka authentication failed:",
        Duration::from_secs(30),
    )
    .await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let answer = send_signed(&client, &plain.url(), js_error("refused-plain"))
        .await
        .expect("an answer");
    let elapsed = started.elapsed();
    assert_eq!(answer.status().as_u16(), 503);
    assert!(
        answer.headers().contains_key("retry-after"),
        "{:?}",
        answer.headers()
    );
    let json: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(json["error"], "broker_unavailable");
    assert!(
        json["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("kafka authentication failed:"),
        "{json}"
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "answered after {elapsed:?}, not at once"
    );
    assert!(
        plain
            .metric(
                "hookstream_kafka_client_errors_total",
                "kind=\"authentication\""
            )
            .await
            >= 1.0
    );

    // With the spool: 202 at once, naming the cause; readiness still says what is wrong.
    let spool_dir = temp_dir("secured-spool");
    let mut env = wrong.clone();
    env.extend(crate::spool::spool_env(&spool_dir));
    let mut spooled = start(&cluster.brokers(), "sec3", &env).await;
    wait_ready(
        &spooled,
        503,
        "kafka authentication failed:",
        Duration::from_secs(30),
    )
    .await;
    let ids: Vec<String> = (0..5).map(|i| format!("refused-{i}")).collect();
    for id in &ids {
        let started = Instant::now();
        let (status, what) = post_signed_to(&client, &spooled.url(), js_error(id)).await;
        let elapsed = started.elapsed();
        assert_eq!(
            (status, what.as_str()),
            (202, "spooled"),
            "{id}\n{}",
            spooled.log()
        );
        assert!(
            elapsed < Duration::from_secs(1),
            "{id} answered after {elapsed:?}"
        );
    }

    // Healed by a restart with the right password: every 202 is forwarded.
    spooled.signal("TERM");
    spooled.wait_exit(Duration::from_secs(30)).await;
    spooled.set_env("KAFKA_PASSWORD", PASSWORD);
    spooled.restart().await;
    wait_ready(&spooled, 200, "", Duration::from_secs(30)).await;
    let right = configured(&cluster, "secured", &cluster.options(), PASSWORD, "sec3");
    let found =
        SecuredCluster::tailed_ids(&right, &spooled.topic(), &ids, Duration::from_secs(60)).await;
    for id in &ids {
        assert_eq!(
            found.iter().filter(|f| *f == id).count(),
            1,
            "{id} once in Kafka: {found:?}\n{}",
            spooled.log()
        );
    }
}

#[tokio::test]
async fn a_missing_client_certificate_and_a_ca_that_does_not_match_are_each_named_as_a_tls_failure()
{
    let cluster = SecuredCluster::start().await;
    let without_certificate: Vec<(&str, String)> = cluster
        .options()
        .into_iter()
        .filter(|(key, _)| !matches!(*key, "ssl.certificate.location" | "ssl.key.location"))
        .collect();
    let other_ca = crate::support::secured::Authority::new(&cluster.dir, "another-ca");
    let wrong_ca: Vec<(&str, String)> = cluster
        .options()
        .into_iter()
        .map(|(key, value)| match key {
            "ssl.ca.location" => (key, other_ca.ca_file.display().to_string()),
            _ => (key, value),
        })
        .collect();
    for (name, options, words) in [
        (
            "no-certificate",
            without_certificate,
            "certificate required",
        ),
        ("wrong-ca", wrong_ca, "certificate verify failed"),
    ] {
        let env = configured(&cluster, name, &options, PASSWORD, "sec4");
        let (code, out, err) =
            SecuredCluster::hookstream(&["config", "check", "--connect"], &env).await;
        assert_eq!(code, Some(1), "{name}: {out}{err}");
        let line = out
            .lines()
            .find(|l| l.contains("kafka metadata"))
            .unwrap_or_default();
        assert!(
            line.contains("kafka TLS handshake failed:") && line.contains(words),
            "{name}: {out}"
        );
        let replica = start(&cluster.brokers(), "sec4", &env).await;
        wait_ready(
            &replica,
            503,
            "kafka TLS handshake failed:",
            Duration::from_secs(30),
        )
        .await;
        let (_, detail) = readyz(&replica).await;
        assert!(detail.contains(words), "{name}: {detail}");
        assert!(
            replica
                .metric("hookstream_kafka_client_errors_total", "kind=\"tls\"")
                .await
                >= 1.0
        );
    }
}

#[tokio::test]
async fn a_client_certificate_replaced_on_disk_is_used_without_a_restart_and_no_write_fails() {
    let cluster = SecuredCluster::start().await;
    // Files of hookstream's own, rewritten in place as cert-manager does.
    let cert = cluster.dir.join("rotating.crt");
    let key = cluster.dir.join("rotating.key");
    std::fs::copy(&cluster.client.cert_file, &cert).expect("copy");
    std::fs::copy(&cluster.client.key_file, &key).expect("copy");
    let options: Vec<(&str, String)> = cluster
        .options()
        .into_iter()
        .map(|(k, v)| match k {
            "ssl.certificate.location" => (k, cert.display().to_string()),
            "ssl.key.location" => (k, key.display().to_string()),
            _ => (k, v),
        })
        .collect();
    let mut env = configured(&cluster, "rotating", &options, PASSWORD, "sec5");
    env.push(("HOOKSTREAM__LOG__LEVEL", "info".into()));
    let replica = start(&cluster.brokers(), "sec5", &env).await;
    wait_ready(&replica, 200, "", Duration::from_secs(30)).await;

    // Webhooks on four connections, all through the rotation.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = replica.url();
    let senders: Vec<_> = (0..4)
        .map(|c| {
            let (stop, url) = (stop.clone(), url.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut answers = Vec::new();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("rotation-{c}-{n}");
                    let (status, _) = post_signed_to(&client, &url, js_error(&id)).await;
                    answers.push((id, status));
                    n += 1;
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A new certificate from the same CA, written over the old files (the certificate first:
    // for a moment the two do not match, which must not load).
    let fresh = cluster.ca.issue(&cluster.dir, "client-2", "client-2", &[]);
    std::fs::copy(&fresh.cert_file, &cert).expect("rotate the certificate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::copy(&fresh.key_file, &key).expect("rotate the key");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster
        .stunnel_log()
        .contains("Certificate accepted at depth=0: CN=client-2")
    {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never presented\n{}",
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = Vec::new();
    for sender in senders {
        answers.extend(sender.await.expect("sender"));
    }
    let failed: Vec<_> = answers.iter().filter(|(_, s)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "not 200 through the rotation: {failed:?}\n{}",
        replica.log()
    );
    assert!(
        answers.len() > 20,
        "too few writes to tell: {}",
        answers.len()
    );
    let ids: Vec<String> = answers.into_iter().map(|(id, _)| id).collect();
    let found =
        SecuredCluster::tailed_ids(&env, &replica.topic(), &ids, Duration::from_secs(30)).await;
    let missing: Vec<_> = ids.iter().filter(|id| !found.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "answered 200, not in Kafka: {missing:?}"
    );
    assert!(
        replica.log().contains("Kafka client certificates reloaded"),
        "{}",
        replica.log()
    );
}
