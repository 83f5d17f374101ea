//! Producer states and broker faults: every one is a 503 the provider can retry, never a 500,
//! never a write behind a 503, and hookstream heals by itself once the broker is back.

use crate::support::proxy::{Fault, ProxiedBroker};
use crate::support::raw;
use crate::support::*;
use std::time::{Duration, Instant};

const PROVIDER: &str = "livesession";

fn event(id: &str) -> Vec<u8> {
    with_json(&fixture(PROVIDER, "js_error"), |j| {
        j["message_id"] = id.into()
    })
}

/// Posts `body` until it is answered 200; every other answer must be a retriable 503.
/// Returns how long that took.
async fn until_accepted(app: &TestApp, body: &[u8], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let reply = app.post_signed(PROVIDER, body.to_vec()).await;
        if reply.status == 200 {
            return started.elapsed();
        }
        reply.assert_error(503, "broker_unavailable");
        assert!(reply.headers.contains_key("retry-after"), "{}", reply.text);
        assert!(
            started.elapsed() < within,
            "not accepted again within {within:?}: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn app_behind(proxied: &ProxiedBroker, ack_timeout: Duration) -> TestApp {
    let brokers = proxied.brokers();
    spawn_app_with(move |s| {
        s.kafka.brokers = brokers;
        s.kafka.ack_timeout = ack_timeout;
    })
    .await
}

#[tokio::test]
async fn a_fatal_producer_error_is_a_503_and_a_fresh_producer_takes_over_every_time() {
    let app = spawn_app().await;
    assert_eq!(app.post_signed(PROVIDER, event("warm")).await.status, 200);
    for round in 0..3 {
        app.kafka().inject_fatal_error();
        let body = event(&format!("fatal-{round}"));
        let reply = app.post_signed(PROVIDER, body.clone()).await;
        let detail = reply.assert_error(503, "broker_unavailable");
        assert!(detail.contains("fatal producer error"), "{detail}");
        assert!(reply.headers.contains_key("retry-after"));
        let took = until_accepted(&app, &body, Duration::from_secs(5)).await;
        eprintln!("round {round}: accepted again after {took:?}");
    }
    assert!(
        app.metric("hookstream_kafka_producer_resets_total", "")
            .await
            >= 3.0
    );
    assert!(
        app.metric(
            "hookstream_kafka_produce_failures_total",
            "reason=\"producer_unusable\""
        )
        .await
            >= 3.0
    );
    let messages = app.read_messages(&app.topic(PROVIDER, "js_error"), 4).await;
    let mut ids: Vec<_> = messages
        .iter()
        .map(|m| headers_of(m)["hookstream-event-id"].clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["fatal-0", "fatal-1", "fatal-2", "warm"]);
}

#[tokio::test]
async fn an_idle_producer_with_a_fatal_error_is_replaced_before_the_next_webhook() {
    let app = spawn_app().await;
    assert_eq!(app.post_signed(PROVIDER, event("warm")).await.status, 200);
    app.kafka().inject_fatal_error();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app
        .metric("hookstream_kafka_producer_resets_total", "")
        .await
        < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the readiness check did not heal it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = app.post_signed(PROVIDER, event("after")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

#[tokio::test]
async fn readiness_turns_503_when_writes_fail_while_metadata_answers_and_back_by_itself() {
    let proxied = ProxiedBroker::start().await;
    let app = app_behind(&proxied, Duration::from_secs(2)).await;
    assert_eq!(app.post_signed(PROVIDER, event("before")).await.status, 200);
    wait_for_status(&app, "/readyz", 200).await;

    proxied.set(Fault::StallProduce);
    app.post_signed(PROVIDER, event("stalled"))
        .await
        .assert_error(503, "broker_unavailable");
    let started = Instant::now();
    let reply = wait_for_error(&app, "/readyz", 503, "broker_unavailable").await;
    let detail = reply.assert_error(503, "broker_unavailable");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        detail.contains("latest write"),
        "metadata still answers, so it is the writes: {detail}"
    );

    // No webhook traffic from here on: the canary write notices the recovery.
    proxied.set(Fault::None);
    let started = Instant::now();
    let back = wait_for_status(&app, "/readyz", 200).await;
    assert_eq!(back.status, 200, "{}", back.text);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(app.post_signed(PROVIDER, event("after")).await.status, 200);
}

#[tokio::test]
async fn a_full_producer_queue_is_answered_503_at_once() {
    let proxied = ProxiedBroker::start().await;
    let brokers = proxied.brokers();
    let app = spawn_app_with(move |s| {
        s.kafka.brokers = brokers;
        s.kafka.ack_timeout = Duration::from_secs(3);
        s.kafka
            .options
            .insert("queue.buffering.max.messages".into(), "1".into());
    })
    .await;
    assert_eq!(app.post_signed(PROVIDER, event("warm")).await.status, 200);
    proxied.set(Fault::StallProduce);
    let first = {
        let client = app.client.clone();
        let url = format!("{}/webhooks/{PROVIDER}", app.address);
        let body = event("occupies-the-queue");
        let (name, value) = sign(PROVIDER, &body, SECRET);
        tokio::spawn(async move {
            client
                .post(url)
                .header(name, value)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let detail = app
        .post_signed(PROVIDER, event("no-room"))
        .await
        .assert_error(503, "broker_unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "answered at once, took {:?}",
        started.elapsed()
    );
    assert!(detail.contains("QueueFull"), "{detail}");
    assert_eq!(first.await.expect("task").expect("answered"), 503);
}

#[tokio::test]
async fn a_write_answered_503_is_not_written_later() {
    let proxied = ProxiedBroker::start().await;
    let app = app_behind(&proxied, Duration::from_secs(2)).await;
    assert_eq!(app.post_signed(PROVIDER, event("first")).await.status, 200);

    proxied.set(Fault::Refuse);
    let started = Instant::now();
    app.post_signed(PROVIDER, event("second"))
        .await
        .assert_error(503, "broker_unavailable");
    assert!(
        started.elapsed() <= Duration::from_millis(2500),
        "one deadline: {:?}",
        started.elapsed()
    );
    // The broker is reachable again at once: a message librdkafka still held would go out now.
    proxied.set(Fault::None);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let topic = app.topic(PROVIDER, "js_error");
    let messages = app.read_messages(&topic, 1).await;
    assert_eq!(headers_of(&messages[0])["hookstream-event-id"], "first");

    until_accepted(&app, &event("second"), Duration::from_secs(10)).await;
    app.read_messages(&topic, 2).await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_write_keeps_its_claim_so_a_retry_is_no_second_copy() {
    let proxied = ProxiedBroker::start().await;
    let app = app_behind(&proxied, Duration::from_secs(5)).await;
    assert_eq!(app.post_signed(PROVIDER, event("warm")).await.status, 200);
    proxied.set(Fault::DelayProduce(Duration::from_millis(1500)));

    // The client gives up and resets its connection: the HTTP layer drops the request.
    let body = event("impatient");
    let (name, value) = sign(PROVIDER, &body, SECRET);
    let mut stream = raw::connect(app.port).await;
    raw::send(
        &mut stream,
        &raw::post_head("/webhooks/livesession", &[(&name, &value)], body.len()),
    )
    .await;
    raw::send(&mut stream, &body).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stream.set_zero_linger().expect("linger");
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The provider's retry arrives while the first write is still in flight.
    let retry = app.post_signed(PROVIDER, body).await;
    assert_eq!(retry.status, 200, "{}", retry.text);
    assert_eq!(retry.json()["status"], "duplicate", "{}", retry.text);
    proxied.set(Fault::None);
    let messages = app.read_messages(&app.topic(PROVIDER, "js_error"), 2).await;
    let impatient_copies = messages
        .iter()
        .filter(|m| headers_of(m)["hookstream-event-id"] == "impatient")
        .count();
    assert_eq!(impatient_copies, 1);
}
