//! The fault suite: hookstream under steady signed load while its broker freezes, dies and comes
//! back on persistent storage, while it freezes or dies with the durable spool enabled, while
//! Redis (shared deduplication) dies or freezes, while hookstream itself is killed or terminated,
//! while 5,000 slow clients (without a signature header, or with a forged one) keep connecting,
//! and while signed bodies that take seconds to arrive compete with those forged ones. Each
//! scenario checks that every id answered 2xx is in Kafka, counts duplicates, and checks
//! recovery; it prints one line with its figures.
//!
//! `chaos` ([`chaos`]) combines them: two replicas with their own spools and shared Redis
//! deduplication, one broker behind a proxy, and for over a minute a nemesis that, on a schedule
//! drawn from a seed, freezes the broker, stalls or resets the network to it, kills or
//! terminates a replica, or kills or freezes Redis, a few seconds at a time. Every id answered
//! 2xx must be in Kafka, and the duplicates there must not exceed what the replicas counted as
//! possible duplicates. It prints its seed and the faults as it applies them;
//! `HOOKSTREAM_TEST_CHAOS_SEED=N` replays a run's schedule.
//!
//! `cargo test --test faults [NAME…]` runs the scenarios whose names contain a NAME (all without
//! one); `scripts/faults` does the same. Every scenario starts its own Tansu broker and the real
//! hookstream binary. A run the broker itself broke (Tansu's sqlite engine can panic after a
//! kill) is inconclusive and repeated, never counted as a pass.

// The API target compiles all of support with dead code linted; this one uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod chaos;
mod harness;
mod redis;
mod scenarios;
mod slow_clients;
mod slow_signed;
mod spool;

use scenarios::Outcome;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

type Scenario = fn() -> Pin<Box<dyn Future<Output = Outcome>>>;

const SCENARIOS: &[(&str, Scenario)] = &[
    ("broker_frozen", || Box::pin(scenarios::broker_frozen())),
    ("broker_restarted", || {
        Box::pin(scenarios::broker_restarted())
    }),
    ("hookstream_killed", || {
        Box::pin(scenarios::hookstream_killed())
    }),
    ("hookstream_terminated", || {
        Box::pin(scenarios::hookstream_terminated())
    }),
    ("hookstream_rolled_out", || {
        Box::pin(scenarios::hookstream_rolled_out())
    }),
    ("redis_down_write_mode", || {
        Box::pin(redis::redis_down_write_mode())
    }),
    ("redis_down_reject_mode", || {
        Box::pin(redis::redis_down_reject_mode())
    }),
    ("spool_broker_frozen", || {
        Box::pin(spool::broker_frozen_spooled())
    }),
    ("spool_broker_dead_then_killed", || {
        Box::pin(spool::broker_dead_then_hookstream_killed_spooled())
    }),
    ("slow_clients", || Box::pin(slow_clients::unsigned())),
    ("slow_clients_forged_signature", || {
        Box::pin(slow_clients::forged())
    }),
    ("slow_signed_bodies_among_forged", || {
        Box::pin(slow_signed::slow_signed_bodies())
    }),
    ("chaos", || Box::pin(chaos::chaos())),
];

/// Attempts per scenario when the broker breaks itself.
const ATTEMPTS: u32 = 3;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in SCENARIOS {
            println!("{name}: test");
        }
        return std::process::ExitCode::SUCCESS;
    }
    // Like libtest: words are name filters, flags are ignored.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let chosen: Vec<_> = SCENARIOS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if chosen.is_empty() {
        return std::process::ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "fault suite: {} scenario(s), {} signed webhooks/s of steady load",
        chosen.len(),
        scenarios::rate()
    );
    let mut failed = Vec::new();
    for (name, scenario) in chosen {
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let outcome = runtime.block_on(scenario());
            let took = started.elapsed().as_secs();
            match (&outcome.inconclusive, attempt < ATTEMPTS) {
                (Some(why), true) => {
                    println!(
                        "{name:<30} INCONCLUSIVE ({why}; {took} s), repeating: {}",
                        outcome.summary
                    );
                    attempt += 1;
                }
                (Some(why), false) => {
                    println!(
                        "{name:<30} INCONCLUSIVE ({why}) in all {ATTEMPTS} attempts: {}",
                        outcome.summary
                    );
                    failed.push(*name);
                    break;
                }
                (None, _) => {
                    let verdict = if outcome.passed { "ok" } else { "FAILED" };
                    println!("{name:<30} {verdict} ({took} s): {}", outcome.summary);
                    if !outcome.passed {
                        failed.push(*name);
                    }
                    break;
                }
            }
        }
    }
    if failed.is_empty() {
        println!("fault suite: ok");
        std::process::ExitCode::SUCCESS
    } else {
        println!("fault suite: FAILED: {}", failed.join(", "));
        std::process::ExitCode::FAILURE
    }
}
