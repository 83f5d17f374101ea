//! Chaos: two replicas, each with the durable spool on a directory of its own, deduplicating on
//! one shared Redis, writing to one broker behind a proxy the test controls, under steady signed
//! load spread over both. For over a minute a nemesis, on a schedule drawn from a seeded
//! generator, every few seconds does one of: freeze the broker (SIGSTOP), stall the network to it
//! or reset its connections (at the proxy), SIGKILL or SIGTERM a replica (started again on the
//! same spool directory and ports), SIGKILL a replica while the broker is frozen, kill Redis
//! (started again empty) or freeze it. Each fault heals after a few seconds. Then, once both
//! spools are empty:
//! - every id answered 2xx (200 written, 202 spooled) must be in Kafka;
//! - the ids present more than once in Kafka, per replica, must not exceed what its processes
//!   counted in `hookstream_spool_possible_duplicates_total`. A process's counters die with it,
//!   so each replica's are scraped every half second and just before it is stopped, and the last
//!   scrape of every process is summed.
//!
//! Other answers (503, connections refused while a replica is down) are reported, not failed.
//! The seed is printed first and in the outcome; `HOOKSTREAM_TEST_CHAOS_SEED=N` replays a run's
//! schedule (the faults, their order, targets and timing, not the load's interleaving).

use crate::harness::*;
use crate::scenarios::{print_log_tail, rate, read_back, since, Outcome};
use crate::spool::drained;
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
/// How often each replica's counters are read.
const SCRAPE_EVERY: Duration = Duration::from_millis(500);
/// A replica sent SIGTERM exits within this (it drains requests, then the producer and the spool,
/// each for up to `server.shutdown_timeout`, 10 s by default).
const EXIT_BOUND: Duration = Duration::from_secs(30);
const NAMES: [&str; 2] = ["a", "b"];
const POSSIBLE_DUPLICATES: &str = "hookstream_spool_possible_duplicates_total";
const SPOOL_RECORDS: &str = "hookstream_spool_records";
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
    /// The broker frozen; a third of the way in, the replica SIGKILLed and started again at
    /// once, while the broker is still frozen: its spool holds first attempts of unknown fate.
    ReplicaKilledWhileBrokerFrozen(usize),
    /// SIGKILL; started again empty after the hold.
    RedisKilled,
    /// SIGSTOP, then SIGCONT.
    RedisFrozen,
}

impl Fault {
    /// Weighted towards the broker and the replicas, where records are at stake.
    fn draw(rng: &mut SplitMix64) -> Fault {
        let replica = rng.below(NAMES.len() as u64) as usize;
        match rng.below(10) {
            0 | 1 => Fault::BrokerFrozen,
            2 => Fault::NetworkStalled,
            3 => Fault::NetworkReset,
            4 | 5 => Fault::ReplicaKilled(replica),
            6 => Fault::ReplicaTerminated(replica),
            7 => Fault::ReplicaKilledWhileBrokerFrozen(replica),
            8 => Fault::RedisKilled,
            _ => Fault::RedisFrozen,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::BrokerFrozen => write!(f, "broker frozen"),
            Fault::NetworkStalled => write!(f, "network to the broker stalled"),
            Fault::NetworkReset => write!(f, "connections to the broker reset"),
            Fault::ReplicaKilled(r) => write!(f, "replica {} killed", NAMES[*r]),
            Fault::ReplicaTerminated(r) => write!(f, "replica {} terminated", NAMES[*r]),
            Fault::ReplicaKilledWhileBrokerFrozen(r) => {
                write!(f, "broker frozen, replica {} killed meanwhile", NAMES[*r])
            }
            Fault::RedisKilled => write!(f, "Redis killed"),
            Fault::RedisFrozen => write!(f, "Redis frozen"),
        }
    }
}

/// One planned fault: when it begins (from the start of the load) and how long it lasts.
struct Step {
    at: Duration,
    fault: Fault,
    hold: Duration,
}

