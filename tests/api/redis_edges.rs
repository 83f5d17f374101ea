//! Shared deduplication at its edges, against a real Redis with latency injected by a TCP proxy:
//! a Redis that answers PING but refuses what deliveries need, a claim whose caller timed out,
//! a commit that arrives late, and a delivery written while Redis could not be asked.

use crate::replicas::{deliver, js_error, post_signed_to, redis_env};
use crate::support::process::Hookstream;
use crate::support::proxy::{Fault, LatencyProxy, ProxiedBroker};
use crate::support::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn redis_port() -> u16 {
    test_redis()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("a redis://host:port URL")
}

async fn redis_command(args: &[&str]) -> redis::Value {
    let client = redis::Client::open(test_redis()).expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command
        .query_async(&mut connection)
        .await
        .expect("redis answers")
}

#[tokio::test]
async fn a_redis_user_that_may_ping_but_not_set_is_not_ready_and_fails_the_connection_check() {
    let user = format!("ping-only-{}", std::process::id());
    let password = "ping-only-password";
    redis_command(&[
        "ACL",
        "SETUSER",
        &user,
        "reset",
        "on",
        &format!(">{password}"),
        "+ping",
        "~*",
    ])
    .await;
    let url = format!("redis://{user}:{password}@127.0.0.1:{}", redis_port());

    let output = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            Command::new(BIN)
                .args(["config", "check", "--connect"])
                .env("HOOKSTREAM__KAFKA__BROKERS", test_brokers())
                .env("HOOKSTREAM__DEDUPE__BACKEND", "redis")
                .env("HOOKSTREAM__DEDUPE__REDIS__URL", &url)
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("task");
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("redis (dedupe)"))
        .unwrap_or_else(|| panic!("no redis line in:\n{out}"));
    assert!(
        line.starts_with("# FAILED")
            && line.contains("claim (SET … NX PX … GET) failed")
            && line.to_ascii_uppercase().contains("NOPERM")
            && line.contains("ACL"),
        "{line}"
    );
    assert!(!out.contains(password), "{out}");

    let prefix = unique_prefix();
    let mut env = redis_env(&url, &prefix);
    env.push(("HOOKSTREAM__DEDUPE__REDIS__ON_UNAVAILABLE", "reject"));
    let replica = Hookstream::start_with(&test_brokers(), &prefix, &env).await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = client
            .get(replica.admin_url("/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .ok();
        if ready == Some(503) && replica.log().to_ascii_uppercase().contains("NOPERM") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz {ready:?}; log:\n{}",
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!replica.log().contains(password));
    redis_command(&["ACL", "DELUSER", &user]).await;
}

#[tokio::test]
async fn a_claim_whose_caller_timed_out_is_released_so_a_retry_is_written() {
    let proxy = LatencyProxy::start(redis_port()).await;
    let prefix = unique_prefix();
    let url = proxy.redis_url();
    let mut env = redis_env(&url, &prefix);
    env.push(("HOOKSTREAM__DEDUPE__REDIS__ON_UNAVAILABLE", "reject"));
    env.push(("HOOKSTREAM__DEDUPE__REDIS__TIMEOUT", "300ms"));
    let replica = Hookstream::start_with(&test_brokers(), &prefix, &env).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error("warm-up")).await,
        (200, "accepted".into())
    );

    // Redis answers, but only after the claim's caller gave up.
    proxy.set_latency(Duration::from_millis(500));
    assert_eq!(
        deliver(&client, &replica, js_error("orphan-claim")).await,
        (503, "dedupe_unavailable".into())
    );
    proxy.set_latency(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The retry is not kept waiting for a claim nobody holds.
    let started = Instant::now();
    assert_eq!(
        deliver(&client, &replica, js_error("orphan-claim")).await,
        (200, "accepted".into()),
        "log:\n{}",
        replica.log()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_delivery_written_while_redis_was_frozen_is_recorded_once_redis_answers() {
    let proxy = LatencyProxy::start(redis_port()).await;
    let prefix = unique_prefix();
    let url = proxy.redis_url();
    let mut env = redis_env(&url, &prefix);
    env.push(("HOOKSTREAM__DEDUPE__REDIS__TIMEOUT", "500ms"));
    let written = Hookstream::start_with(&test_brokers(), &prefix, &env).await;
    let direct = test_redis();
    let other =
        Hookstream::start_with(&test_brokers(), &prefix, &redis_env(&direct, &prefix)).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &written, js_error("warm-up")).await,
        (200, "accepted".into())
    );

    proxy.set_frozen(true);
    let thaw = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(900)).await;
        proxy.set_frozen(false);
        proxy
    });
    // The claim times out: written without one ("write" mode), then recorded once Redis is back.
    assert_eq!(
        deliver(&client, &written, js_error("written-unclaimed")).await,
        (200, "accepted".into())
    );
    let _proxy = thaw.await.expect("thawed");
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let started = Instant::now();
    assert_eq!(
        deliver(&client, &other, js_error("written-unclaimed")).await,
        (200, "duplicate".into()),
        "another replica knows it was written"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let records = read_blocking(&test_brokers(), &written.topic(), 2);
    assert_eq!(records.len(), 2, "warm-up and the event, once");
}

#[tokio::test]
async fn a_claim_outlives_a_commit_that_waits_its_redis_timeout_so_no_replica_writes_a_second_copy()
{
    let broker = ProxiedBroker::start().await;
    let proxy = LatencyProxy::start(redis_port()).await;
    let prefix = unique_prefix();
    let slow_url = proxy.redis_url();
    let direct = test_redis();
    let timing = [
        ("HOOKSTREAM__KAFKA__ACK_TIMEOUT", "8s"),
        ("HOOKSTREAM__DEDUPE__REDIS__TIMEOUT", "5s"),
    ];
    let mut slow_env = redis_env(&slow_url, &prefix);
    slow_env.extend(timing);
    let mut direct_env = redis_env(&direct, &prefix);
    direct_env.extend(timing);
    let first = Hookstream::start_with(&broker.brokers(), &prefix, &slow_env).await;
    let second = Hookstream::start_with(&broker.brokers(), &prefix, &direct_env).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &first, js_error("warm-up")).await,
        (200, "accepted".into())
    );

    // The first replica claims at once; its write is acknowledged after 5 s; by then Redis
    // takes 7 s to hear anything, so the commit reaches it about 12 s after the claim.
    broker.set(Fault::DelayProduce(Duration::from_secs(5)));
    let started = Instant::now();
    let writing = {
        let client = client.clone();
        let url = first.url();
        tokio::spawn(async move {
            post_signed_to(&client, &url, js_error("late-commit"))
                .await
                .0
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_latency(Duration::from_secs(7));
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.set(Fault::None);
    // 11 s after the claim: past the old claim lifetime (ack_timeout + 2 s = 10 s), before the
    // commit arrives.
    tokio::time::sleep(Duration::from_secs(11).saturating_sub(started.elapsed())).await;
    let (status, what) = deliver(&client, &second, js_error("late-commit")).await;
    assert_eq!(writing.await.expect("request task"), 200);
    assert_eq!(
        (status, what.as_str()),
        (200, "duplicate"),
        "the second replica waited for the first's claim"
    );
    // Off the runtime: the broker's proxy runs on it.
    let (brokers, topic) = (broker.brokers(), first.topic());
    let records = tokio::task::spawn_blocking(move || read_blocking(&brokers, &topic, 2))
        .await
        .expect("reader");
    assert_eq!(records.len(), 2, "warm-up and the event, once");
}
