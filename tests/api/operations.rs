//! Health, readiness and metrics.

use crate::support::*;

#[tokio::test]
async fn healthz_is_200_and_readyz_follows_the_broker() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.admin("/healthz").await.status, 200);
    let ready = wait_for_status(&app, "/readyz", 200).await;
    assert_eq!(ready.status, 200, "{}", ready.text);

    let down = spawn_app_with(|s| s.kafka.brokers = "127.0.0.1:1".into()).await;
    assert_eq!(down.get("/healthz").await.status, 200);
    down.admin("/readyz")
        .await
        .assert_error(503, "broker_unavailable");
}

#[tokio::test]
async fn metrics_and_readiness_are_on_the_admin_port_only() {
    let app = spawn_app().await;
    wait_for_status(&app, "/readyz", 200).await;
    for path in ["/metrics", "/readyz"] {
        app.get(path).await.assert_error(404, "not_found");
        assert_eq!(
            app.admin(path).await.status,
            200,
            "{path} on the admin port"
        );
    }
    assert_eq!(app.get("/healthz").await.status, 200, "for load balancers");
    app.admin("/webhooks/livesession")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn metrics_count_accepted_duplicate_and_rejected_webhooks() {
    let app = spawn_app().await;
    let body = fixture("livesession", "js_error");
    app.post_signed("livesession", body.clone()).await;
    app.post_signed("livesession", body.clone()).await;
    app.post("livesession", body, &[]).await;
    let reply = app.admin("/metrics").await;
    assert_eq!(reply.status, 200);
    let text = reply.text;
    for line in [
        "hookstream_webhooks_accepted_total{provider=\"livesession\"} 1",
        "hookstream_webhooks_duplicates_total{provider=\"livesession\"} 1",
        "hookstream_webhooks_rejected_total{provider=\"livesession\",reason=\"missing_signature\"} 1",
        "hookstream_http_requests_total{provider=\"livesession\",status=\"200\"} 2",
        "hookstream_http_requests_total{provider=\"livesession\",status=\"401\"} 1",
        "hookstream_kafka_messages_produced_total{event_name=\"js_error\",provider=\"livesession\"} 1",
        "hookstream_dedupe_cache_entries 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("hookstream_build_info{version=\""));
    assert!(text.contains("hookstream_kafka_produce_duration_seconds_count 1"));
}

#[tokio::test]
async fn the_dedupe_horizon_is_the_window_until_max_entries_ids_fill_the_cache() {
    let app = spawn_app_with(|s| s.dedupe.max_entries = 3).await;
    let metric = "hookstream_dedupe_horizon_seconds";
    assert_eq!(app.metric(metric, "").await, 24.0 * 3600.0, "the window");
    for i in 0..4 {
        let body = with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = format!("horizon-{i}").into()
        });
        assert_eq!(app.post_signed("livesession", body).await.status, 200);
    }
    let full = app.metric(metric, "").await;
    assert!(
        (0.0..60.0).contains(&full),
        "the age of the oldest of the 3 remembered ids: {full}"
    );
}

#[tokio::test]
async fn readiness_flips_when_the_broker_stops_and_writes_recover_when_it_returns_empty() {
    let port = free_port();
    let broker = start_own_broker(port).await;
    let app = spawn_app_with(|s| {
        s.kafka.brokers = format!("127.0.0.1:{port}");
        s.kafka.ack_timeout = std::time::Duration::from_secs(3);
    })
    .await;
    let ready = wait_for_status(&app, "/readyz", 200).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let before = with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = "before".into()
    });
    assert_eq!(app.post_signed("livesession", before).await.status, 200);

    drop(broker);
    wait_for_error(&app, "/readyz", 503, "broker_unavailable")
        .await
        .assert_error(503, "broker_unavailable");
    assert_eq!(
        app.get("/healthz").await.status,
        200,
        "alive while not ready"
    );

    // The broker comes back without its state: the topic and the producer id are gone.
    let _broker = start_own_broker(port).await;
    let back = wait_for_status(&app, "/readyz", 200).await;
    assert_eq!(back.status, 200, "{}", back.text);
    let after = with_json(&fixture("livesession", "js_error"), |j| {
        j["message_id"] = "after".into()
    });
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = app.post_signed("livesession", after.clone()).await;
        statuses.push(reply.status);
        if reply.status == 200 {
            break;
        }
        assert_eq!(
            reply.status, 503,
            "a failed attempt is retriable: {}",
            reply.text
        );
    }
    assert_eq!(
        statuses.last(),
        Some(&200),
        "the provider's retries get through: {statuses:?}"
    );
    let messages = app
        .read_messages(&app.topic("livesession", "js_error"), 1)
        .await;
    assert_eq!(headers_of(&messages[0])["hookstream-event-id"], "after");
}
