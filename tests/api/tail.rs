//! `hookstream tail`, read like `kcat -C` / `rpk topic consume`: to the end and out, or on with
//! `--follow`; from the beginning, the end, an offset or the last N; a count; headers; one clear
//! line for a topic that does not exist, and a pointer for the dead-letter topic.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tail_command(app: &TestApp, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("tail")
        .args(args)
        .env("HOOKSTREAM__KAFKA__BROKERS", &app.brokers)
        .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &app.prefix);
    command
}

/// Runs `hookstream tail ARGS` off the test's runtime; (exit code, JSON lines, stderr, seconds).
async fn tail(app: &TestApp, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>, String, f64) {
    let started = Instant::now();
    let (code, out, err) = run_off_runtime(tail_command(app, args)).await;
    let lines = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    (code, lines, err, started.elapsed().as_secs_f64())
}

async fn send(app: &TestApp, ids: &[&str]) {
    for id in ids {
        let body = with_json(&fixture("livesession", "js_error"), |j| {
            j["message_id"] = (*id).into()
        });
        assert_eq!(app.post_signed("livesession", body).await.status, 200);
    }
}

fn event_ids(lines: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = lines
        .iter()
        .map(|l| {
            l["value"]["event_id"]
                .as_str()
                .expect("a decoded record")
                .to_string()
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_reads_to_the_end_and_exits_from_where_it_is_told() {
    let app = spawn_app_with(|s| s.kafka.topic_partitions = 3).await;
    send(&app, &["a", "b", "c", "d"]).await;
    let topic = app.topic("livesession", "js_error");
    app.read_messages(&topic, 4).await;

    let (code, lines, err, seconds) = tail(&app, &[&topic]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(event_ids(&lines), ["a", "b", "c", "d"]);
    assert!(
        seconds < 8.0,
        "it exits at the end instead of waiting: {seconds:.1} s"
    );

    let (_, lines, ..) = tail(&app, &[&topic, "--count", "2"]).await;
    assert_eq!(lines.len(), 2);
    let (_, lines, ..) = tail(&app, &[&topic, "--from", "end"]).await;
    assert!(lines.is_empty(), "{lines:?}");
    // The last record of each partition that has one.
    let (_, lines, ..) = tail(&app, &[&topic, "--from", "-1"]).await;
    let partitions: std::collections::BTreeSet<i64> = lines
        .iter()
        .map(|l| l["partition"].as_i64().expect("partition"))
        .collect();
    assert_eq!(lines.len(), partitions.len(), "{lines:?}");
    let (_, lines, ..) = tail(&app, &[&topic, "--from", "1"]).await;
    assert!(
        lines.iter().all(|l| l["offset"].as_i64() >= Some(1)),
        "{lines:?}"
    );

    let (_, lines, ..) = tail(&app, &[&topic, "--headers", "--count", "1"]).await;
    let headers = &lines[0]["headers"];
    assert_eq!(headers["hookstream-provider"], "livesession", "{lines:?}");
    assert_eq!(headers["hookstream-event-name"], "js_error", "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_follow_prints_records_as_they_arrive() {
    let app = spawn_app().await;
    send(&app, &["first"]).await;
    let topic = app.topic("livesession", "js_error");
    let mut child = ChildGuard(
        tail_command(&app, &["-f", &topic])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("tail runs"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |rx: &std::sync::mpsc::Receiver<String>| {
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("a line");
        serde_json::from_str::<serde_json::Value>(&line).expect("JSON")["value"]["event_id"]
            .as_str()
            .expect("event_id")
            .to_string()
    };
    assert_eq!(next(&rx), "first");
    send(&app, &["second"]).await;
    assert_eq!(next(&rx), "second", "a record written while following");
    assert!(
        child.0.try_wait().expect("wait").is_none(),
        "still following"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_is_one_line_and_the_dead_letter_topic_points_to_dead_letters_list() {
    let app = spawn_app().await;
    let (code, lines, err, _) = tail(&app, &[&app.topic("livesession", "nothing_here")]).await;
    assert_eq!(code, Some(1));
    assert!(lines.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nothing_here does not exist"), "{err}");
    assert!(!err.contains("RD_KAFKA"), "{err}");

    let (code, _, err, _) = tail(&app, &[&app.dead_letter_topic()]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("hookstream dead-letters list"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_reads_several_topics_or_those_a_regular_expression_matches_and_topics_lists_them() {
    let app = spawn_app().await;
    send(&app, &["js-1", "js-2"]).await;
    let rage = with_json(&fixture("livesession", "rage_click"), |j| {
        j["message_id"] = "rage-1".into()
    });
    assert_eq!(app.post_signed("livesession", rage).await.status, 200);
    let js_error = app.topic("livesession", "js_error");
    let rage_click = app.topic("livesession", "rage_click");
    app.read_messages(&js_error, 2).await;
    app.read_messages(&rage_click, 1).await;

    let (code, lines, err, _) = tail(&app, &[&js_error, &rage_click]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(event_ids(&lines), ["js-1", "js-2", "rage-1"]);
    assert!(
        lines.iter().any(|l| l["topic"] == rage_click.as_str()),
        "each line names its topic: {lines:?}"
    );

    let pattern = format!("{}\\.livesession\\..*", app.prefix);
    let (code, lines, err, _) = tail(&app, &["--regex", &pattern]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(event_ids(&lines), ["js-1", "js-2", "rage-1"]);
    let (code, _, err, _) = tail(&app, &["-r", &format!("{}\\.nothing\\..*", app.prefix)]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("no topic matches"), "{err}");

    let (code, out, err) = run_off_runtime({
        let mut command = Command::new(BIN);
        command
            .arg("topics")
            .env("HOOKSTREAM__KAFKA__BROKERS", &app.brokers)
            .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &app.prefix);
        command
    })
    .await;
    assert_eq!(code, Some(0), "{err}");
    let row = |topic: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(topic))
            .unwrap_or_else(|| panic!("no {topic} in:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let js = row(&js_error);
    assert_eq!(js[2], "2", "records: {out}");
    let ends: i64 = js[3]
        .split(',')
        .map(|e| e.parse::<i64>().expect("offset"))
        .sum();
    assert_eq!(ends, 2, "end offsets: {out}");
    assert_eq!(row(&rage_click)[2], "1", "{out}");
}
