//! Redis faults under steady signed load, with `dedupe.backend = "redis"`:
//! - `write` mode (the default): Redis SIGKILLed and started again (empty), then frozen (SIGSTOP)
//!   for 10 s. Deliveries keep being written; every id answered 200 must be in Kafka, Redis
//!   errors are counted, and the burst after recovery is all 200.
//! - `reject` mode: Redis SIGKILLed for 5 s. Nothing sent while it is down may be answered 2xx;
//!   after it is back, everything is 200 again.

use crate::harness::*;
use crate::scenarios::{
    rate, since, Judge, Outcome, Run, BURST, CALM, LEAD, RECOVERY_BOUND, SETTLE,
};
use crate::support::{Broker, RedisServer, Storage};
use std::time::{Duration, Instant};

const DOWN: Duration = Duration::from_secs(3);
const FREEZE: Duration = Duration::from_secs(10);

async fn replica(broker: &Broker, redis: &RedisServer, prefix: &str, mode: &str) -> Hookstream {
    Hookstream::start_with(
        &broker.brokers(),
        prefix,
        &[
            ("HOOKSTREAM__DEDUPE__BACKEND", "redis"),
            ("HOOKSTREAM__DEDUPE__REDIS__URL", &redis.url()),
            ("HOOKSTREAM__DEDUPE__REDIS__ON_UNAVAILABLE", mode),
        ],
    )
    .await
}

/// Redis killed and restarted, then frozen, with `on_unavailable = "write"`.
pub async fn redis_down_write_mode() -> Outcome {
    let broker = Broker::start(Storage::Memory).await;
    let mut redis = RedisServer::start().await;
    let hookstream = replica(&broker, &redis, "faults-redis-write", "write").await;
    let load = tokio::spawn(run_load(load_options(
        &hookstream.url(),
        "redis-write",
        rate(),
        LEAD + DOWN + CALM + FREEZE + CALM,
    )));
    let t0 = Instant::now();
    tokio::time::sleep(LEAD).await;
    redis.kill();
    tokio::time::sleep(DOWN).await;
    redis.restart().await;
    let restarted = since(t0);
    tokio::time::sleep_until((t0 + LEAD + DOWN + CALM).into()).await;
    redis.signal("STOP");
    tokio::time::sleep(FREEZE).await;
    redis.signal("CONT");
    let thawed = since(t0);
    let load = load.await.expect("load task");
    let burst = burst(&hookstream.url(), "burst", BURST).await;
    let errors = |operation: &'static str| {
        let hookstream = &hookstream;
        async move {
            hookstream
                .metric(
                    "hookstream_dedupe_errors_total",
                    &format!("operation=\"{operation}\""),
                )
                .await
        }
    };
    let notes = vec![format!(
        "redis errors counted: claim {}, commit {}, release {}",
        errors("claim").await,
        errors("commit").await,
        errors("release").await
    )];
    let mut problems = vec![];
    if errors("claim").await == 0.0 {
        problems.push("no failed claim was counted while Redis was down".to_string());
    }
    Run {
        hookstream: &hookstream,
        brokers: broker.brokers(),
        recoveries: vec![
            recovery_after(&load, restarted, restarted + CALM - SETTLE),
            recovery_after(&load, thawed, thawed + CALM - SETTLE),
        ],
        load,
        load_prefix: "redis-write",
        burst,
        problems,
        notes,
        inconclusive: None,
        judge: Judge::default(),
    }
    .check()
    .await
}

/// Redis killed for a while, with `on_unavailable = "reject"`.
pub async fn redis_down_reject_mode() -> Outcome {
    const REJECT_DOWN: Duration = Duration::from_secs(5);
    /// Requests due this soon after the kill may have claimed their id before it.
    const GRACE: Duration = Duration::from_millis(500);
    let broker = Broker::start(Storage::Memory).await;
    let mut redis = RedisServer::start().await;
    let hookstream = replica(&broker, &redis, "faults-redis-reject", "reject").await;
    let load = tokio::spawn(run_load(load_options(
        &hookstream.url(),
        "redis-reject",
        rate(),
        LEAD + REJECT_DOWN + CALM,
    )));
    let t0 = Instant::now();
    tokio::time::sleep(LEAD).await;
    redis.kill();
    let killed = since(t0);
    tokio::time::sleep(REJECT_DOWN).await;
    // Down until the restart begins (it may answer before `restart` returns).
    let restarting = since(t0);
    redis.restart().await;
    let restarted = since(t0);
    let load = load.await.expect("load task");
    let burst = burst(&hookstream.url(), "burst", BURST).await;
    // Sent and answered while Redis was down.
    let while_down: Vec<Option<u16>> = load
        .outcomes
        .iter()
        .filter(|o| o.sent_at >= killed + GRACE && o.sent_at + o.latency < restarting)
        .map(|o| o.status)
        .collect();
    let accepted_while_down = while_down
        .iter()
        .filter(|status| status.is_some_and(|s| (200..300).contains(&s)))
        .count();
    let mut problems = vec![];
    if accepted_while_down > 0 {
        problems.push(format!(
            "{accepted_while_down} of {} requests sent while Redis was down were answered 2xx",
            while_down.len()
        ));
    }
    if while_down.is_empty() {
        problems.push("no request was sent and answered while Redis was down".into());
    }
    let recovery = recovery_after(&load, restarted, restarted + CALM - SETTLE);
    if recovery > RECOVERY_BOUND {
        problems.push(format!(
            "200 again only {:.1} s after Redis was back",
            recovery.as_secs_f64()
        ));
    }
    Run {
        hookstream: &hookstream,
        brokers: broker.brokers(),
        recoveries: vec![recovery],
        load,
        load_prefix: "redis-reject",
        burst,
        problems,
        notes: vec![format!(
            "while Redis was down: {} requests, none answered 2xx: {}",
            while_down.len(),
            if accepted_while_down == 0 {
                "yes"
            } else {
                "NO"
            }
        )],
        inconclusive: None,
        judge: Judge::default(),
    }
    .check()
    .await
}
