//! The durable spool through the real binary and a real broker of the test's own: fair weather
//! unchanged; a frozen broker answered 200 or 202, every answered id in Kafka exactly once; a dead
//! broker, a SIGKILL and an empty broker, and every 202 is forwarded after the restart; SIGTERM
//! with records on disk and no broker exits 0; a full spool is 503; one process per directory.
//! Without a broker: `spool status` and `spool drain` refuse a directory that does not exist, and
//! their exit status follows from what happened, never from the words of the message.

use crate::replicas::{deliver, js_error, post_signed_to as post};
use crate::support::process::{serve_refused, Hookstream};
use crate::support::*;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) fn spool_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOOKSTREAM__SPOOL__ENABLED", "true".into()),
        ("HOOKSTREAM__SPOOL__DIR", dir.display().to_string()),
        ("HOOKSTREAM__SPOOL__AFTER", "1s".into()),
        ("HOOKSTREAM__SERVER__SHUTDOWN_TIMEOUT", "3s".into()),
    ]
}

pub(crate) async fn start(
    broker: &str,
    prefix: &str,
    env: &[(&'static str, String)],
) -> Hookstream {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Hookstream::start_with(broker, prefix, &env).await
}

/// Every record's event id on `topic`, with its copies: everything there is, read until nothing
/// new arrives for 3 s (off the runtime).
pub(crate) async fn copies(brokers: &str, topic: &str) -> HashMap<String, usize> {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer;
        use rdkafka::{Offset, TopicPartitionList};
        let consumer = consumer(&brokers);
        let mut copies = HashMap::new();
        let Ok(metadata) = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)) else {
            return copies;
        };
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let _ = assignment.add_partition_offset(&topic, partition.id(), Offset::Beginning);
        }
        if assignment.count() == 0 || consumer.assign(&assignment).is_err() {
            return copies;
        }
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_secs(3) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let m = m.detach();
                *copies
                    .entry(headers_of(&m)["hookstream-event-id"].clone())
                    .or_default() += 1;
                quiet_since = Instant::now();
            }
        }
        copies
    })
    .await
    .expect("reader")
}