/// The whole schedule a seed gives.
fn plan(seed: u64) -> Vec<Step> {
    let mut rng = SplitMix64(seed);
    let mut steps = Vec::new();
    let mut at = LEAD;
    loop {
        at += rng.between(GAP);
        let hold = rng.between(HOLD);
        let fault = Fault::draw(&mut rng);
        if at + hold > LEAD + NEMESIS {
            return steps;
        }
        steps.push(Step { at, fault, hold });
        at += hold;
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
    /// From the start of the load.
    started: Duration,
    /// When it was sent a signal, which, and its exit code.
    ended: Option<(Duration, &'static str, Option<i32>)>,
    /// The last count of possible duplicates read from it.
    possible_duplicates: Option<f64>,
    /// Records in its spool when last read.
    spooled: Option<f64>,
}

impl Life {
    fn new(started: Duration) -> Life {
        Life {
            started,
            ended: None,
            possible_duplicates: None,
            spooled: None,
        }
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
    async fn scrape(&mut self) -> bool {
        let Some(duplicates) = self.hookstream.try_metric(POSSIBLE_DUPLICATES, "").await else {
            return false;
        };
        let spooled = self.hookstream.try_metric(SPOOL_RECORDS, "").await;
        let life = self.lives.last_mut().expect("a life");
        life.possible_duplicates = Some(duplicates);
        life.spooled = spooled.or(life.spooled);
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
        self.scrape().await;
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
                self.scrape().await;
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
        format!(
            "process {process} ended ({}), {} records spooled at its last scrape, {} possible duplicates counted",
            code.map_or("by the signal".into(), |c| format!("exit code {c}")),
            figure(life.spooled),
            figure(life.possible_duplicates),
        )
    }

    async fn start(&mut self, t0: Instant) {
        self.hookstream.restart().await;
        self.lives.push(Life::new(since(t0)));
    }

    /// Possible duplicates counted over every process.
    fn counted(&self) -> f64 {
        self.lives
            .iter()
            .map(|l| l.possible_duplicates.unwrap_or(0.0))
            .sum()
    }

    /// Which process was running at `at` (1-based), if any.
    fn process_at(&self, at: Duration) -> Option<usize> {
        self.lives
            .iter()
            .position(|l| l.started <= at && l.ended.is_none_or(|(end, _, _)| at <= end))
            .map(|i| i + 1)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.spool_dir);
    }
}

fn figure(value: Option<f64>) -> String {
    value.map_or("?".into(), |v| v.to_string())
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
        lives: vec![Life::new(Duration::ZERO)],
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
            Fault::ReplicaKilledWhileBrokerFrozen(r) => {
                broker.signal("STOP");
                tokio::time::sleep(step.hold / 3).await;
                let mut replica = self.replicas[r].lock().await;
                let killed = since(self.t0);
                let ended = replica.stop("KILL", self.t0, problems).await;
                replica.start(self.t0).await;
                let started = replica.lives.len();
                drop(replica);
                tokio::time::sleep_until(healed_at.into()).await;
                broker.signal("CONT");
                format!(
                    "; killed at {:.1} s: {ended}; process {started} started",
                    killed.as_secs_f64()
                )
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
fn scrape_periodically(replicas: Vec<Arc<Mutex<Replica>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for replica in &replicas {
                replica.lock().await.scrape().await;
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
    seen: u32,
    counted: f64,
    /// Ids in Kafka whose request was not answered 2xx.
    written_unanswered: usize,
}

fn judge(
    replica: &Replica,
    load: &Report,
    copies: &HashMap<String, u32>,
    applied: &[Applied],
    problems: &mut Vec<String>,
) -> Verdict {
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
    let mut doubled: Vec<(&String, u32)> = copies
        .iter()
        .filter(|(id, n)| id.starts_with(&own) && **n > 1)
        .map(|(id, n)| (id, *n))
        .collect();
    doubled.sort_by_key(|(id, _)| outcomes.get(*id).map_or(u64::MAX, |o| o.seq));
    let seen: u32 = doubled.iter().map(|(_, n)| n - 1).sum();
    let counted = replica.counted();
    if f64::from(seen) > counted {
        let listed: Vec<String> = doubled
            .iter()
            .take(LISTED)
            .map(|(id, n)| {
                format!(
                    "{n}× {}",
                    describe(id, outcomes.get(*id).copied(), replica, applied)
                )
            })
            .collect();
        let per_process: Vec<String> = replica
            .lives
            .iter()
            .map(|l| figure(l.possible_duplicates))
            .collect();
        problems.push(format!(
            "replica {name}: {seen} duplicates in Kafka ({} ids more than once; {}), more than the {counted} possible duplicates its {} processes counted ({}); first: {}",
            doubled.len(),
            by_status(doubled.iter().map(|(id, _)| outcomes.get(*id).copied())),
            replica.lives.len(),
            per_process.join(" + "),
            listed.join("; ")
        ));
    }
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
    let scraper = scrape_periodically(replicas.clone());
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
        if !replica.scrape().await {
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
                &stored.copies,
                &applied,
                &mut problems,
            ));
        }
        let accepted: usize = verdicts.iter().map(|v| v.accepted).sum();
        let missing: usize = verdicts.iter().map(|v| v.missing).sum();
        let seen: u32 = verdicts.iter().map(|v| v.seen).sum();
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
        )
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
        let kind = match a.fault {
            Fault::ReplicaKilled(_) => "replica killed".to_string(),
            Fault::ReplicaTerminated(_) => "replica terminated".to_string(),
            Fault::ReplicaKilledWhileBrokerFrozen(_) => {
                "replica killed while the broker was frozen".to_string()
            }
            other => other.to_string(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n}× {k}")).collect();
    let loads: Vec<String> = guards
        .iter()
        .zip(&reports)
        .map(|(r, report)| {
            format!(
                "{}: sent {} ({}), {} processes",
                r.name(),
                report.requests,
                statuses(report),
                r.lives.len()
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
            eprintln!("replica {}:", replica.name());
            print_log_tail(&replica.hookstream);
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
