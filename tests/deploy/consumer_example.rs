//! The Python consumer example (`examples/consumer-python`) reads what hookstream wrote: every
//! golden fixture is sent through the real server into the real broker, in both framings (Avro
//! single-object encoding, and the Confluent wire format through a real Schema Registry, decoded
//! by confluent-kafka's stock `AvroDeserializer`), and the records the example prints must be the
//! expected records of the fixtures. Run from another directory, subscribed to a pattern as a
//! consumer group, it goes on where it was stopped, and runs until interrupted.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Python that has the example's requirements, as an absolute path (the example is also run
/// from other directories).
fn python() -> PathBuf {
    std::path::absolute(tool("python")).expect("an absolute path")
}

/// Python running the example, stopped after 150 s: `--idle` counts from joining the group, so a
/// run that never joins would wait forever (its exit code is then 124).
fn bounded_python() -> Command {
    let mut command = Command::new("timeout");
    command.args(["--kill-after=5", "150"]).arg(python());
    command
}

/// The example, as an absolute path.
fn example() -> PathBuf {
    std::path::absolute("examples/consumer-python/consumer.py").expect("an absolute path")
}

/// The fixture received at this fixed time in the expected files.
const GOLDEN_RECEIVED_AT: i64 = 1_700_000_000_000;

/// Every golden fixture that is an event (not a handshake): (provider, body, expected record).
fn golden_events() -> Vec<(String, Vec<u8>, Value)> {
    let mut events = Vec::new();
    for provider in ["livesession", "lasoexperience", "seismic"] {
        let dir = Path::new("tests/fixtures").join(provider);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("fixtures")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && !p.to_string_lossy().ends_with(".expected.json")
            })
            .collect();
        files.sort();
        for file in files {
            let expected: Value = serde_json::from_str(
                &std::fs::read_to_string(file.with_extension("expected.json")).expect("expected"),
            )
            .expect("expected JSON");
            if expected.get("handshake").is_some() {
                continue;
            }
            // Samples of one provider share ids: each gets its own, or it would be a duplicate.
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let id = format!("example-{provider}-{stem}");
            let keys = hookstream::providers::built_in(provider)
                .expect("provider")
                .spec()
                .event_id_keys;
            let body = with_json(&std::fs::read(&file).expect("fixture"), |j| {
                for key in keys {
                    if j.get(key).is_some() {
                        j[key] = id.clone().into();
                    }
                }
            });
            let mut expected = expected;
            expected["event_id"] = id.into();
            events.push((provider.to_string(), body, expected));
        }
    }
    events
}

/// Runs the example on `topic`; the records it printed, by event id.
async fn consume(
    app: &TestApp,
    topic: &str,
    expected: usize,
    registry: Option<&str>,
) -> BTreeMap<String, Value> {
    let mut command = bounded_python();
    command
        .arg("examples/consumer-python/consumer.py")
        .args(["--brokers", &app.brokers, "--topic", topic])
        .args(["--group", &format!("{topic}-example")])
        .args(["--count", &expected.to_string(), "--idle", "20"]);
    if let Some(url) = registry {
        command.args(["--registry", url]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("task")
        .expect("the example runs");
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    assert!(output.status.success(), "{err}");
    out.lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(line.get("undecodable").is_none(), "{line}");
            let value = line["value"].clone();
            (
                value["event_id"].as_str().expect("event_id").to_string(),
                value,
            )
        })
        .collect()
}

/// What the example printed, compared with the expected record: `raw_payload` must be the body;
/// `received_at` (and an `event_time` that fell back to it) are the time of this run.
fn assert_same(provider: &str, body: &[u8], expected: &Value, printed: &Value) {
    let mut printed = printed.clone();
    let object = printed.as_object_mut().expect("a record");
    assert_eq!(
        object
            .remove("raw_payload")
            .and_then(|v| v.as_str().map(str::to_string)),
        Some(String::from_utf8_lossy(body).into_owned()),
        "{provider}: raw_payload is the body"
    );
    let received_at = object
        .remove("received_at")
        .and_then(|v| v.as_i64())
        .expect("received_at");
    let mut expected = expected.clone();
    let wanted = expected.as_object_mut().expect("expected record");
    wanted.remove("received_at");
    if wanted["event_time"] == GOLDEN_RECEIVED_AT {
        assert_eq!(
            object.remove("event_time").and_then(|v| v.as_i64()),
            Some(received_at)
        );
        wanted.remove("event_time");
    }
    assert_eq!(&printed, &expected, "{provider}");
}

async fn send_all(app: &TestApp, events: &[(String, Vec<u8>, Value)]) -> BTreeMap<String, usize> {
    let mut per_topic = BTreeMap::new();
    for (provider, body, expected) in events {
        let reply = app.post_signed(provider, body.clone()).await;
        assert_eq!(reply.status, 200, "{provider}: {}", reply.text);
        let topic = app.topic(
            provider,
            expected["event_name"].as_str().expect("event_name"),
        );
        *per_topic.entry(topic).or_default() += 1;
    }
    per_topic
}

