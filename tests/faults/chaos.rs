//! Chaos: two replicas, each with the durable spool on a directory of its own, deduplicating on
//! one shared Redis, writing to one broker behind a proxy the test controls, under steady signed
//! load spread over both. For over a minute a nemesis, on a schedule drawn from a seeded
//! generator, every few seconds does one of: freeze the broker (SIGSTOP), stall the network to it
//! or reset its connections (at the proxy), SIGKILL or SIGTERM a replica (started again on the
//! same spool directory and ports), SIGKILL or SIGTERM a replica while the broker is frozen,
//! SIGKILL a replica just after the broker thaws (while its spool drains), kill Redis (started
//! again empty) or freeze it. Each fault heals after a few seconds. Then, once both spools are
//! empty:
//! - every id answered 2xx (200 written, 202 spooled) must be in Kafka;
//! - the copies of an id beyond its first (duplicates), per replica, must not exceed what its
//!   processes counted in `hookstream_spool_possible_duplicates_total`. A process's counters die
//!   with it, so every replica is scraped every half second and just before it is stopped, and
//!   the last scrape of each process is summed. A failure names the processes that wrote more
//!   copies than they counted: the one running when a copy was produced (its Kafka timestamp)
//!   wrote it. (A process stopped by SIGTERM goes on forwarding after its `/metrics` has closed:
//!   what it counts then no scrape sees, and the failure says how many copies came after its
//!   last scrape.)
//!
//! Other answers (503, connections refused while a replica is down) are reported, not failed.
//! The seed is printed first and in the outcome; `HOOKSTREAM_TEST_CHAOS_SEED=N` replays a run's
//! schedule: the same faults, in the same order, on the same targets, for as long (a replica
//! slow to stop delays the faults after it; those that no longer fit the window are skipped).
//! The load's interleaving with them is not replayed.

use crate::harness::*;
use crate::scenarios::{rate, read_back, since, Outcome};
use crate::spool::drained;
use crate::support::process::{metric_series, metric_sum};
use crate::support::proxy::{Fault as Network, ProxiedBroker};
use crate::support::{temp_dir, RedisServer};
use hookstream::load::{self, Report};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Load before the first fault.
const LEAD: Duration = Duration::from_secs(3);
/// Every fault begins and heals within this window after the lead.
const NEMESIS: Duration = Duration::from_secs(75);
/// Load after the window.
const CALM: Duration = Duration::from_secs(5);
/// Calm before each fault, drawn between these bounds.
const GAP: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3));
/// How long each fault lasts, drawn between these bounds.
const HOLD: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(5));
/// How long a broker freeze that a replica is hit during lasts: long enough for the replica to
/// spool (`spool.after`, 2 s) before it is hit.
const FROZEN_HOLD: (Duration, Duration) = (Duration::from_secs(4), Duration::from_secs(6));
/// When a replica is hit during a broker freeze, from its beginning: after `spool.after`, so that
/// its spool holds first attempts whose fate is unknown.
const HIT_WHILE_FROZEN: (Duration, Duration) =
    (Duration::from_millis(2500), Duration::from_millis(3500));
/// When a replica is killed after a broker freeze, from the thaw: while its first attempts are
/// acknowledged and its forwarder writes what it spooled.
const HIT_AFTER_THAW: (Duration, Duration) = (Duration::ZERO, Duration::from_millis(1500));
/// How often each replica's counters are read.
const SCRAPE_EVERY: Duration = Duration::from_millis(500);
/// A replica sent SIGTERM exits within this (it drains requests, then the producer and the spool,
/// each for up to `server.shutdown_timeout`, 10 s by default).
const EXIT_BOUND: Duration = Duration::from_secs(30);
const NAMES: [&str; 2] = ["a", "b"];
const POSSIBLE_DUPLICATES: &str = "hookstream_spool_possible_duplicates_total";
const SPOOL_RECORDS: &str = "hookstream_spool_records";
const SPOOLED: &str = "hookstream_spooled_total";
const SPOOL_FORWARDED: &str = "hookstream_spool_forwarded_total";
const PRODUCE_FAILURES: &str = "hookstream_kafka_produce_failures_total";
/// Ids listed in a problem, at most.
const LISTED: usize = 5;

/// SplitMix64: a tiny seeded generator, so that a seed replays a schedule.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration between the bounds, to the millisecond.
    fn between(&mut self, (low, high): (Duration, Duration)) -> Duration {
        let span = u64::try_from((high - low).as_millis()).unwrap_or(u64::MAX - 1);
        low + Duration::from_millis(self.below(span + 1))
    }
}

