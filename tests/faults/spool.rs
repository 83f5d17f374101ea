//! Broker faults under steady signed load with the durable spool enabled (`spool.after` at its
//! default of 2 s):
//! - the broker frozen (SIGSTOP) for 20 s: every request is answered 200 or 202, none 503; once
//!   the broker resumes, the spool drains on its own and every id answered 2xx is in Kafka
//!   exactly once;
//! - the broker killed, load answered 202 from the spool, hookstream SIGKILLed with records on
//!   disk, a new empty broker on the same address and hookstream started again: every id answered
//!   202 is in Kafka within a minute, exactly once.

use crate::harness::*;
use crate::scenarios::{rate, since, Judge, Outcome, Run, BURST, CALM, LEAD, SETTLE};
use crate::support::{temp_dir, Broker, Storage};
use hookstream::load::Report;
use std::time::{Duration, Instant};

/// Forwarding everything spooled is done within this, once the broker is back.
const DRAIN_BOUND: Duration = Duration::from_secs(60);

async fn spooling(broker: &Broker, prefix: &str) -> Hookstream {
    let dir = temp_dir(&format!("{prefix}-spool"));
    let dir = dir.display().to_string();
    Hookstream::start_with(
        &broker.brokers(),
        prefix,
        &[
            ("HOOKSTREAM__SPOOL__ENABLED", "true"),
            ("HOOKSTREAM__SPOOL__DIR", &dir),
        ],
    )
    .await
}

/// How many requests of `report` were answered `status`.
fn answered(report: &Report, status: u16) -> u64 {
    report.count(status)
}

/// Waits until the spool holds nothing; how long that took, or a problem.
pub(crate) async fn drained(hookstream: &Hookstream, problems: &mut Vec<String>) -> String {
    let started = Instant::now();
    loop {
        // Unreadable is not empty.
        let records = hookstream.try_metric("hookstream_spool_records", "").await;
        if records == Some(0.0) {
            return format!("spool drained {:.1} s later", since(started).as_secs_f64());
        }
        if since(started) > DRAIN_BOUND {
            let what = match records {
                Some(r) => format!("the spool still holds {r} records"),
                None => "the spool's metrics cannot be read".into(),
            };
            problems.push(format!(
                "{what} {} s after the broker was back",
                DRAIN_BOUND.as_secs()
            ));
            return "spool NOT drained".into();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Anything but 200 and 202 in `report` (io errors included), as a problem.
fn only_200_or_202(report: &Report, problems: &mut Vec<String>) {
    let others: u64 = report
        .statuses
        .iter()
        .filter(|(s, _)| **s != 200 && **s != 202)
        .map(|(_, n)| *n)
        .sum();
    if others > 0 || report.io_errors > 0 {
        problems.push(format!(
            "answers other than 200 or 202: {}",
            statuses(report)
        ));
    }
}

/// The broker frozen for 20 s under load, with the spool.
pub async fn broker_frozen_spooled() -> Outcome {
    const FREEZE: Duration = Duration::from_secs(20);
    let broker = Broker::start(Storage::Memory).await;
    let hookstream = spooling(&broker, "faults-spool-freeze").await;
    let load = tokio::spawn(run_load(load_options(
        &hookstream.url(),
        "spool-freeze",
        rate(),
        LEAD + FREEZE + CALM,
    )));
    let t0 = Instant::now();
    tokio::time::sleep(LEAD).await;
    broker.signal("STOP");
    tokio::time::sleep(FREEZE).await;
    broker.signal("CONT");
    let resumed = since(t0);
    let load = load.await.expect("load task");
    let mut problems = vec![];
    only_200_or_202(&load, &mut problems);
    if answered(&load, 202) == 0 {
        problems.push("nothing was spooled: the freeze was not felt".into());
    }
    let drain = drained(&hookstream, &mut problems).await;
    let burst = burst(&hookstream.url(), "burst", BURST).await;
    let possible_duplicates = hookstream
        .metric("hookstream_spool_possible_duplicates_total", "")
        .await;
    Run {
        hookstream: &hookstream,
        brokers: broker.brokers(),
        recoveries: vec![recovery_after(&load, resumed, resumed + CALM - SETTLE)],
        load,
        load_prefix: "spool-freeze",
        burst,
        problems,
        notes: vec![
            drain,
            format!("possible duplicates counted {possible_duplicates}"),
        ],
        inconclusive: None,
        judge: Judge {
            exactly_once: true,
            ..Judge::default()
        },
    }
    .check()
    .await
}

/// The broker dead under load (answered 202 from the spool), hookstream SIGKILLed, a new empty
/// broker, hookstream started again: everything spooled reaches the new broker once.
pub async fn broker_dead_then_hookstream_killed_spooled() -> Outcome {
    const DEAD: Duration = Duration::from_secs(10);
    let mut broker = Broker::start(Storage::Memory).await;
    let mut hookstream = spooling(&broker, "faults-spool-kill").await;
    let load = tokio::spawn(run_load(load_options(
        &hookstream.url(),
        "spool-kill",
        rate(),
        LEAD + DEAD + Duration::from_secs(1) + CALM,
    )));
    let t0 = Instant::now();
    tokio::time::sleep(LEAD).await;
    broker.kill();
    let broker_killed = since(t0);
    tokio::time::sleep(DEAD).await;
    let on_disk = hookstream.metric("hookstream_spool_records", "").await;
    hookstream.signal("KILL");
    let mut problems = vec![];
    if hookstream
        .wait_exit(Duration::from_secs(10))
        .await
        .is_some()
    {
        problems.push("hookstream exited by itself, not by SIGKILL".into());
    }
    broker.restart().await; // the same address, nothing in it
    hookstream.restart().await;
    let back = since(t0);
    let load = load.await.expect("load task");
    let spooled = load
        .outcomes
        .iter()
        .filter(|o| o.status == Some(202))
        .count();
    // While the broker is dead nothing spooled is forwarded: the gauge (read on the scrape, not
    // only when the forwarder gets round to it) shows nearly every 202 on disk.
    if spooled == 0 || on_disk < spooled as f64 * 0.9 {
        problems.push(format!(
            "the spool did not hold what was answered 202 before the kill ({spooled} answered \
             202, {on_disk} on disk)"
        ));
    }
    let refused = load
        .outcomes
        .iter()
        .filter(|o| o.sent_at < broker_killed + DEAD && o.status == Some(503))
        .count();
    if refused > 0 {
        problems.push(format!(
            "{refused} requests were answered 503 while the broker was dead"
        ));
    }
    let drain = drained(&hookstream, &mut problems).await;
    let burst = burst(&hookstream.url(), "burst", BURST).await;
    Run {
        hookstream: &hookstream,
        brokers: broker.brokers(),
        recoveries: vec![recovery_after(&load, back, back + CALM - SETTLE)],
        load,
        load_prefix: "spool-kill",
        burst,
        problems,
        notes: vec![
            format!("{spooled} answered 202, {on_disk} records on disk at the kill"),
            drain,
        ],
        inconclusive: None,
        judge: Judge {
            // What was answered 200 before the broker died went with it.
            accepted_from: broker_killed,
            exactly_once: true,
        },
    }
    .check()
    .await
}