/// Waits until `topic` holds every id of `ids` (or the time is up); their copies.
pub(crate) async fn wait_for_ids(
    brokers: &str,
    topic: &str,
    ids: &[String],
    within: Duration,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + within;
    loop {
        let found = copies(brokers, topic).await;
        if ids.iter().all(|id| found.contains_key(id)) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What a test of a spool holding records starts from: a broker of its own; hookstream with the
/// spool in a directory of its own, one webhook accepted; then the broker killed and `count`
/// webhooks answered `202 spooled`, their ids `{label}-{i}`.
/// Every one of `ids` reaches the replica's topic within a minute, once; what the topic holds.
pub(crate) async fn assert_forwarded_once(
    broker: &Broker,
    replica: &Hookstream,
    ids: &[String],
) -> HashMap<String, usize> {
    let found = wait_for_ids(
        &broker.brokers(),
        &replica.topic(),
        ids,
        Duration::from_secs(60),
    )
    .await;
    for id in ids {
        assert_eq!(found.get(id), Some(&1), "{id}");
    }
    found
}

/// `hookstream spool status` of `dir`: its output.
pub(crate) fn spool_status(dir: &Path) -> String {
    let output = Command::new(BIN)
        .args(["spool", "status"])
        .env("HOOKSTREAM__SPOOL__DIR", dir)
        .output()
        .expect("runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) struct Spooled {
    pub(crate) broker: Broker,
    pub(crate) replica: Hookstream,
    pub(crate) dir: std::path::PathBuf,
    pub(crate) client: reqwest::Client,
    pub(crate) ids: Vec<String>,
}

pub(crate) async fn spooled_with_the_broker_dead(label: &str, count: usize) -> Spooled {
    let broker = Broker::start(Storage::Memory).await;
    let dir = temp_dir(&format!("spool-{label}"));
    let replica = start(&broker.brokers(), &unique_prefix(), &spool_env(&dir)).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error(&format!("{label}-warm-up"))).await,
        (200, "accepted".into())
    );
    let mut spooled = Spooled {
        broker,
        replica,
        dir,
        client,
        ids: Vec::new(),
    };
    spooled.broker.kill();
    spooled.ids = spool_webhooks(&spooled.client, &spooled.replica, label, count).await;
    spooled
}

/// Delivers `count` webhooks, ids `{label}-{i}`, each of which must be answered `202 spooled`;
/// their ids.
pub(crate) async fn spool_webhooks(
    client: &reqwest::Client,
    replica: &Hookstream,
    label: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        let id = format!("{label}-{i}");
        let answer = deliver(client, replica, js_error(&id)).await;
        assert_eq!(answer, (202, "spooled".into()), "{id}");
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn in_fair_weather_the_spool_changes_nothing() {
    let broker = Broker::start(Storage::Memory).await;
    let dir = temp_dir("spool-fair");
    let prefix = unique_prefix();
    let replica = start(&broker.brokers(), &prefix, &spool_env(&dir)).await;
    let client = reqwest::Client::new();
    for i in 0..20 {
        assert_eq!(
            deliver(&client, &replica, js_error(&format!("fair-{i}"))).await,
            (200, "accepted".into())
        );
    }
    assert_eq!(
        deliver(&client, &replica, js_error("fair-0")).await,
        (200, "duplicate".into())
    );
    assert_eq!(replica.metric("hookstream_spooled_total", "").await, 0.0);
    assert_eq!(replica.metric("hookstream_spool_records", "").await, 0.0);
    let found = copies(&broker.brokers(), &replica.topic()).await;
    assert_eq!(found.len(), 20);
    assert!(found.values().all(|&n| n == 1));
}

#[tokio::test]
async fn a_broker_frozen_for_20_s_under_load_is_answered_200_or_202_and_every_id_lands_once() {
    let broker = Broker::start(Storage::Memory).await;
    let dir = temp_dir("spool-frozen");
    let prefix = unique_prefix();
    let replica = start(&broker.brokers(), &prefix, &spool_env(&dir)).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error("frozen-warm-up")).await,
        (200, "accepted".into())
    );
    let stop = Instant::now() + Duration::from_secs(28);
    let senders: Vec<_> = (0..16)
        .map(|sender| {
            let client = client.clone();
            let url = replica.url();
            tokio::spawn(async move {
                let mut answered = Vec::new();
                let mut i = 0;
                while Instant::now() < stop {
                    let id = format!("frozen-{sender}-{i}");
                    i += 1;
                    let (status, what) = post(&client, &url, js_error(&id)).await;
                    answered.push((id, status, what));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                answered
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.signal("STOP");
    tokio::time::sleep(Duration::from_secs(20)).await;
    broker.signal("CONT");
    let mut answered = Vec::new();
    for sender in senders {
        answered.extend(sender.await.expect("sender"));
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for (_, status, _) in &answered {
        *statuses.entry(*status).or_default() += 1;
    }
    let spooled = answered.iter().filter(|(_, s, _)| *s == 202).count();
    assert!(
        answered.iter().all(|(_, s, _)| *s == 200 || *s == 202),
        "every answer 200 or 202: {statuses:?}"
    );
    assert!(spooled > 0, "the freeze was spooled through: {statuses:?}");
    let ids: Vec<String> = answered.iter().map(|(id, _, _)| id.clone()).collect();
    let found = wait_for_ids(
        &broker.brokers(),
        &replica.topic(),
        &ids,
        Duration::from_secs(60),
    )
    .await;
    let missing: Vec<&String> = ids.iter().filter(|id| !found.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} missing: {:?}",
        missing.len(),
        ids.len(),
        &missing[..missing.len().min(5)]
    );
    let doubled: Vec<_> = found.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        doubled.is_empty(),
        "written twice: {doubled:?} ({statuses:?})"
    );
    assert!(replica.metric("hookstream_spool_forwarded_total", "").await > 0.0);
}

#[tokio::test]
async fn spooled_while_the_broker_is_dead_then_killed_every_202_reaches_a_new_empty_broker_once() {
    let Spooled {
        mut broker,
        mut replica,
        dir,
        client,
        ids,
    } = spooled_with_the_broker_dead("killed", 40).await;
    assert_eq!(
        deliver(&client, &replica, js_error("killed-3")).await,
        (200, "duplicate".into()),
        "a spooled event counts as accepted"
    );
    replica.signal("KILL");
    assert_eq!(replica.wait_exit(Duration::from_secs(10)).await, None);
    broker.restart().await; // the same address, nothing in it
    replica.restart().await;
    assert_forwarded_once(&broker, &replica, &ids).await;
    let out = spool_status(&dir);
    assert!(
        out.lines().last().is_some_and(|l| l.contains(" 0 ")),
        "{out}"
    );
}

#[tokio::test]
async fn sigterm_with_records_on_disk_and_no_broker_exits_0_and_the_next_start_forwards_them() {
    let Spooled {
        mut broker,
        mut replica,
        dir,
        client: _,
        ids,
    } = spooled_with_the_broker_dead("term", 10).await;
    // It reads the files while serve holds the directory.
    let text = spool_status(&dir);
    assert!(
        text.contains(&replica.topic()) && text.lines().last().is_some_and(|l| l.contains(" 10 ")),
        "{text}"
    );
    let drain = Command::new(BIN)
        .args(["spool", "drain"])
        .env("HOOKSTREAM__SPOOL__DIR", &dir)
        .output()
        .expect("runs");
    assert_eq!(drain.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&drain.stderr).contains("in use by another hookstream process"),
        "{}",
        String::from_utf8_lossy(&drain.stderr)
    );

    let started = Instant::now();
    replica.signal("TERM");
    assert_eq!(replica.wait_exit(Duration::from_secs(15)).await, Some(0));
    // shutdown_timeout (3 s) for the drain, the same again for the flush and the spool.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    broker.restart().await;
    replica.restart().await;
    assert_forwarded_once(&broker, &replica, &ids).await;
}

#[tokio::test]
async fn a_full_spool_answers_503_and_is_not_ready_and_a_second_process_on_its_directory_refuses_to_start(
) {
    let mut broker = Broker::start(Storage::Memory).await;
    let dir = temp_dir("spool-full");
    let prefix = unique_prefix();
    let mut env = spool_env(&dir);
    env.push(("HOOKSTREAM__SPOOL__MAX_BYTES", "20000".into()));
    let replica = start(&broker.brokers(), &prefix, &env).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error("full-warm-up")).await,
        (200, "accepted".into())
    );
    broker.kill();
    let mut answers = Vec::new();
    for i in 0..40 {
        answers.push(deliver(&client, &replica, js_error(&format!("full-{i}"))).await);
    }
    let spooled = answers.iter().filter(|(s, _)| *s == 202).count();
    assert!(spooled > 0, "{answers:?}");
    assert!(
        answers[spooled..]
            .iter()
            .all(|a| *a == (503, "broker_unavailable".to_string())),
        "once full, every answer is 503: {answers:?}"
    );
    let on_disk: u64 = std::fs::read_dir(&dir)
        .expect("spool dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk <= 20000, "{on_disk} bytes on disk");
    // The broker down and the spool full: not ready, and /readyz says why.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client
            .get(replica.admin_url("/readyz"))
            .send()
            .await
            .expect("admin port answers");
        let status = answer.status().as_u16();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        if status == 503
            && body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("spool is full"))
        {
            assert_eq!(body["error"], "broker_unavailable", "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "/readyz: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (code, err) = serve_refused(
        &[],
        &[
            ("HOOKSTREAM__SERVER__PORT", "0"),
            ("HOOKSTREAM__SERVER__ADMIN_PORT", "0"),
            ("HOOKSTREAM__SPOOL__ENABLED", "true"),
            ("HOOKSTREAM__SPOOL__DIR", &dir.display().to_string()),
        ],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&dir.display().to_string()) && err.contains("in use"),
        "{err}"
    );
}

use std::process::Command;

#[tokio::test]
async fn after_a_torn_tail_and_a_flipped_byte_it_starts_ready_counts_the_damage_and_forwards_the_rest(
) {
    let Spooled {
        mut broker,
        mut replica,
        dir,
        client: _,
        ids,
    } = spooled_with_the_broker_dead("damaged", 10).await;
    replica.signal("KILL");
    replica.wait_exit(Duration::from_secs(10)).await;

    // A flipped byte inside the record of `damaged-5`, and a torn frame at the end.
    let segment = std::fs::read_dir(&dir)
        .expect("spool dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "log")
                && std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false)
        })
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read");
    let at = bytes
        .windows(b"damaged-5".len())
        .position(|w| w == b"damaged-5")
        .expect("the record is there");
    bytes[at + 3] ^= 0x20;
    let torn: Vec<u8> = bytes[..40].to_vec();
    bytes.extend_from_slice(&torn);
    std::fs::write(&segment, &bytes).expect("damaged");

    broker.restart().await;
    replica.restart().await;
    let ready = reqwest::get(replica.admin_url("/readyz"))
        .await
        .map(|r| r.status().as_u16());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut ready = ready.ok();
    while ready != Some(200) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        ready = reqwest::get(replica.admin_url("/readyz"))
            .await
            .map(|r| r.status().as_u16())
            .ok();
    }
    assert_eq!(ready, Some(200), "{}", replica.log());
    let undamaged: Vec<String> = ids
        .iter()
        .filter(|id| *id != "damaged-5")
        .cloned()
        .collect();
    let found = assert_forwarded_once(&broker, &replica, &undamaged).await;
    assert!(!found.contains_key("damaged-5"));
    assert_eq!(
        replica
            .metric("hookstream_spool_corrupt_records_total", "")
            .await,
        1.0
    );
    let log = replica.log();
    assert!(
        log.contains("truncated a record cut off by a crash"),
        "{log}"
    );
    assert!(log.contains("damaged record skipped"), "{log}");
    assert_eq!(
        std::fs::read_dir(dir.join("corrupt"))
            .map(|d| d.count())
            .unwrap_or(0),
        1,
        "the damaged bytes are kept aside"
    );
}