/// `HOOKSTREAM_TEST_CHAOS_SEED`, or a fresh one.
fn seed() -> u64 {
    match std::env::var("HOOKSTREAM_TEST_CHAOS_SEED") {
        Ok(seed) => seed
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("HOOKSTREAM_TEST_CHAOS_SEED is not a number: {seed:?}")),
        Err(_) => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            // Short enough to type.
            SplitMix64(nanos ^ u64::from(std::process::id())).below(1_000_000_000)
        }
    }
}

/// What the nemesis does at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// SIGSTOP, then SIGCONT (Tansu's memory storage survives it).
    BrokerFrozen,
    /// The proxy forwards nothing, either way.
    NetworkStalled,
    /// The proxy resets every connection and each new one.
    NetworkReset,
    /// SIGKILL; started again on the same spool directory and ports after the hold.
    ReplicaKilled(usize),
    /// SIGTERM (it drains and exits); started again after the hold.
    ReplicaTerminated(usize),
    /// The broker frozen; once the replica has spooled, it is SIGKILLed and started again at
    /// once, while the broker is still frozen: its spool holds first attempts of unknown fate.
    ReplicaKilledWhileBrokerFrozen(usize),
    /// The broker frozen; once the replica has spooled, it is sent SIGTERM. The broker thaws at
    /// the end of the hold whether or not the replica has exited; it is started again once it
    /// has (a rolling restart during an outage).
    ReplicaTerminatedWhileBrokerFrozen(usize),
    /// The broker frozen; shortly after it thaws, while the replica's first attempts are
    /// acknowledged and its forwarder drains the spool, the replica is SIGKILLed and started
    /// again at once.
    ReplicaKilledAfterThaw(usize),
    /// SIGKILL; started again empty after the hold.
    RedisKilled,
    /// SIGSTOP, then SIGCONT.
    RedisFrozen,
}

impl Fault {
    /// Weighted towards the broker and the replicas, where records are at stake.
    fn draw(rng: &mut SplitMix64) -> Fault {
        let replica = rng.below(NAMES.len() as u64) as usize;
        match rng.below(12) {
            0 => Fault::BrokerFrozen,
            1 => Fault::NetworkStalled,
            2 => Fault::NetworkReset,
            3 | 4 => Fault::ReplicaKilled(replica),
            5 => Fault::ReplicaTerminated(replica),
            6 => Fault::ReplicaKilledWhileBrokerFrozen(replica),
            7 => Fault::ReplicaTerminatedWhileBrokerFrozen(replica),
            8 | 9 => Fault::ReplicaKilledAfterThaw(replica),
            10 => Fault::RedisKilled,
            _ => Fault::RedisFrozen,
        }
    }

    /// How long it lasts, and when within it (or after it) the replica is hit, if at all.
    fn timing(self, rng: &mut SplitMix64) -> (Duration, Duration) {
        match self {
            Fault::ReplicaKilledWhileBrokerFrozen(_)
            | Fault::ReplicaTerminatedWhileBrokerFrozen(_) => {
                (rng.between(FROZEN_HOLD), rng.between(HIT_WHILE_FROZEN))
            }
            Fault::ReplicaKilledAfterThaw(_) => {
                let hold = rng.between(FROZEN_HOLD);
                (hold, hold + rng.between(HIT_AFTER_THAW))
            }
            _ => (rng.between(HOLD), Duration::ZERO),
        }
    }
}

impl Fault {
    /// What it does, `replica` naming the replica it hits.
    fn text(self, replica: &str) -> String {
        match self {
            Fault::BrokerFrozen => "broker frozen".into(),
            Fault::NetworkStalled => "network to the broker stalled".into(),
            Fault::NetworkReset => "connections to the broker reset".into(),
            Fault::ReplicaKilled(_) => format!("{replica} killed"),
            Fault::ReplicaTerminated(_) => format!("{replica} terminated"),
            Fault::ReplicaKilledWhileBrokerFrozen(_) => {
                format!("broker frozen + {replica} killed meanwhile")
            }
            Fault::ReplicaTerminatedWhileBrokerFrozen(_) => {
                format!("broker frozen + {replica} terminated meanwhile")
            }
            Fault::ReplicaKilledAfterThaw(_) => {
                format!("broker frozen + {replica} killed after the thaw")
            }
            Fault::RedisKilled => "Redis killed".into(),
            Fault::RedisFrozen => "Redis frozen".into(),
        }
    }

    /// The kind of fault, whichever replica it hits.
    fn kind(self) -> String {
        self.text("a replica")
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let replica = match self {
            Fault::ReplicaKilled(r)
            | Fault::ReplicaTerminated(r)
            | Fault::ReplicaKilledWhileBrokerFrozen(r)
            | Fault::ReplicaTerminatedWhileBrokerFrozen(r)
            | Fault::ReplicaKilledAfterThaw(r) => format!("replica {}", NAMES[*r]),
            _ => String::new(),
        };
        f.write_str(&self.text(&replica))
    }
}

