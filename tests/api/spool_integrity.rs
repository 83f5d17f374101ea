//! A 202 is never a lie: the spool keeps every record it acknowledged through the faults a
//! machine throws at it, each injected for real against the real binary and a real broker — no
//! file descriptors left for a moment, the spool directory removed under `serve`, a broker that
//! comes back empty, a body the producer would refuse, a full spool while the broker is slow, a
//! dead letter during a freeze, a full disk while forwarding, SIGTERM while the broker is frozen.

use crate::replicas::{deliver, js_error};
use crate::spool::{
    assert_forwarded_once, copies, spool_env, spool_webhooks, spooled_with_the_broker_dead, start,
    wait_for_ids, Spooled,
};
use crate::support::process::Hookstream;
use crate::support::proxy::{Fault, ProxiedBroker};
use crate::support::*;
use std::time::{Duration, Instant};

/// Waits until `/readyz` answers `status` (and, for a 503, a detail containing `detail`).
pub(crate) async fn wait_ready(replica: &Hookstream, status: u16, detail: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let answer = reqwest::get(replica.admin_url("/readyz")).await;
        if let Ok(answer) = answer {
            let code = answer.status().as_u16();
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            let said = body["detail"].as_str().unwrap_or_default().to_string();
            if code == status && said.contains(detail) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz: {code} {body}, wanted {status} {detail:?}\n{}",
                replica.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets the soft `nofile` limit of process `pid`; returns the previous soft limit.
fn limit_open_files(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a null new limit reads the current one into `old`.
    let read = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(read, 0, "prlimit read: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: both pointers are valid for the call.
    let set = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit set: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

#[tokio::test]
async fn a_moment_without_file_descriptors_drops_no_spooled_record() {
    // The broker is gone before the first webhook: its topic does not exist yet, so the
    // forwarder fails fast and reads the records again and again while descriptors run out.
    let mut broker = Broker::start(Storage::Memory).await;
    let dir = temp_dir("spool-nofile");
    let replica = start(&broker.brokers(), &unique_prefix(), &spool_env(&dir)).await;
    broker.kill();
    let client = reqwest::Client::new();
    let ids = spool_webhooks(&client, &replica, "nofile", 3).await;
    // No descriptor left to open (the descriptors held stay usable): no file, socket or pipe
    // can be opened for 8 s. The limit is below the lowest descriptor a process can get.
    let pid = replica.pid();
    assert!(open_files(pid) > 3);
    let before = limit_open_files(pid, 3);
    tokio::time::sleep(Duration::from_secs(8)).await;
    limit_open_files(pid, before);
    broker.restart().await;
    assert_forwarded_once(&broker, &replica, &ids).await;
    assert_eq!(
        replica
            .metric("hookstream_spool_corrupt_records_total", "")
            .await,
        0.0,
        "an I/O error is not damage"
    );
    assert!(
        replica.metric("hookstream_spool_io_errors_total", "").await > 0.0,
        "the I/O errors are counted\n{}",
        replica.log()
    );
}

#[tokio::test]
async fn the_spool_directory_removed_under_serve_is_answered_503_until_it_is_made_again_and_nothing_answered_202_is_lost(
) {
    let Spooled {
        mut broker,
        replica,
        dir,
        client,
        mut ids,
    } = spooled_with_the_broker_dead("gone", 2).await;
    std::fs::remove_dir_all(&dir).expect("removed");
    assert_eq!(
        deliver(&client, &replica, js_error("gone-refused")).await,
        (503, "broker_unavailable".into()),
        "never 202 into a file nobody can find again"
    );
    wait_ready(
        &replica,
        503,
        "spool cannot be written",
        Duration::from_secs(10),
    )
    .await;
    // Made again: ready again without any traffic, and appends go there.
    std::fs::create_dir_all(&dir).expect("made again");
    wait_ready(&replica, 200, "", Duration::from_secs(10)).await;
    assert_eq!(
        deliver(&client, &replica, js_error("gone-after")).await,
        (202, "spooled".into())
    );
    ids.push("gone-after".into());
    broker.restart().await;
    let found = assert_forwarded_once(&broker, &replica, &ids).await;
    assert!(!found.contains_key("gone-refused"));
}

/// A LiveSession `js_error` of about `bytes` bytes.
fn large_js_error(id: &str, bytes: usize) -> Vec<u8> {
    with_json(&js_error(id), |j| {
        j["padding"] = "x".repeat(bytes).into();
    })
}

#[tokio::test]
async fn a_record_larger_than_message_max_bytes_is_refused_413_in_an_outage_as_in_fair_weather() {
    let mut broker = Broker::start(Storage::Memory).await;
    let dir = temp_dir("spool-large");
    let replica = start(&broker.brokers(), &unique_prefix(), &spool_env(&dir)).await;
    let client = reqwest::Client::new();
    let body = large_js_error("large-fair", 1_010_000);
    assert!(body.len() < 1_048_576, "under server.max_body_bytes");
    assert_eq!(
        deliver(&client, &replica, body).await,
        (413, "payload_too_large".into())
    );
    broker.kill();
    // Writes are known to fail once one went unacknowledged: webhooks are spooled at once.
    assert_eq!(
        deliver(&client, &replica, js_error("large-small")).await,
        (202, "spooled".into())
    );
    assert_eq!(
        deliver(&client, &replica, large_js_error("large-outage", 1_010_000)).await,
        (413, "payload_too_large".into()),
        "the same answer with the broker away"
    );
    assert_eq!(replica.metric("hookstream_spool_records", "").await, 1.0);
}

#[tokio::test]
async fn a_broker_that_comes_back_empty_gets_every_spooled_record_without_a_restart_of_hookstream()
{
    let Spooled {
        mut broker,
        replica,
        client,
        mut ids,
        ..
    } = spooled_with_the_broker_dead("empty", 5).await;
    // The same address, nothing on it: no topics, no producer ids.
    broker.restart().await;
    assert_forwarded_once(&broker, &replica, &ids).await;
    // And new webhooks are acknowledged by the broker again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0;
    loop {
        let id = format!("empty-after-{i}");
        let answer = deliver(&client, &replica, js_error(&id)).await;
        ids.push(id);
        if answer == (200, "accepted".into()) {
            break;
        }
        assert!(Instant::now() < deadline, "{answer:?}\n{}", replica.log());
        i += 1;
    }
    assert_forwarded_once(&broker, &replica, &ids).await;
}

#[tokio::test]
async fn a_503_for_want_of_spool_room_leaves_no_write_behind_it() {
    let proxied = ProxiedBroker::start().await;
    let dir = temp_dir("spool-no-room");
    let mut env = spool_env(&dir);
    // Less than one record: every webhook the broker does not acknowledge in time is answered
    // as without a spool.
    env.push(("HOOKSTREAM__SPOOL__MAX_BYTES", "1000".into()));
    let replica = start(&proxied.brokers(), &unique_prefix(), &env).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error("room-warm-up")).await,
        (200, "accepted".into())
    );
    proxied.set(Fault::StallProduce);
    let answer = deliver(&client, &replica, js_error("room-refused")).await;
    assert_eq!(answer, (503, "broker_unavailable".into()));
    proxied.set(Fault::None);
    // The sender's retry is the only copy.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = deliver(&client, &replica, js_error("room-refused")).await;
        if answer.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let found = copies(&proxied.brokers(), &replica.topic()).await;
    assert_eq!(found.get("room-refused"), Some(&1), "{found:?}");
}

#[tokio::test]
async fn a_dead_letter_spooled_while_the_broker_is_slow_is_written_once() {
    let proxied = ProxiedBroker::start().await;
    let dir = temp_dir("spool-letter");
    let replica = start(&proxied.brokers(), &unique_prefix(), &spool_env(&dir)).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error("letter-warm-up")).await,
        (200, "accepted".into())
    );
    // Every write reaches the broker 7 s late: after the request's deadline, and whether or not
    // the client that sent it is still there.
    proxied.set(Fault::DelayProduce(Duration::from_secs(7)));
    // A verified body that is not LiveSession's shape: a dead letter, keyed by its id.
    let body = br#"{"message_id":"letter-1","not":"a livesession event"}"#.to_vec();
    assert_eq!(
        deliver(&client, &replica, body).await,
        (200, "dead_lettered".into())
    );
    let topic = format!("{}.dead_letter", replica.prefix);
    wait_for_ids(
        &proxied.brokers(),
        &topic,
        &["letter-1".into()],
        Duration::from_secs(60),
    )
    .await;
    // Long enough for any second write to land too.
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxied.set(Fault::None);
    let found = copies(&proxied.brokers(), &topic).await;
    assert_eq!(found.get("letter-1"), Some(&1), "{found:?}");
}