/// Runs `hookstream spool ARGS` in `cwd` with `spool.dir` = `dir`; (exit code, stdout, stderr).
fn spool_command(args: &[&str], cwd: &Path, dir: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(BIN)
        .arg("spool")
        .args(args)
        .current_dir(cwd)
        .env("HOOKSTREAM__SPOOL__DIR", dir)
        .env("HOOKSTREAM__KAFKA__BROKERS", "127.0.0.1:1")
        .output()
        .expect("runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn status_and_drain_refuse_a_spool_directory_that_does_not_exist_naming_its_absolute_path() {
    let cwd = temp_dir("spool-elsewhere");
    let relative = Path::new("spool");
    let absolute = cwd.join(relative).display().to_string();
    for args in [&["status"][..], &["drain", "--timeout", "1s"]] {
        let (code, out, err) = spool_command(args, &cwd, relative);
        assert_eq!(code, Some(4), "{args:?}: {out}{err}");
        assert!(
            err.contains(&format!("spool.dir {absolute} does not exist")),
            "{args:?}: {err}"
        );
        assert!(!out.contains("the spool is empty"), "{args:?}: {out}");
        assert!(!cwd.join(relative).exists(), "{args:?} created it");
    }
}

#[test]
fn drain_refused_by_the_directorys_lock_exits_1_whatever_the_directory_is_called() {
    // The word the exit status was once chosen by, in the path.
    let dir = temp_dir("records-remain");
    // What a `serve` on the directory holds: its lock file, locked.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .expect("lock file");
    lock.try_lock().expect("locked");
    let (code, out, err) = spool_command(&["drain", "--timeout", "1s"], &dir, &dir);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("in use by another hookstream process"),
        "{err}"
    );
    drop(lock);
}