/// One planned fault: when it begins (from the start of the load), how long it lasts, and when a
/// replica is hit within it (for the faults that combine a broker freeze with a replica's end).
struct Step {
    at: Duration,
    fault: Fault,
    hold: Duration,
    hit: Duration,
}

/// The whole schedule a seed gives.
fn plan(seed: u64) -> Vec<Step> {
    let mut rng = SplitMix64(seed);
    let mut steps = Vec::new();
    let mut at = LEAD;
    loop {
        at += rng.between(GAP);
        let fault = Fault::draw(&mut rng);
        let (hold, hit) = fault.timing(&mut rng);
        let lasts = hold.max(hit);
        if at + lasts > LEAD + NEMESIS {
            return steps;
        }
        steps.push(Step {
            at,
            fault,
            hold,
            hit,
        });
        at += lasts;
    }
}

/// A fault as it was applied (from the start of the load).
struct Applied {
    from: Duration,
    to: Duration,
    fault: Fault,
}

/// One process of a replica.
struct Life {
    /// When it was launched, from the start of the load (its lifetimes and the next one's do not
    /// overlap: anything it wrote to Kafka carries a time between this and `exited`).
    started: Duration,
    /// When its port accepted connections.
    serving: Duration,
    /// When it was sent a signal, which, and its exit code.
    ended: Option<(Duration, &'static str, Option<i32>)>,
    /// When it had exited.
    exited: Option<Duration>,
    /// Its `/metrics` when last read, and when that was.
    metrics: Option<String>,
    scraped_at: Option<Duration>,
}

impl Life {
    fn new(started: Duration, serving: Duration) -> Life {
        Life {
            started,
            serving,
            ended: None,
            exited: None,
            metrics: None,
            scraped_at: None,
        }
    }

    /// How it ended, for a message.
    fn fate(&self) -> String {
        match (self.ended, self.exited) {
            (Some((at, signal, _)), Some(exited)) => format!(
                "SIG{signal} at {:.1} s, exited at {:.1} s",
                at.as_secs_f64(),
                exited.as_secs_f64()
            ),
            _ => "running to the end".into(),
        }
    }

    /// The sum of a metric's series, as last read.
    fn last(&self, name: &str) -> Option<f64> {
        Some(metric_sum(self.metrics.as_deref()?, name, ""))
    }

    /// The last count of possible duplicates read from it.
    fn possible_duplicates(&self) -> Option<f64> {
        self.last(POSSIBLE_DUPLICATES)
    }

    /// What it counted, as last read: spooled, forwarded, possible duplicates, and the writes
    /// that failed, by reason.
    fn counters(&self) -> String {
        let Some(metrics) = &self.metrics else {
            return "never read".into();
        };
        let mut failures: BTreeMap<&str, f64> = BTreeMap::new();
        for (labels, n) in metric_series(metrics, PRODUCE_FAILURES) {
            let reason = labels
                .split("reason=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?");
            *failures.entry(reason).or_default() += n;
        }
        let failures: Vec<String> = failures
            .iter()
            .filter(|(_, n)| **n > 0.0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        format!(
            "{} records in its spool, {} spooled, {} forwarded, {} possible duplicates, failed writes: {}",
            metric_sum(metrics, SPOOL_RECORDS, ""),
            metric_sum(metrics, SPOOLED, ""),
            metric_sum(metrics, SPOOL_FORWARDED, ""),
            metric_sum(metrics, POSSIBLE_DUPLICATES, ""),
            if failures.is_empty() {
                "none".into()
            } else {
                failures.join(", ")
            }
        )
    }
}

/// A replica: one hookstream at a time on the same ports and spool directory.
struct Replica {
    index: usize,
    hookstream: Hookstream,
    spool_dir: PathBuf,
    lives: Vec<Life>,
}

impl Replica {
    fn name(&self) -> &'static str {
        NAMES[self.index]
    }

    /// Reads the running process's counters into its life; whether it answered.
    async fn scrape(&mut self, t0: Instant) -> bool {
        let Some(metrics) = self.hookstream.metrics_text().await else {
            return false;
        };
        let life = self.lives.last_mut().expect("a life");
        life.metrics = Some(metrics);
        life.scraped_at = Some(since(t0));
        true
    }

