//! Bounded resources: slow, unsigned, numerous or impatient clients get a clear answer at once.

use crate::support::proxy::{Fault, ProxiedBroker};
use crate::support::raw::{self, post_head};
use crate::support::*;
use std::time::{Duration, Instant};

const PROVIDER: &str = "livesession";
const PATH: &str = "/webhooks/livesession";

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
    let app = spawn_app_with(|s| s.server.body_timeout = Duration::from_secs(1)).await;
    let body = fixture(PROVIDER, "js_error");
    let (name, value) = sign(PROVIDER, &body, SECRET);
    let mut stream = raw::connect(app.port).await;
    raw::send(
        &mut stream,
        &post_head(PATH, &[(&name, &value)], body.len()),
    )
    .await;
    raw::send(&mut stream, &body[..10]).await;
    let started = Instant::now();
    let reply = raw::read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(reply.status, 408, "{}", reply.body);
    assert_eq!(reply.json()["error"], "request_timeout");
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(raw::is_closed_within(&mut stream, Duration::from_secs(2)).await);
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let app = spawn_app_with(|s| s.server.header_timeout = Duration::from_secs(1)).await;
    let mut stream = raw::connect(app.port).await;
    raw::send(
        &mut stream,
        b"POST /webhooks/livesession HTTP/1.1\r\nHost: x\r\n",
    )
    .await;
    let reply = raw::read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(reply.status, 408);
    assert!(raw::is_closed_within(&mut stream, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn an_idle_connection_outlives_the_idle_timeout_of_a_load_balancer_in_front() {
    // The shipped default: a balancer that reuses an upstream connection after a pause
    // (AWS ALB and nginx keep one 60 s) must not find it closing. actix's own default was 5 s.
    let app = spawn_app().await;
    let mut stream = raw::connect(app.port).await;
    assert_eq!(raw::get_healthz(&mut stream).await.status, 200);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let reply = raw::get_healthz(&mut stream).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_server_keep_alive_and_at_once_when_it_is_0s() {
    let app = spawn_app_with(|s| s.server.keep_alive = Duration::from_secs(2)).await;
    let mut stream = raw::connect(app.port).await;
    assert_eq!(raw::get_healthz(&mut stream).await.status, 200);
    let idle = Instant::now();
    assert!(raw::is_closed_within(&mut stream, Duration::from_secs(6)).await);
    // actix reads its clock every 500 ms: the deadline may come that much early.
    assert!(
        idle.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        idle.elapsed()
    );

    let app = spawn_app_with(|s| s.server.keep_alive = Duration::ZERO).await;
    let mut stream = raw::connect(app.port).await;
    let reply = raw::get_healthz(&mut stream).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"), "{}", reply.head);
    assert!(raw::is_closed_within(&mut stream, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_request_without_its_signature_header_is_refused_before_its_body_is_read() {
    let app = spawn_app().await;
    let mut stream = raw::connect(app.port).await;
    // One mebibyte announced, not a byte of it sent.
    raw::send(&mut stream, &post_head(PATH, &[], 1024 * 1024)).await;
    let reply = raw::read_response(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.json()["error"], "missing_signature");
    assert!(raw::is_closed_within(&mut stream, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn an_unsigned_seismic_body_is_read_only_as_far_as_a_handshake_could_go() {
    let app = spawn_app().await;
    let mut stream = raw::connect(app.port).await;
    raw::send(&mut stream, &post_head("/webhooks/seismic", &[], 5000)).await;
    let reply = raw::read_response(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_eq!(reply.json()["error"], "missing_signature");
    // The same without a declared length: the body is cut off after 4 KiB.
    let big = with_json(&fixture("seismic", "challenge_verification"), |j| {
        j["padding"] = "x".repeat(5000).into()
    });
    app.post("seismic", big, &[])
        .await
        .assert_error(401, "missing_signature");
    app.assert_nothing_produced().await;
}

#[tokio::test]
async fn connections_beyond_max_connections_are_answered_503_overloaded() {
    let app = spawn_app_with(|s| s.server.max_connections = 2).await;
    let idle_a = raw::connect(app.port).await;
    let _idle_b = raw::connect(app.port).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let body = fixture(PROVIDER, "js_error");
    let (name, value) = sign(PROVIDER, &body, SECRET);
    let mut third = raw::connect(app.port).await;
    raw::send(&mut third, &post_head(PATH, &[(&name, &value)], body.len())).await;
    raw::send(&mut third, &body).await;
    let reply = raw::read_response(&mut third, Duration::from_secs(2)).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.json()["error"], "overloaded");
    assert_eq!(reply.header("retry-after"), Some("30"));
    assert!(raw::is_closed_within(&mut third, Duration::from_secs(2)).await);

    // A connection slot frees up when a connection closes.
    drop(idle_a);
    drop(third);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = reqwest::Client::new()
        .post(format!("{}{PATH}", app.address))
        .header(name, value)
        .body(body)
        .send()
        .await
        .expect("answered");
    assert_eq!(reply.status(), 200);
}

#[tokio::test]
async fn requests_beyond_max_in_flight_are_answered_503_overloaded_at_once() {
    let proxied = ProxiedBroker::start().await;
    let brokers = proxied.brokers();
    let app = spawn_app_with(move |s| {
        s.kafka.brokers = brokers;
        s.server.max_in_flight = 1;
    })
    .await;
    let event = |id: &str| {
        with_json(&fixture(PROVIDER, "js_error"), |j| {
            j["message_id"] = id.into()
        })
    };
    assert_eq!(app.post_signed(PROVIDER, event("warm")).await.status, 200);
    proxied.set(Fault::DelayProduce(Duration::from_millis(1500)));
    let slow = {
        let body = event("slow");
        let (name, value) = sign(PROVIDER, &body, SECRET);
        let request = app
            .client
            .post(format!("{}{PATH}", app.address))
            .header(name, value)
            .body(body);
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let reply = app.post_signed(PROVIDER, event("crowded")).await;
    reply.assert_error(503, "overloaded");
    assert!(reply.headers.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(slow.await.expect("task").expect("answered"), 200);
    proxied.set(Fault::None);
    assert_eq!(
        app.post_signed(PROVIDER, event("crowded")).await.status,
        200
    );
}
