//! The shipped observability configuration, checked with the real tools: a Prometheus server
//! scraping hookstream evaluates every query of the Grafana dashboard; promtool checks the
//! Prometheus config; the compose file is validated against the Compose specification.

use crate::support::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DASHBOARD: &str = "deploy/grafana/dashboards/hookstream.json";

/// Every PromQL expression in the dashboard, with Grafana's interval variables substituted.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(DASHBOARD).expect("dashboard file");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let title = format!("{} / {}", panel["title"], target["refId"]);
            queries.push((title, expr.replace("$__rate_interval", "1m")));
        }
    }
    queries
}

async fn query(client: &reqwest::Client, prometheus: &str, expr: &str) -> serde_json::Value {
    let response = client
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .expect("prometheus answers");
    let status = response.status();
    let text = response.text().await.expect("prometheus body");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("prometheus answered {status} with no JSON ({e}): {text}"))
}

/// Waits until Prometheus says it is ready: it listens before its storage is open, and answers
/// queries meanwhile with a plain-text 503.
async fn wait_until_ready(client: &reqwest::Client, prometheus: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = client.get(format!("{prometheus}/-/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "prometheus never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn prometheus_scrapes_hookstream_and_every_dashboard_query_returns_data() {
    let app = spawn_app().await;
    let dir = temp_dir("prometheus");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hookstream\n    static_configs:\n      - targets: [\"{}\"]\n",
            app.admin_address.trim_start_matches("http://")
        ),
    )
    .expect("config written");
    let port = free_port();
    let _prometheus = ChildGuard(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let prometheus = format!("http://127.0.0.1:{port}");
    wait_for_port(port).await;
    let client = reqwest::Client::new();
    wait_until_ready(&client, &prometheus).await;

    // Wait for the first scrape, so the traffic below shows up as increases.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = query(&client, &prometheus, "up{job=\"hookstream\"} == 1").await;
        if up["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped hookstream: {up}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Accepted, duplicate and rejected webhooks over a few scrapes.
    for round in 0..4 {
        let body = with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = format!("prom-{round}").into()
        });
        app.post_signed("livesession", body.clone()).await;
        app.post_signed("livesession", body.clone()).await;
        app.post("livesession", body, &[]).await;
        app.post_signed("seismic", fixture("seismic", "email_v3"))
            .await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }

    // librdkafka statistics arrive every few seconds: poll until every query has data.
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 10,
        "dashboard has {} queries",
        queries.len()
    );
    assert!(
        queries.iter().any(|(title, expr)| title
            .starts_with("\"Dead letters by provider and reason\"")
            && expr.contains("hookstream_webhooks_dead_lettered_total")),
        "the dead-letter panel"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut empty = Vec::new();
        for (title, expr) in &queries {
            let answer = query(&client, &prometheus, expr).await;
            assert_eq!(
                answer["status"], "success",
                "{title}: {expr} failed: {answer}"
            );
            if answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
            {
                empty.push(format!("{title}: {expr}"));
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries without data:\n{}",
            empty.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The numbers are hookstream's own: four accepted, four duplicates, four missing signatures.
    let accepted = query(
        &client,
        &prometheus,
        "hookstream_webhooks_accepted_total{provider=\"livesession\"}",
    )
    .await;
    assert_eq!(accepted["data"]["result"][0]["value"][1], "4", "{accepted}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_shipped_prometheus_config_passes_promtool() {
    assert_tool_succeeds(
        "promtool",
        &["check", "config", "deploy/prometheus/prometheus.yml"],
        None,
    );
}

#[test]
fn the_shipped_alert_rules_pass_promtool_and_name_the_spool_and_kafka_client_metrics() {
    assert_tool_succeeds(
        "promtool",
        &["check", "rules", "deploy/prometheus/alerts.yml"],
        None,
    );
    let rules = std::fs::read_to_string("deploy/prometheus/alerts.yml").expect("rules");
    for needed in [
        "hookstream_spool_oldest_age_seconds",
        "hookstream_spool_bytes / hookstream_spool_max_bytes > 0.8",
        "hookstream_kafka_client_errors_total{kind=~\"authentication|tls\"}",
    ] {
        assert!(rules.contains(needed), "{needed}");
    }
}

#[test]
fn the_compose_file_conforms_to_the_compose_specification() {
    assert_tool_succeeds(
        "check-jsonschema",
        &[
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yml",
        ],
        None,
    );
}

#[test]
fn the_compose_stack_has_every_service_leaves_host_port_9090_to_the_quickstart_and_mounts_files_that_exist(
) {
    let text = std::fs::read_to_string("docker-compose.yml").expect("compose file");
    for service in [
        "redpanda:",
        "console:",
        "redis:",
        "hookstream:",
        "prometheus:",
        "grafana:",
    ] {
        assert!(
            text.contains(&format!("\n  {service}\n")),
            "service {service} missing"
        );
    }
    // hookstream deduplicates on the stack's Redis, and its admin port stays unpublished.
    let docker = std::fs::read_to_string("config/docker.toml").expect("config/docker.toml");
    assert!(docker.contains("backend = \"redis\""), "{docker}");
    assert!(docker.contains("redis://redis:6379"), "{docker}");
    let hookstream = text
        .split("\n  hookstream:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the hookstream service");
    assert!(hookstream.contains("\"8080:8080\""), "{hookstream}");
    assert!(
        !hookstream.contains("9090"),
        "the admin port is published: {hookstream}"
    );
    // Host port 9090 is the quickstart's admin port: no service of the stack takes it.
    let published: Vec<&str> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("- ").trim_matches('"'))
        .filter(|l| l.split(':').count() == 2 && l.chars().all(|c| c.is_ascii_digit() || c == ':'))
        .collect();
    assert!(published.contains(&"8080:8080"), "{published:?}");
    assert!(
        published.contains(&"19090:9090"),
        "Prometheus: {published:?}"
    );
    assert!(
        published.iter().all(|p| !p.starts_with("9090:")),
        "host port 9090 is published: {published:?}"
    );
    for line in text.lines() {
        let line = line.trim().trim_start_matches("- ");
        if let Some(rest) = line.strip_prefix("./") {
            let host_path = rest.split(':').next().unwrap_or_default();
            assert!(
                std::path::Path::new(host_path).exists(),
                "compose mounts {host_path}, which does not exist"
            );
        }
    }
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let app = spawn_app().await;
    app.post_signed("livesession", fixture("livesession", "js_error"))
        .await;
    let text = app.admin("/metrics").await.text;
    assert_tool_succeeds("promtool", &["check", "metrics"], Some(text.as_bytes()));
}