    /// Sends `signal` (`KILL` or `TERM`) after a last scrape and waits for the process to end;
    /// what happened, for the schedule.
    async fn stop(
        &mut self,
        signal: &'static str,
        t0: Instant,
        problems: &mut Vec<String>,
    ) -> String {
        self.scrape(t0).await;
        let at = since(t0);
        self.hookstream.signal(signal);
        let code = if signal == "TERM" {
            // Its forwarder goes on while it drains: read until its admin port closes.
            let deadline = Instant::now() + EXIT_BOUND;
            loop {
                let exited = self
                    .hookstream
                    .try_wait_exit(Duration::from_millis(100))
                    .await;
                if let Some(code) = exited {
                    break code;
                }
                if Instant::now() > deadline {
                    problems.push(format!(
                        "replica {} did not exit within {} s of SIGTERM at {:.1} s (then killed)",
                        self.name(),
                        EXIT_BOUND.as_secs(),
                        at.as_secs_f64()
                    ));
                    self.hookstream.signal("KILL");
                    break self.hookstream.wait_exit(Duration::from_secs(10)).await;
                }
                self.scrape(t0).await;
            }
        } else {
            self.hookstream.wait_exit(Duration::from_secs(10)).await
        };
        if signal == "TERM" && code != Some(0) {
            problems.push(format!(
                "replica {} exited with {code:?} after SIGTERM at {:.1} s",
                self.name(),
                at.as_secs_f64()
            ));
        }
        let process = self.lives.len();
        let life = self.lives.last_mut().expect("a life");
        life.ended = Some((at, signal, code));
        life.exited = Some(since(t0));
        let how = match code {
            Some(code) => format!(
                "exit code {code} {:.1} s after SIG{signal}",
                (since(t0) - at).as_secs_f64()
            ),
            None => format!("by SIG{signal}"),
        };
        format!(
            "process {process} ended ({how}); at its last scrape: {}",
            life.counters()
        )
    }

    async fn start(&mut self, t0: Instant) {
        let launched = since(t0);
        self.hookstream.restart().await;
        self.lives.push(Life::new(launched, since(t0)));
    }

    /// When it had no process answering: from each stop to the next start.
    fn down(&self) -> Vec<(Duration, Duration)> {
        self.lives
            .windows(2)
            .filter_map(|pair| Some((pair[0].ended?.0, pair[1].serving)))
            .collect()
    }

    /// Requests of `load` that got no answer (connection refused or reset, timeout): in all,
    /// and those that ended while the replica was stopping or down.
    fn unanswered(&self, load: &Report) -> (usize, usize) {
        let down = self.down();
        let unanswered: Vec<Duration> = load
            .outcomes
            .iter()
            .filter(|o| o.status.is_none())
            .map(|o| o.sent_at + o.latency)
            .collect();
        let while_down = unanswered
            .iter()
            .filter(|at| down.iter().any(|&(from, to)| from <= **at && **at <= to))
            .count();
        (unanswered.len(), while_down)
    }

    /// Which process was running at `at` (1-based), if any.
    fn process_at(&self, at: Duration) -> Option<usize> {
        self.lives
            .iter()
            .position(|l| l.started <= at && l.exited.is_none_or(|end| at <= end))
            .map(|i| i + 1)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.spool_dir);
    }
}

async fn replica(index: usize, proxied: &ProxiedBroker, redis: &RedisServer) -> Replica {
    let spool_dir = temp_dir(&format!("chaos-{}-spool", NAMES[index]));
    let hookstream = Hookstream::start_with(
        &proxied.brokers(),
        "faults-chaos",
        &[
            ("HOOKSTREAM__SPOOL__ENABLED", "true"),
            ("HOOKSTREAM__SPOOL__DIR", &spool_dir.display().to_string()),
            ("HOOKSTREAM__DEDUPE__BACKEND", "redis"),
            ("HOOKSTREAM__DEDUPE__REDIS__URL", &redis.url()),
        ],
    )
    .await;
    Replica {
        index,
        hookstream,
        spool_dir,
        lives: vec![Life::new(Duration::ZERO, Duration::ZERO)],
    }
}

/// Everything the nemesis acts on.
struct Cluster {
    proxied: ProxiedBroker,
    redis: RedisServer,
    replicas: Vec<Arc<Mutex<Replica>>>,
    t0: Instant,
}

