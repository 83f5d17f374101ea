//! `hookstream tail`, read like `kcat -C` / `rpk topic consume`: to the end and out, or on with
//! `--follow`; from the beginning, the end, an offset, the last N, a time or a time ago; a count;
//! headers; JSON, raw values, keys or a template; as a consumer group that resumes; one clear
//! line for a topic that does not exist, a pointer for the dead-letter topic, and why a record
//! does not decode. `hookstream topics` beside it: internal topics hidden, and a broker that
//! does not answer named within `--timeout`.

use crate::support::proxy::{Fault, ProxiedBroker};
use crate::support::*;
use rdkafka::message::Message;
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
    let rx = stdout_lines(&mut child.0);
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

/// Runs `hookstream ARGS` with the app's broker and prefix off the test's runtime; (exit code,
/// stdout as bytes, stderr).
async fn run_bytes(app: &TestApp, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("HOOKSTREAM__KAFKA__BROKERS", &app.brokers)
        .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &app.prefix);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("task")
        .expect("hookstream runs");
    (
        output.status.code(),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `hookstream topics ARGS`; (exit code, stdout, stderr).
async fn topics(app: &TestApp, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["topics"];
    all.extend_from_slice(args);
    let (code, out, err) = run_bytes(app, &all).await;
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn internal_topics_are_hidden_from_topics_and_tail_regex_unless_all_and_a_canary_says_why_it_does_not_decode(
) {
    let app = spawn_app().await;
    send(&app, &["event-1"]).await;
    let js_error = app.topic("livesession", "js_error");
    app.read_messages(&js_error, 1).await;
    // A dead letter: its topic is no internal topic.
    let broken = with_json(&fixture("livesession", "js_error"), |j| {
        j.as_object_mut().expect("object").remove("payload");
    });
    assert_eq!(app.post_signed("livesession", broken).await.status, 200);
    // The readiness canary, written as `config check --connect` writes it.
    let (code, out, err) = run_off_runtime({
        let mut command = Command::new(BIN);
        command
            .args(["config", "check", "--connect"])
            .env("HOOKSTREAM__KAFKA__BROKERS", &app.brokers)
            .env("HOOKSTREAM__KAFKA__TOPIC_PREFIX", &app.prefix);
        command
    })
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    let canary = format!("{}.canary", app.prefix);
    app.read_messages(&canary, 1).await;

    let listed = |out: &str, topic: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(topic))
            .map(str::to_string)
    };
    let (code, out, err) = topics(&app, &[]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(listed(&out, &js_error).is_some(), "{out}");
    assert!(
        listed(&out, &app.dead_letter_topic()).is_some(),
        "the dead-letter topic is listed: {out}"
    );
    assert!(
        listed(&out, &canary).is_none(),
        "the canary is hidden: {out}"
    );
    let (code, out, err) = topics(&app, &["--all"]).await;
    assert_eq!(code, Some(0), "{err}");
    let line = listed(&out, &canary).unwrap_or_else(|| panic!("no canary with --all:\n{out}"));
    assert!(line.ends_with("(internal: readiness canary)"), "{line}");

    let everything = format!("{}\\..*", app.prefix);
    let (code, lines, err, _) = tail(&app, &["--regex", &everything]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        lines.iter().all(|l| l["topic"] == js_error.as_str()),
        "neither the canary nor the dead letters: {lines:?}"
    );
    assert_eq!(event_ids(&lines), ["event-1"]);
    let (code, _, err, _) = tail(&app, &["-r", &format!("{}\\.canary", app.prefix)]).await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no topic matches") && err.contains("--all"),
        "{err}"
    );

    let (code, lines, err, _) = tail(&app, &["--regex", "--all", &everything]).await;
    assert_eq!(code, Some(0), "{err}");
    let canary_line = lines
        .iter()
        .find(|l| l["topic"] == canary.as_str())
        .unwrap_or_else(|| panic!("the canary with --all: {lines:?}"));
    let why = canary_line["undecodable"]
        .as_str()
        .expect("undecodable says why");
    assert!(
        why.contains("not Avro as hookstream writes it")
            && why.contains("starts with 68 6F 6F 6B")
            && why.contains("\"hookstream readi"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_framed_for_a_schema_registry_that_does_not_decode_names_its_schema_id() {
    let app = spawn_app().await;
    let topic = app.topic("other", "registry_framed");
    create_topic(&app.brokers, &topic).await;
    // The Confluent wire format: 00, schema id 7, then a datum of some other schema.
    produce_raw(
        &app.brokers,
        &topic,
        Some("k"),
        &[0x00, 0, 0, 0, 7, 0x02],
        &[],
    )
    .await;

    let (code, lines, err, _) = tail(&app, &[&topic]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let why = lines[0]["undecodable"].as_str().expect("why");
    assert!(
        why.starts_with(
            "Confluent wire format, schema id 7: does not decode with avro/webhook_event.avsc: "
        ),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_that_does_not_decode_is_printed_with_the_decoders_reason() {
    let app = spawn_app().await;
    let topic = app.topic("other", "mixed");
    create_topic(&app.brokers, &topic).await;
    // The shipped schema's single-object header (see hookstream::avro::framing), then a datum
    // cut short; and a value that is not Avro at all.
    let mut cut_short = vec![0xC3, 0x01];
    cut_short.extend(hex::decode("c4da95d5449bc630").expect("hex"));
    cut_short.extend_from_slice(&[0x02, b'a']);
    produce_raw(&app.brokers, &topic, Some("k1"), &cut_short, &[]).await;
    produce_raw(
        &app.brokers,
        &topic,
        Some("k2"),
        b"{\"plain\": \"json\"}",
        &[],
    )
    .await;

    let (code, lines, err, _) = tail(&app, &[&topic]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let why = |n: usize| lines[n]["undecodable"].as_str().expect("why").to_string();
    assert!(
        why(0).starts_with("does not decode with avro/webhook_event.avsc: ") && why(0).len() > 48,
        "{}",
        why(0)
    );
    assert!(
        why(1).contains("not Avro as hookstream writes it")
            && why(1).contains("starts with 7B 22 70 6C")
            && why(1).contains("(17 bytes)"),
        "{}",
        why(1)
    );
    let (code, out, err) = run_bytes(&app, &["tail", &topic, "--format", "%k %v\\n"]).await;
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8(out).expect("text");
    let second = out.lines().nth(1).expect("two lines");
    let value: serde_json::Value =
        serde_json::from_str(second.strip_prefix("k2 ").expect("key first")).expect("JSON");
    assert_eq!(value["undecodable"], why(1).as_str(), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_and_tail_name_the_broker_that_did_not_answer_within_the_timeout() {
    let proxied = ProxiedBroker::start().await;
    let app = TestApp::reading(&proxied.brokers(), &unique_prefix());
    let topic = app.topic("livesession", "js_error");
    create_topic(&app.brokers, &topic).await;
    let (code, out, err) = topics(&app, &["--timeout", "2s"]).await;
    assert_eq!(code, Some(0), "{out}{err}");

    proxied.set(Fault::Stall);
    for args in [
        vec!["topics", "--timeout", "2s"],
        vec!["tail", topic.as_str(), "--timeout", "2s"],
        vec!["tail", "--regex", ".*", "--timeout", "2s"],
    ] {
        let started = Instant::now();
        let (code, _, err) = run_bytes(&app, &args).await;
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "the broker at {} did not answer within 2s",
                app.brokers
            )),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("BrokerTransportFailure") && !err.contains("Meta data fetch"),
            "{args:?}: {err}"
        );
        assert!(
            (1.9..8.0).contains(&seconds),
            "{args:?} is bounded by --timeout: {seconds:.1} s"
        );
    }

    // Nothing listens: librdkafka's reason comes along.
    let refused = TestApp {
        brokers: format!("127.0.0.1:{}", free_port()),
        ..app
    };
    let (code, _, err) = topics(&refused, &["--timeout", "1s"]).await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "the broker at {} did not answer within 1s (latest connection error: ",
            refused.brokers
        )) && err.contains("Connection refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_from_a_time_or_a_time_ago_starts_at_the_first_record_written_since() {
    let app = spawn_app().await;
    let topic = app.topic("livesession", "js_error");
    send(&app, &["before-1", "before-2"]).await;
    app.read_messages(&topic, 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mark = now_ms();
    send(&app, &["after-1", "after-2"]).await;

    let at = chrono::DateTime::from_timestamp_millis(mark)
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (code, lines, err, _) = tail(&app, &[&topic, "--from", &format!("@{at}")]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(event_ids(&lines), ["after-1", "after-2"], "--from @{at}");
    let (_, lines, ..) = tail(&app, &[&topic, "--from", &format!("@{mark}")]).await;
    assert_eq!(event_ids(&lines), ["after-1", "after-2"], "--from @{mark}");

    // Half-way between the records before the mark (3 s before it) and those after.
    let ago = format!("-{}ms", now_ms() - mark + 1500);
    let (code, lines, err, _) = tail(&app, &[&topic, "--from", &ago]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(event_ids(&lines), ["after-1", "after-2"], "--from {ago}");
    let (_, lines, ..) = tail(&app, &[&topic, "--from", "-1h"]).await;
    assert_eq!(
        event_ids(&lines),
        ["after-1", "after-2", "before-1", "before-2"]
    );
    let (_, lines, ..) = tail(&app, &[&topic, "--from", "@2099-01-01T00:00:00Z"]).await;
    assert!(lines.is_empty(), "nothing written since: {lines:?}");

    let (code, _, err, _) = tail(&app, &[&topic, "--from", "@yesterday"]).await;
    assert_eq!(code, Some(2), "a usage error");
    assert!(
        err.contains("RFC 3339, e.g. @2026-12-07T10:00:00Z"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_prints_raw_values_keys_or_a_template_like_kcat() {
    let app = spawn_app().await;
    send(&app, &["raw-1", "raw-2"]).await;
    let topic = app.topic("livesession", "js_error");
    let messages = app.read_messages(&topic, 2).await;

    let (code, out, err) = run_bytes(&app, &["tail", &topic, "--format", "raw"]).await;
    assert_eq!(code, Some(0), "{err}");
    let mut expected = Vec::new();
    for message in &messages {
        expected.extend_from_slice(message.payload().expect("a value"));
        expected.push(b'\n');
    }
    assert_eq!(out, expected, "each value's bytes, then a newline");

    let (code, out, err) = run_bytes(&app, &["tail", &topic, "--format", "key"]).await;
    assert_eq!(code, Some(0), "{err}");
    let keys: Vec<String> = messages.iter().map(|m| key_of(m).expect("key")).collect();
    assert_eq!(
        String::from_utf8(out).expect("text"),
        format!("{}\n", keys.join("\n"))
    );

    let template = r"%t|%p|%o|%T|%k|%S|%K|%h\n";
    let (code, out, err) = run_bytes(&app, &["tail", &topic, "--format", template]).await;
    assert_eq!(code, Some(0), "{err}");
    let out = String::from_utf8(out).expect("text");
    assert_eq!(out.lines().count(), 2, "{out}");
    for (line, m) in out.lines().zip(&messages) {
        let key = key_of(m).expect("key");
        let wanted = format!(
            "{}|{}|{}|{}|{key}|{}|{}|",
            m.topic(),
            m.partition(),
            m.offset(),
            m.timestamp().to_millis().expect("a timestamp"),
            m.payload().expect("value").len(),
            key.len(),
        );
        assert!(line.starts_with(&wanted), "{line:?} starts with {wanted:?}");
        let headers = &line[wanted.len()..];
        for header in [
            "hookstream-provider=livesession",
            "hookstream-event-name=js_error",
        ] {
            assert!(
                headers.split(',').any(|h| h == header),
                "{header} in {line}"
            );
        }
    }

    let (code, out, err) = run_bytes(&app, &["tail", &topic, "--format", r"%v\n"]).await;
    assert_eq!(code, Some(0), "{err}");
    let values: Vec<serde_json::Value> = String::from_utf8(out)
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("the record as JSON"))
        .collect();
    let lines: Vec<serde_json::Value> = values
        .into_iter()
        .map(|value| serde_json::json!({ "value": value }))
        .collect();
    assert_eq!(event_ids(&lines), ["raw-1", "raw-2"]);

    let (code, _, err) = run_bytes(&app, &["tail", &topic, "--format", "%q"]).await;
    assert_eq!(code, Some(2), "a usage error");
    assert!(err.contains("%q in the template is not a field"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_with_a_group_commits_so_the_next_run_goes_on_after_the_last_record_printed() {
    let app = spawn_app().await;
    let topic = app.topic("livesession", "js_error");
    send(&app, &["g-1", "g-2", "g-3"]).await;
    app.read_messages(&topic, 3).await;
    let group = format!("{}-tail", app.prefix);

    let (code, lines, err, _) = tail(&app, &[&topic, "--group", &group, "--count", "2"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(event_ids(&lines), ["g-1", "g-2"]);
    let (_, lines, ..) = tail(&app, &[&topic, "--group", &group]).await;
    assert_eq!(
        event_ids(&lines),
        ["g-3"],
        "the second run goes on after the first"
    );
    let (_, lines, ..) = tail(&app, &[&topic, "--group", &group]).await;
    assert!(lines.is_empty(), "everything was read: {lines:?}");
    let (_, lines, ..) = tail(&app, &[&topic]).await;
    assert_eq!(
        lines.len(),
        3,
        "without --group, nothing is committed or skipped"
    );

    // Following, stopped by Ctrl-C: what it printed is committed, and it exits 0.
    let mut child = ChildGuard(
        tail_command(&app, &["-f", &topic, "--group", &group])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tail runs"),
    );
    let rx = stdout_lines(&mut child.0);
    send(&app, &["g-4"]).await;
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("a line");
    assert!(line.contains("\"g-4\""), "{line}");
    let status = interrupt(&mut child.0, Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    send(&app, &["g-5"]).await;
    let (_, lines, ..) = tail(&app, &[&topic, "--group", &group]).await;
    assert_eq!(
        event_ids(&lines),
        ["g-5"],
        "g-4 was committed when interrupted"
    );
}
