//! `hookstream topics create`: the topics the configuration writes to, created ahead of time
//! for clusters that forbid the service account to create topics.

use crate::support::*;
use rdkafka::consumer::Consumer;
use std::process::Command;
use std::time::Duration;

/// A configuration directory holding the shipped `default.toml` and `production.toml` with
/// `text`.
fn config_dir_with(label: &str, text: &str) -> String {
    let dir = temp_dir(label);
    std::fs::copy("config/default.toml", dir.join("default.toml")).expect("copied");
    std::fs::write(dir.join("production.toml"), text).expect("written");
    dir.display().to_string()
}

/// `hookstream --config-dir DIR topics create ARGS` with `env`: (exit code, stdout, stderr).
async fn topics_create(
    dir: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(["--config-dir", dir, "topics", "create"])
        .args(args)
        .env("HOOKSTREAM_ENV", "production")
        .envs(env.iter().copied());
    run_off_runtime(command).await
}

const LIVESESSION_TOPICS: [&str; 6] = [
    "js_error",
    "net_error",
    "error_click",
    "rage_click",
    "custom",
    "error",
];

#[tokio::test]
async fn dry_run_lists_the_topics_and_the_acls_without_connecting() {
    let dir = config_dir_with(
        "topics-dry-run",
        r#"
[kafka]
topic_prefix = "prod.hooks"
topic_partitions = 6
topic_replication_factor = 3

[providers.livesession]
secrets = "live-secret"

[providers.seismic]
secrets = "seismic-secret"

[providers.acme]
preset = "stripe"
secrets = "whsec_acme"
"#,
    );
    // Nothing listens on port 1: a dry run never tries.
    let started = std::time::Instant::now();
    let (code, out, err) = topics_create(
        &dir,
        &["--dry-run"],
        &[("HOOKSTREAM__KAFKA__BROKERS", "127.0.0.1:1")],
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        out.contains("(6 partitions, replication factor 3)"),
        "{out}"
    );
    let listed: Vec<&str> = out
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .take_while(|line| !line.starts_with("allow "))
        .collect();
    let mut expected: Vec<String> = LIVESESSION_TOPICS
        .iter()
        .map(|event| format!("prod.hooks.livesession.{event}"))
        .collect();
    expected.extend(
        [
            "livesend_session_summary",
            "livesend_session_summary_enriched",
            "email",
            "email_enriched",
            "livesend_summary",
            "livesend_expired",
        ]
        .iter()
        .map(|event| format!("prod.hooks.seismic.{event}")),
    );
    expected.push("prod.hooks.dead_letter".into());
    expected.push("prod.hooks.canary".into());
    assert_eq!(listed, expected, "{out}");
    // Disabled providers (lasoexperience) and free-form names (acme's) have no topics up front.
    assert!(!out.contains("prod.hooks.lasoexperience."), "{out}");
    assert!(!out.contains("prod.hooks.acme."), "{out}");
    for line in [
        r#"allow WRITE    on topics with the prefix "prod.hooks." (resource pattern type prefixed)"#,
        r#"allow DESCRIBE on topics with the prefix "prod.hooks." (resource pattern type prefixed)"#,
        r#"allow CREATE   on topics with the prefix "prod.hooks." (resource pattern type prefixed): only if hookstream is to create topics itself"#,
        "# listed (livesession, seismic, acme may send undocumented or free-form names), and a provider's overflow topic",
        "# (prod.hooks.PROVIDER.OVERFLOW, once it has kafka.max_topics_per_provider topics): create",
        "kafka-acls --bootstrap-server BROKER --command-config admin.properties --add --allow-principal User:hookstream --operation Write --operation Describe --topic prod.hooks. --resource-pattern-type prefixed",
        "kafka-acls --bootstrap-server BROKER --command-config admin.properties --add --allow-principal User:hookstream --operation Create --topic prod.hooks. --resource-pattern-type prefixed",
        "rpk acl create --allow-principal User:hookstream --operation write,describe --topic prod.hooks. --resource-pattern-type prefixed",
        "rpk acl create --allow-principal User:hookstream --operation create --topic prod.hooks. --resource-pattern-type prefixed",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
    }

    // A dead-letter topic outside the prefix needs its own (literal) ACLs; none when disabled.
    let (code, out, err) = topics_create(
        &dir,
        &["--dry-run"],
        &[("HOOKSTREAM__DEAD_LETTER__TOPIC", "ops.dead-letters")],
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.lines().any(|l| l == "ops.dead-letters"), "{out}");
    assert!(
        out.contains(
            r#"allow WRITE    on the topic "ops.dead-letters" (resource pattern type literal)"#
        ),
        "{out}"
    );
    let (code, out, err) = topics_create(
        &dir,
        &["--dry-run"],
        &[("HOOKSTREAM__DEAD_LETTER__ENABLED", "false")],
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("dead_letter"), "{out}");
}