impl Cluster {
    /// Applies `step` and heals it; what happened, beyond the fault itself.
    async fn apply(&mut self, step: &Step, problems: &mut Vec<String>) -> String {
        let began = Instant::now();
        let healed_at = began + step.hold;
        let broker = &self.proxied.broker;
        match step.fault {
            Fault::BrokerFrozen => {
                broker.signal("STOP");
                tokio::time::sleep_until(healed_at.into()).await;
                broker.signal("CONT");
                String::new()
            }
            Fault::NetworkStalled | Fault::NetworkReset => {
                self.proxied.set(if step.fault == Fault::NetworkStalled {
                    Network::Stall
                } else {
                    Network::Reset
                });
                tokio::time::sleep_until(healed_at.into()).await;
                self.proxied.set(Network::None);
                String::new()
            }
            Fault::ReplicaKilled(r) | Fault::ReplicaTerminated(r) => {
                let signal = if matches!(step.fault, Fault::ReplicaKilled(_)) {
                    "KILL"
                } else {
                    "TERM"
                };
                let mut replica = self.replicas[r].lock().await;
                let ended = replica.stop(signal, self.t0, problems).await;
                tokio::time::sleep_until(healed_at.into()).await;
                replica.start(self.t0).await;
                format!("; {ended}; process {} started", replica.lives.len())
            }
            Fault::ReplicaKilledWhileBrokerFrozen(r) | Fault::ReplicaKilledAfterThaw(r) => {
                broker.signal("STOP");
                let thaw = async {
                    tokio::time::sleep_until(healed_at.into()).await;
                    broker.signal("CONT");
                };
                let kill = async {
                    tokio::time::sleep_until((began + step.hit).into()).await;
                    let mut replica = self.replicas[r].lock().await;
                    let killed = since(self.t0);
                    let ended = replica.stop("KILL", self.t0, problems).await;
                    replica.start(self.t0).await;
                    format!(
                        "; killed at {:.1} s: {ended}; process {} started",
                        killed.as_secs_f64(),
                        replica.lives.len()
                    )
                };
                tokio::join!(thaw, kill).1
            }
            Fault::ReplicaTerminatedWhileBrokerFrozen(r) => {
                broker.signal("STOP");
                let thaw = async {
                    tokio::time::sleep_until(healed_at.into()).await;
                    broker.signal("CONT");
                };
                let terminate = async {
                    tokio::time::sleep_until((began + step.hit).into()).await;
                    let mut replica = self.replicas[r].lock().await;
                    let terminated = since(self.t0);
                    let ended = replica.stop("TERM", self.t0, problems).await;
                    replica.start(self.t0).await;
                    format!(
                        "; terminated at {:.1} s: {ended}; process {} started",
                        terminated.as_secs_f64(),
                        replica.lives.len()
                    )
                };
                tokio::join!(thaw, terminate).1
            }
            Fault::RedisKilled => {
                self.redis.kill();
                tokio::time::sleep_until(healed_at.into()).await;
                self.redis.restart().await;
                String::new()
            }
            Fault::RedisFrozen => {
                self.redis.signal("STOP");
                tokio::time::sleep_until(healed_at.into()).await;
                self.redis.signal("CONT");
                String::new()
            }
        }
    }
}

/// Reads every replica's counters every [`SCRAPE_EVERY`] until aborted.
fn scrape_periodically(
    replicas: Vec<Arc<Mutex<Replica>>>,
    t0: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for replica in &replicas {
                replica.lock().await.scrape(t0).await;
            }
            tokio::time::sleep(SCRAPE_EVERY).await;
        }
    })
}

/// The id of a replica's request, how it was answered, by which of its processes, and which
/// fault was on (or last healed) then.
fn describe(
    id: &str,
    outcome: Option<&load::Outcome>,
    replica: &Replica,
    applied: &[Applied],
) -> String {
    let Some(outcome) = outcome else {
        return format!("{id} (not sent by the load)");
    };
    let answered = outcome.sent_at + outcome.latency;
    let status = outcome
        .status
        .map_or("no answer".to_string(), |s| s.to_string());
    let process = replica
        .process_at(answered)
        .map_or("no process".into(), |p| format!("process {p}"));
    let fault = match applied.iter().rev().find(|a| a.from <= answered) {
        Some(a) if answered <= a.to => format!(
            "during {} ({:.1}–{:.1} s)",
            a.fault,
            a.from.as_secs_f64(),
            a.to.as_secs_f64()
        ),
        Some(a) => format!(
            "{:.1} s after {} healed",
            (answered - a.to).as_secs_f64(),
            a.fault
        ),
        None => "before any fault".into(),
    };
    format!(
        "{id} ({status}, sent at {:.1} s, answered at {:.1} s by {process}, {fault})",
        outcome.sent_at.as_secs_f64(),
        answered.as_secs_f64()
    )
}

fn is_2xx(outcome: &load::Outcome) -> bool {
    outcome.status.is_some_and(|s| (200..300).contains(&s))
}