fn check(events: &[(String, Vec<u8>, Value)], printed: &BTreeMap<String, Value>) {
    for (provider, body, expected) in events {
        let id = expected["event_id"].as_str().expect("event_id");
        let record = printed
            .get(id)
            .unwrap_or_else(|| panic!("{provider}: {id} was not printed"));
        assert_same(provider, body, expected, record);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_consumer_decodes_single_object_values_into_the_expected_records() {
    let app = spawn_app().await;
    let events = golden_events();
    assert!(events.len() >= 15, "{} fixtures", events.len());
    let per_topic = send_all(&app, &events).await;
    let mut printed = BTreeMap::new();
    for (topic, n) in per_topic {
        printed.extend(consume(&app, &topic, n, None).await);
    }
    check(&events, &printed);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_consumer_decodes_confluent_framed_values_with_the_stock_avro_deserializer() {
    let registry = SchemaRegistryServer::start().await;
    let url = registry.url();
    let app = spawn_app_with({
        let url = url.clone();
        move |s| s.schema_registry.url = url
    })
    .await;
    let events: Vec<_> = golden_events()
        .into_iter()
        .filter(|(provider, ..)| provider == "livesession")
        .collect();
    let per_topic = send_all(&app, &events).await;
    let mut printed = BTreeMap::new();
    for (topic, n) in per_topic {
        printed.extend(consume(&app, &topic, n, Some(&url)).await);
    }
    check(&events, &printed);
}

/// The event ids of the records in `lines` (JSON lines the example printed), each checked to be
/// a decoded record.
fn printed_ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(line.get("undecodable").is_none(), "{line}");
            line["value"]["event_id"]
                .as_str()
                .expect("event_id")
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_consumer_runs_from_another_directory_as_a_group_on_a_pattern_and_goes_on_where_it_stopped(
) {
    let app = spawn_app().await;
    let send = |id: &'static str, name: &'static str| {
        let app = &app;
        async move {
            let body = with_json(&fixture("livesession", name), |j| {
                j["message_id"] = id.into()
            });
            let reply = app.post_signed("livesession", body).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
        }
    };
    send("p-1", "js_error").await;
    send("p-2", "js_error").await;
    send("p-3", "rage_click").await;
    send("p-4", "rage_click").await;
    // Neither the dead letters nor the readiness canary are events: the pattern matches both.
    let broken = with_json(&fixture("livesession", "js_error"), |j| {
        j.as_object_mut().expect("object").remove("payload");
    });
    assert_eq!(app.post_signed("livesession", broken).await.status, 200);
    let (code, out, err) = run_off_runtime({
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookstream"));
        command
            .args(["config", "check", "--connect"])
            .env("HOOKSTREAM__KAFKA__BROKERS", &app.brokers)
            .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &app.prefix);
        command
    })
    .await;
    assert_eq!(code, Some(0), "{out}{err}");

    let elsewhere = temp_dir("consumer-example-cwd");
    let pattern = format!("^{}\\..*", app.prefix);
    let group = format!("{}-example", app.prefix);
    let example = |extra: &[&str]| {
        // Interrupted by the test itself when it runs without --count: python alone.
        let mut command = if extra.is_empty() {
            Command::new(python())
        } else {
            bounded_python()
        };
        command
            .arg(example())
            .args(["--brokers", &app.brokers, "--topic", &pattern])
            .args(["--group", &group, "--prefix", &app.prefix])
            .args(extra)
            .current_dir(&elsewhere);
        command
    };

    // Stopped after two records: it committed them.
    let (code, out, err) = run_off_runtime(example(&["--count", "2", "--idle", "30"])).await;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<String> = out.lines().map(str::to_string).collect();
    let mut seen = printed_ids(&lines);
    assert_eq!(seen.len(), 2, "{out}");

    // Started again without --idle or --count: it goes on after them, then waits for more
    // until interrupted.
    let mut child = ChildGuard(
        example(&[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example runs"),
    );
    let rx = stdout_lines(&mut child.0);
    let next = |rx: &std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(30))
            .map(|line| printed_ids(&[line]).remove(0))
            .expect("a record")
    };
    seen.push(next(&rx));
    seen.push(next(&rx));
    seen.sort();
    assert_eq!(seen, ["p-1", "p-2", "p-3", "p-4"], "each record once");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "without --idle it waits for more"
    );
    send("p-5", "js_error").await;
    assert_eq!(next(&rx), "p-5");
    let status = interrupt(&mut child.0, Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "{status}");

    // Everything printed was committed, p-5 included (interrupted right after printing it):
    // a third run goes on with the next record.
    send("p-6", "js_error").await;
    let (code, out, err) = run_off_runtime(example(&["--count", "1", "--idle", "60"])).await;
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<String> = out.lines().map(str::to_string).collect();
    assert_eq!(printed_ids(&lines), ["p-6"], "{out}");
}