#[tokio::test]
async fn create_creates_the_topics_once_and_then_finds_they_exist() {
    let prefix = format!("create-{}", unique_prefix());
    let brokers = test_brokers();
    let dir = config_dir_with(
        "topics-create",
        "[providers.livesession]\nsecrets = \"live-secret\"\n",
    );
    let env = [
        ("HOOKSTREAM__KAFKA__BROKERS", brokers.as_str()),
        ("HOOKSTREAM__KAFKA__TOPIC_PREFIX", prefix.as_str()),
        ("HOOKSTREAM__KAFKA__TOPIC_PARTITIONS", "2"),
    ];
    let mut topics: Vec<String> = LIVESESSION_TOPICS
        .iter()
        .map(|event| format!("{prefix}.livesession.{event}"))
        .collect();
    topics.push(format!("{prefix}.dead_letter"));
    topics.push(format!("{prefix}.canary"));

    let (code, out, err) = topics_create(&dir, &[], &env).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let expected: Vec<String> = topics.iter().map(|t| format!("created {t}")).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{err}");

    let (code, out, err) = topics_create(&dir, &[], &env).await;
    assert_eq!(code, Some(0), "{out}{err}");
    let expected: Vec<String> = topics.iter().map(|t| format!("exists  {t}")).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{err}");

    let metadata = tokio::task::spawn_blocking(move || {
        consumer(&brokers)
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata")
    })
    .await
    .expect("metadata task");
    for topic in &topics {
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .unwrap_or_else(|| panic!("{topic} does not exist"));
        assert_eq!(found.partitions().len(), 2, "{topic}");
    }
}

#[tokio::test]
async fn create_exits_non_zero_naming_the_cause_when_the_cluster_cannot_be_reached() {
    let dir = config_dir_with("topics-unreachable", "");
    let (code, out, err) = topics_create(
        &dir,
        &[],
        &[
            ("HOOKSTREAM__KAFKA__BROKERS", "127.0.0.1:1"),
            ("HOOKSTREAM__KAFKA__ACK_TIMEOUT", "2s"),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.starts_with("hookstream topics create: cannot create topics on 127.0.0.1:1:"),
        "{err}"
    );
}

/// Tansu has no ACLs: the proxy in front of it answers CreateTopics as a cluster that denies
/// CREATE to the service account does (`TOPIC_AUTHORIZATION_FAILED`), everything else
/// forwarded.
#[tokio::test]
async fn a_missing_topic_the_cluster_forbids_creating_is_named_everywhere_until_an_administrator_creates_it(
) {
    use crate::replicas::{js_error, post_signed_to, send_signed};
    use crate::spool_integrity::wait_ready;
    use crate::support::process::Hookstream;
    use crate::support::proxy::{Fault, ProxiedBroker};

    let broker = ProxiedBroker::start().await;
    let prefix = "denied";
    let replica = Hookstream::start(&broker.brokers(), prefix).await;
    wait_ready(&replica, 200, "", Duration::from_secs(30)).await;
    broker.set(Fault::DenyCreateTopics);
    let topic = replica.topic();

    // The webhook: 500 produce_failed naming the topic and the missing permission, at once.
    let client = reqwest::Client::new();
    let answer = send_signed(&client, &replica.url(), js_error("denied-1"))
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 500);
    let json: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(json["error"], "produce_failed", "{json}");
    let detail = json["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("kafka not authorized to create topic {topic}"))
            && detail.contains("needs CREATE")
            && detail.contains("hookstream topics create"),
        "{detail}"
    );

    // /readyz names it, without taking the replica out of service (other events are written).
    let ready = reqwest::get(replica.admin_url("/readyz"))
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let ready: serde_json::Value = ready.json().await.expect("json");
    let warnings = ready["warnings"].to_string();
    assert!(
        warnings.contains(&format!("kafka not authorized to create topic {topic}")),
        "{ready}"
    );
    assert!(
        replica
            .metric(
                "hookstream_kafka_client_errors_total",
                "kind=\"authorization\""
            )
            .await
            >= 1.0
    );

    // config check --connect names it too (its write goes to a topic of its own prefix).
    let mut command = Command::new(BIN);
    command
        .args(["config", "check", "--connect"])
        .env("HOOKSTREAM__KAFKA__BROKERS", broker.brokers())
        .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", "denied-check");
    let (code, out, err) = run_off_runtime(command).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.lines().any(|l| l.contains("FAILED")
            && l.contains("kafka not authorized to create topic denied-check.canary")),
        "{out}"
    );

    // An administrator creates it (credentials that may: no denial for that run).
    broker.set(Fault::None);
    let dir = config_dir_with(
        "topics-create-denied",
        "[providers.livesession]\nsecrets = \"live-secret\"\n",
    );
    let brokers = broker.brokers();
    let env = [
        ("HOOKSTREAM__KAFKA__BROKERS", brokers.as_str()),
        ("HOOKSTREAM__KAFKA__TOPIC_PREFIX", prefix),
    ];
    let (code, out, err) = topics_create(&dir, &[], &env).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("created {topic}")), "{out}");

    // The service account still may not create topics, and needs not: the write succeeds and
    // the warning is gone.
    broker.set(Fault::DenyCreateTopics);
    let (status, what) = post_signed_to(&client, &replica.url(), js_error("denied-2")).await;
    assert_eq!(
        (status, what.as_str()),
        (200, "accepted"),
        "{}",
        replica.log()
    );
    let ready: serde_json::Value = reqwest::get(replica.admin_url("/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert!(ready.get("warnings").is_none(), "{ready}");
    let brokers = broker.brokers();
    let written = tokio::task::spawn_blocking(move || read_blocking(&brokers, &topic, 1))
        .await
        .expect("reader");
    assert_eq!(headers_of(&written[0])["hookstream-event-id"], "denied-2");
}