/// `200: n, 202: m` for the statuses of `outcomes`.
fn by_status<'a>(outcomes: impl Iterator<Item = Option<&'a load::Outcome>>) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for outcome in outcomes {
        let key = match outcome.map(|o| o.status) {
            Some(Some(s)) => s.to_string(),
            Some(None) => "no answer".into(),
            None => "not sent".into(),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one replica's load found in Kafka.
struct Verdict {
    accepted: usize,
    missing: usize,
    /// Copies beyond the first, over the replica's ids.
    seen: usize,
    /// Possible duplicates counted, over its processes.
    counted: f64,
    /// Processes that wrote more copies than they counted, when the replica's total was enough.
    mismatch: Option<String>,

    /// Ids in Kafka whose request was not answered 2xx.
    written_unanswered: usize,
}

/// When the copies of `id` were produced (their Kafka timestamps, which Tansu keeps as the
/// producer set them: when the writing process handed them to librdkafka), from the start of the
/// load, earliest first.
fn copies_produced(id: &str, stored: &Stored, epoch_ms: i64) -> Vec<Duration> {
    let mut times: Vec<Duration> = stored
        .produced_at
        .get(id)
        .into_iter()
        .flatten()
        .map(|ms| Duration::from_millis(u64::try_from(ms - epoch_ms).unwrap_or(0)))
        .collect();
    times.sort();
    times
}

/// When the copies of `id` were produced, and by which process.
fn produced(id: &str, stored: &Stored, replica: &Replica, epoch_ms: i64) -> String {
    let times: Vec<String> = copies_produced(id, stored, epoch_ms)
        .into_iter()
        .map(|at| {
            let process = replica
                .process_at(at)
                .map_or("no process".into(), |p| format!("process {p}"));
            format!("{:.1} s by {process}", at.as_secs_f64())
        })
        .collect();
    format!("produced at {}", times.join(", "))
}

fn judge(
    replica: &Replica,
    load: &Report,
    stored: &Stored,
    applied: &[Applied],
    epoch_ms: i64,
    problems: &mut Vec<String>,
) -> Verdict {
    let copies = &stored.copies;
    let prefix = format!("chaos-{}", replica.name());
    let outcomes: HashMap<String, &load::Outcome> = load
        .outcomes
        .iter()
        .map(|o| (load::event_id(&prefix, o.seq), o))
        .collect();
    let accepted: Vec<&String> = {
        let mut ids: Vec<(&String, &&load::Outcome)> =
            outcomes.iter().filter(|(_, o)| is_2xx(o)).collect();
        ids.sort_by_key(|(_, o)| o.seq);
        ids.into_iter().map(|(id, _)| id).collect()
    };
    let missing: Vec<&String> = accepted
        .iter()
        .copied()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    let name = replica.name();
    if !missing.is_empty() {
        let listed: Vec<String> = missing
            .iter()
            .take(LISTED)
            .map(|id| describe(id, outcomes.get(*id).copied(), replica, applied))
            .collect();
        problems.push(format!(
            "replica {name}: {} of {} ids answered 2xx are not in Kafka ({}); first: {}",
            missing.len(),
            accepted.len(),
            by_status(missing.iter().map(|id| outcomes.get(*id).copied())),
            listed.join("; ")
        ));
    }
    let own = format!("{prefix}-");
    let mut doubled: Vec<&String> = copies
        .iter()
        .filter(|(id, n)| id.starts_with(&own) && **n > 1)
        .map(|(id, _)| id)
        .collect();
    doubled.sort_by_key(|id| outcomes.get(*id).map_or(u64::MAX, |o| o.seq));
    // Every copy after the first is a rewrite, counted (or not) by the process that wrote it:
    // the one alive when it was produced.
    let mut rewrites: BTreeMap<Option<usize>, Vec<(&String, Duration)>> = BTreeMap::new();
    for id in &doubled {
        for at in copies_produced(id, stored, epoch_ms).into_iter().skip(1) {
            rewrites
                .entry(replica.process_at(at))
                .or_default()
                .push((*id, at));
        }
    }
    let seen: usize = rewrites.values().map(Vec::len).sum();
    let mut counted = 0.0;
    let listed = |ids: &[(&String, Duration)]| -> String {
        ids.iter()
            .take(LISTED)
            .map(|(id, _)| {
                format!(
                    "{}× {}, {}",
                    copies[*id],
                    describe(id, outcomes.get(*id).copied(), replica, applied),
                    produced(id, stored, replica, epoch_ms)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Which processes wrote more copies than they counted.
    let mut offenders = Vec::new();
    for (index, life) in replica.lives.iter().enumerate() {
        let process = index + 1;
        let wrote = rewrites.get(&Some(process)).map_or(&[][..], Vec::as_slice);
        let count = life.possible_duplicates().unwrap_or(0.0);
        counted += count;
        if wrote.len() as f64 <= count {
            continue;
        }
        // A SIGTERMed process forwards (and counts) after its /metrics has closed.
        let last_scrape = life.scraped_at.unwrap_or_default();
        let unseen = wrote.iter().filter(|(_, at)| *at > last_scrape).count();
        let after_close = if unseen > 0 {
            format!(
                "; {unseen} of them produced after its last scrape at {:.1} s (hookstream stops serving /metrics before its last spool drain: what it counts then, no scrape sees)",
                last_scrape.as_secs_f64()
            )
        } else {
            String::new()
        };
        offenders.push(format!(
            "process {process} (from {:.1} s, {}) wrote {} copies of ids already in Kafka ({}) but counted {count}{after_close}; first: {}",
            life.started.as_secs_f64(),
            life.fate(),
            wrote.len(),
            by_status(wrote.iter().map(|(id, _)| outcomes.get(*id).copied())),
            listed(wrote)
        ));
    }
    if let Some(orphans) = rewrites.get(&None) {
        offenders.push(format!(
            "{} copies of ids already in Kafka were produced while none of its processes ran; first: {}",
            orphans.len(),
            listed(orphans)
        ));
    }
    let per_process: Vec<String> = replica
        .lives
        .iter()
        .map(|l| {
            l.possible_duplicates()
                .map_or("?".into(), |n| n.to_string())
        })
        .collect();
    let mismatch = if seen as f64 > counted {
        problems.push(format!(
            "replica {name}: {seen} duplicates in Kafka ({} ids more than once), more than the {counted} possible duplicates its {} processes counted ({}): {}",
            doubled.len(),
            replica.lives.len(),
            per_process.join(" + "),
            offenders.join("; ")
        ));
        None
    } else if offenders.is_empty() {
        None
    } else {
        // Enough counted in all, though not by the processes that wrote them.
        Some(format!("replica {name}: {}", offenders.join("; ")))
    };
    let written_unanswered = copies
        .keys()
        .filter(|id| id.starts_with(&own))
        .filter(|id| !outcomes.get(*id).is_some_and(|o| is_2xx(o)))
        .count();
    Verdict {
        accepted: accepted.len(),
        missing: missing.len(),
        seen,
        counted,
        written_unanswered,
        mismatch,
    }
}

/// What a replica's processes logged (warnings and errors), on the load's clock, without the
/// repeated complaints about Redis and readiness that every Redis or broker fault brings; runs
/// of one message are shown once, with their count.
fn print_warnings(replica: &Replica, epoch_ms: i64) {
    const SHOWN: usize = 40;
    const ROUTINE: [&str; 2] = ["deduplication store call failed", "not ready"];
    let mut lines: Vec<(Duration, String, usize)> = Vec::new();
    for line in replica.hookstream.log().lines() {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let message = json["fields"]["message"].as_str().unwrap_or_default();
        if ROUTINE.iter().any(|r| message.starts_with(r)) {
            continue;
        }
        let at = json["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                Duration::from_millis(u64::try_from(t.timestamp_millis() - epoch_ms).unwrap_or(0))
            });
        let process = at
            .and_then(|at| replica.process_at(at))
            .map_or("?".into(), |p| p.to_string());
        let mut fields = json["fields"].clone();
        if let Some(fields) = fields.as_object_mut() {
            fields.remove("message");
        }
        let text = format!(
            "process {process} {} {message} {fields}",
            json["level"].as_str().unwrap_or_default()
        );
        match lines.last_mut() {
            Some((_, last, n)) if *last == text => *n += 1,
            _ => lines.push((at.unwrap_or_default(), text, 1)),
        }
    }
    eprintln!(
        "replica {}: warnings and errors logged (the last {SHOWN}, without Redis and readiness complaints):",
        replica.name()
    );
    for (at, text, n) in lines.iter().rev().take(SHOWN).rev() {
        let times = if *n > 1 {
            format!(" (×{n})")
        } else {
            String::new()
        };
        eprintln!("  {:6.1} s {text}{times}", at.as_secs_f64());
    }
}

/// The chaos scenario (see the module's documentation).
pub async fn chaos() -> Outcome {
    let seed = seed();
    let steps = plan(seed);
    println!(
        "chaos: seed {seed} (HOOKSTREAM_TEST_CHAOS_SEED={seed} replays it): {} faults planned",
        steps.len()
    );
    let proxied = ProxiedBroker::start().await;
    let redis = RedisServer::start().await;
    let mut replicas = Vec::new();
    for index in 0..NAMES.len() {
        replicas.push(Arc::new(Mutex::new(replica(index, &proxied, &redis).await)));
    }
    let mut loads = Vec::new();
    for replica in &replicas {
        let replica = replica.lock().await;
        loads.push(tokio::spawn(run_load(load_options(
            &replica.hookstream.url(),
            &format!("chaos-{}", replica.name()),
            rate() / NAMES.len() as f64,
            LEAD + NEMESIS + CALM,
        ))));
    }
    let t0 = Instant::now();
    // Records carry their produce time: this is the load's start on that clock.
    let epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let scraper = scrape_periodically(replicas.clone(), t0);
    let mut cluster = Cluster {
        proxied,
        redis,
        replicas: replicas.clone(),
        t0,
    };
    let mut problems = Vec::new();
    let mut applied = Vec::new();
    for step in &steps {
        tokio::time::sleep_until((t0 + step.at).into()).await;
        let from = since(t0);
        // A replica slow to stop delays the steps after it: none may outlast the window.
        if from + step.hold.max(step.hit) > LEAD + NEMESIS {
            println!(
                "chaos: {:5.1} s            {} skipped: no time left",
                from.as_secs_f64(),
                step.fault
            );
            continue;
        }
        let what = cluster.apply(step, &mut problems).await;
        let to = since(t0);
        println!(
            "chaos: {:5.1} s – {:5.1} s  {}{what}",
            from.as_secs_f64(),
            to.as_secs_f64(),
            step.fault
        );
        applied.push(Applied {
            from,
            to,
            fault: step.fault,
        });
    }
    // Healed already, fault by fault; once more, whatever happened.
    cluster.proxied.set(Network::None);
    cluster.proxied.broker.signal("CONT");
    cluster.redis.signal("CONT");
    let mut reports = Vec::new();
    for load in loads {
        reports.push(load.await.expect("load task"));
    }
    let healed = since(t0);
    scraper.abort();
    let _ = scraper.await;

    // Both spools empty (waited for together), then a last reading of every counter.
    let mut guards = Vec::new();
    for replica in &replicas {
        guards.push(replica.lock().await);
    }
    let mut drain_problems: Vec<Vec<String>> = vec![Vec::new(); guards.len()];
    let drains = futures_util::future::join_all(
        guards
            .iter()
            .zip(drain_problems.iter_mut())
            .map(|(replica, problems)| drained(&replica.hookstream, problems)),
    )
    .await;
    for (replica, found) in guards.iter().zip(drain_problems) {
        problems.extend(
            found
                .into_iter()
                .map(|p| format!("replica {}: {p}", replica.name())),
        );
    }
    for replica in guards.iter_mut() {
        if !replica.scrape(t0).await {
            problems.push(format!(
                "replica {}: its metrics cannot be read at the end",
                replica.name()
            ));
        }
    }

    let stored = read_back(
        &guards[0].hookstream,
        &cluster.proxied.brokers(),
        &mut problems,
    )
    .await;
    let mut verdicts = Vec::new();
    let kafka = if stored.complete {
        for (replica, report) in guards.iter().zip(&reports) {
            verdicts.push(judge(
                replica,
                report,
                &stored,
                &applied,
                epoch_ms,
                &mut problems,
            ));
        }
        let accepted: usize = verdicts.iter().map(|v| v.accepted).sum();
        let missing: usize = verdicts.iter().map(|v| v.missing).sum();
        let seen: usize = verdicts.iter().map(|v| v.seen).sum();
        let counted: f64 = verdicts.iter().map(|v| v.counted).sum();
        let per_replica = |f: &dyn Fn(&Verdict) -> String| {
            guards
                .iter()
                .zip(&verdicts)
                .map(|(r, v)| format!("{} {}", r.name(), f(v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "{accepted} answered 2xx, all in Kafka: {}; duplicates seen {seen} ({}), counted {counted} ({}); written though not answered 2xx: {}",
            if missing == 0 {
                "yes".to_string()
            } else {
                format!("NO, {missing} missing")
            },
            per_replica(&|v| v.seen.to_string()),
            per_replica(&|v| v.counted.to_string()),
            per_replica(&|v| v.written_unanswered.to_string()),
        ) + &verdicts
            .iter()
            .filter_map(|v| v.mismatch.as_ref())
            .map(|m| format!("; counted by other processes than wrote them: {m}"))
            .collect::<String>()
    } else {
        problems.push(format!(
            "the broker did not serve every offset of the topic (it holds {} records): nothing could be checked",
            stored.high_watermarks
        ));
        format!(
            "topic holds {} records, not all read",
            stored.high_watermarks
        )
    };

    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for a in &applied {
        *kinds.entry(a.fault.kind()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n}× {k}")).collect();
    let loads: Vec<String> = guards
        .iter()
        .zip(&reports)
        .map(|(r, report)| {
            let (unanswered, while_down) = r.unanswered(report);
            let failures: Vec<&str> = report.first_failures.keys().copied().collect();
            format!(
                "{}: sent {} ({}), {} processes, {unanswered} unanswered ({while_down} while it was stopping or down; {})",
                r.name(),
                report.requests,
                statuses(report),
                r.lives.len(),
                failures.join(", ")
            )
        })
        .collect();
    let drains: Vec<String> = guards
        .iter()
        .zip(&drains)
        .map(|(r, d)| format!("{} {d}", r.name()))
        .collect();
    let summary = format!(
        "seed {seed}; {} faults ({}); {}; {kafka}; load ended {:.0} s in, {}",
        applied.len(),
        kinds.join(", "),
        loads.join("; "),
        healed.as_secs_f64(),
        drains.join(", ")
    );
    if !problems.is_empty() {
        for replica in guards.iter() {
            print_warnings(replica, epoch_ms);
        }
    }
    let log = cluster.proxied.broker.log();
    let inconclusive = log
        .contains("panicked")
        .then(|| "the broker broke itself (its log says \"panicked\")".to_string());
    Outcome {
        inconclusive,
        ..Outcome::judged(summary, &problems)
    }
}