#[tokio::test]
async fn sigterm_while_the_broker_is_frozen_counts_every_copy_the_next_start_writes_again() {
    let broker = Broker::start(Storage::Memory).await;
    let dir = temp_dir("spool-frozen-term");
    let mut replica = start(&broker.brokers(), &unique_prefix(), &spool_env(&dir)).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error("frozen-term-warm-up")).await,
        (200, "accepted".into())
    );
    // The first webhook's write is in flight when it is spooled; the next ones are spooled at
    // once (writes are failing) and written by the forwarder: every kind of write in flight.
    broker.signal("STOP");
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = format!("frozen-term-{i}");
        let answer = deliver(&client, &replica, js_error(&id)).await;
        assert_eq!(answer.0, 202, "{answer:?}");
        ids.push(id);
    }
    // Their writes are in the frozen broker's hands when hookstream stops.
    replica.signal("TERM");
    replica.wait_exit(Duration::from_secs(30)).await;
    broker.signal("CONT");
    replica.restart().await;
    let found = wait_for_ids(
        &broker.brokers(),
        &replica.topic(),
        &ids,
        Duration::from_secs(60),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let found = {
        let later = copies(&broker.brokers(), &replica.topic()).await;
        if later.len() >= found.len() {
            later
        } else {
            found
        }
    };
    let extra: usize = ids
        .iter()
        .map(|id| found.get(id).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    for id in &ids {
        assert!(found.contains_key(id), "{id}: {found:?}");
    }
    let counted = replica
        .metric("hookstream_spool_possible_duplicates_total", "")
        .await;
    assert!(
        counted >= extra as f64,
        "{extra} second copies written, {counted} counted as possible duplicates: {found:?}"
    );
}

/// A tmpfs of `size` mounted at a new directory (removed with it when dropped).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(label: &str, size: &str) -> Tmpfs {
        let dir = temp_dir(label);
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root): {status}"
        );
        Tmpfs(dir)
    }

    /// Fills the file system: a file as large as it takes.
    fn fill(&self) -> std::path::PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
        let small = [0u8; 512];
        while std::io::Write::write_all(&mut file, &small).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_while_forwarding_counts_what_a_restart_writes_again_and_heals_once_there_is_room(
) {
    let tmpfs = Tmpfs::mount("spool-tmpfs", "4m");
    let dir = tmpfs.0.join("spool");
    let mut broker = Broker::start(Storage::Memory).await;
    let mut replica = start(&broker.brokers(), &unique_prefix(), &spool_env(&dir)).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error("disk-warm-up")).await,
        (200, "accepted".into())
    );
    broker.kill();
    let ids = spool_webhooks(&client, &replica, "disk", 20).await;
    // The disk fills up; then the broker comes back and everything is forwarded, but no mark
    // of it can be written.
    let filler = tmpfs.fill();
    broker.restart().await;
    assert_forwarded_once(&broker, &replica, &ids).await;
    replica.signal("TERM");
    replica.wait_exit(Duration::from_secs(30)).await;
    // A restart on the still-full disk writes them again, and counts them.
    replica.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while replica.metric("hookstream_spool_records", "").await > 0.0 {
        assert!(Instant::now() < deadline, "{}", replica.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let found = copies(&broker.brokers(), &replica.topic()).await;
    let extra: usize = ids
        .iter()
        .map(|id| found.get(id).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    let counted = replica
        .metric("hookstream_spool_possible_duplicates_total", "")
        .await;
    assert!(
        counted >= extra as f64,
        "{extra} second copies, {counted} counted: {found:?}"
    );
    // Room again: the marks are written, and the next restart writes nothing again.
    std::fs::remove_file(filler).expect("room again");
    tokio::time::sleep(Duration::from_secs(3)).await;
    replica.signal("TERM");
    replica.wait_exit(Duration::from_secs(30)).await;
    replica.restart().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        replica.metric("hookstream_spool_forwarded_total", "").await,
        0.0,
        "nothing left to write again\n{}",
        replica.log()
    );
}

#[tokio::test]
async fn a_full_disk_is_answered_503_and_readiness_recovers_without_traffic_once_there_is_room() {
    let tmpfs = Tmpfs::mount("spool-tmpfs-full", "2m");
    let dir = tmpfs.0.join("spool");
    let mut broker = Broker::start(Storage::Memory).await;
    let replica = start(&broker.brokers(), &unique_prefix(), &spool_env(&dir)).await;
    let client = reqwest::Client::new();
    assert_eq!(
        deliver(&client, &replica, js_error("enospc-warm-up")).await,
        (200, "accepted".into())
    );
    broker.kill();
    assert_eq!(
        deliver(&client, &replica, js_error("enospc-0")).await,
        (202, "spooled".into())
    );
    let filler = tmpfs.fill();
    // The segment's last page may still hold a record or two; then the disk is full.
    let mut spooled = vec!["enospc-0".to_string()];
    let mut refused = Vec::new();
    for i in 0..10 {
        let id = format!("enospc-full-{i}");
        match deliver(&client, &replica, js_error(&id)).await {
            (202, status) if status == "spooled" && refused.is_empty() => spooled.push(id),
            (503, error) if error == "broker_unavailable" => refused.push(id),
            other => panic!("{id}: {other:?} after {refused:?}"),
        }
    }
    assert!(refused.len() >= 8, "{refused:?}");
    wait_ready(
        &replica,
        503,
        "spool cannot be written",
        Duration::from_secs(10),
    )
    .await;
    // Room again: ready within a probe, before any webhook arrives.
    std::fs::remove_file(filler).expect("room again");
    wait_ready(&replica, 200, "", Duration::from_secs(5)).await;
    assert_eq!(
        deliver(&client, &replica, js_error("enospc-1")).await,
        (202, "spooled".into())
    );
    spooled.push("enospc-1".into());
    broker.restart().await;
    let found = assert_forwarded_once(&broker, &replica, &spooled).await;
    for id in &refused {
        assert!(!found.contains_key(id), "{id} was answered 503");
    }
}
