//! 5,000 slow unauthenticated clients: each sends headers announcing a 1 MiB body, then a few
//! KiB every 5 s, and comes back when it is disconnected. Meanwhile resident memory must stay
//! within 64 MiB of the idle figure, `/healthz` must answer, and signed webhooks must be accepted.
//!
//! Two kinds: without a signature header (refused before their bodies are read), and with a
//! forged one (their bodies must be read before the signature can be checked, so they hold a
//! body slot until they are cut off or time out).
//!
//! A third scenario sends signed bodies that themselves take time to arrive — one at 32 KiB/s,
//! one in two halves 1 s apart — while the forged crowd is connected, first from one address,
//! then from four: each must be answered 200 and be in Kafka.

use crate::harness::*;
use crate::scenarios::Outcome;
use crate::support::{Broker, Storage};
use hookstream::load::Report;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const CLIENTS: usize = 5000;
const ATTACK: Duration = Duration::from_secs(30);
pub(crate) const MEMORY_BOUND_KIB: u64 = 64 * 1024;
const DRIP: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct Tally {
    connects: AtomicU64,
    refused: AtomicU64,
}

/// One slow client: headers, then a few KiB every 5 s; reconnects 5 s after being cut off.
/// A well-formed signature that matches nothing.
const FORGED: &str = "LiveSession-Signature: W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=\r\n";

/// Connects to hookstream from `from` (any 127.0.0.0/8 address is this host).
async fn connect_from(from: std::net::Ipv4Addr, port: u16) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    socket
        .connect((std::net::Ipv4Addr::LOCALHOST, port).into())
        .await
}

pub(crate) async fn slow_client(
    port: u16,
    forged: bool,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    start_after: Duration,
    from: std::net::Ipv4Addr,
) {
    tokio::time::sleep(start_after).await;
    let head = format!(
        "POST /webhooks/livesession HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n{}\r\n",
        if forged { FORGED } else { "" }
    );
    let chunk = vec![b' '; 3 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(from, port).await else {
            tally.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(DRIP).await;
            continue;
        };
        tally.connects.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 1024];
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    // Answered (and closed) or cut off: come back later.
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = tokio::time::sleep(DRIP) => {
                    if stop.load(Ordering::Relaxed) || stream.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
        }
        drop(stream);
        tokio::time::sleep(DRIP).await;
    }
}

/// Slow clients without a signature header.
pub async fn unsigned() -> Outcome {
    slow_clients(false).await
}

/// Slow clients with a forged signature header.
pub async fn forged() -> Outcome {
    slow_clients(true).await
}

async fn slow_clients(forged: bool) -> Outcome {
    let broker = Broker::start(Storage::Memory).await;
    let hookstream = Hookstream::start(&broker.brokers(), "faults-slow").await;
    // Warm up (topic, producer, pools), then take the idle figure.
    let warm = burst(&hookstream.url(), "warm", 500).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = hookstream.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            // Spread over the first 2 s, as a crowd arrives.
            let start_after = Duration::from_micros((i as u64 * 2_000_000) / CLIENTS as u64);
            tokio::spawn(slow_client(
                hookstream.port,
                forged,
                stop.clone(),
                tally.clone(),
                start_after,
                std::net::Ipv4Addr::LOCALHOST,
            ))
        })
        .collect();
    let signed = tokio::spawn(run_load(load_options(
        &hookstream.url(),
        "signed",
        100.0,
        ATTACK - Duration::from_secs(5),
    )));
    let watched = watch(&hookstream, idle).await;
    stop.store(true, Ordering::Relaxed);
    let signed = signed.await.expect("load task");
    for client in clients {
        client.abort();
    }
    let connections = tally.connects.load(Ordering::Relaxed);
    verdict(&watched, &signed, &warm, connections)
}

/// What was seen during the attack.
struct Watched {
    idle: u64,
    peak: u64,
    health_ok: u32,
    health_failed: u32,
}

/// Samples resident memory and `/healthz` every second for the length of the attack.
async fn watch(hookstream: &Hookstream, idle: u64) -> Watched {
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let url = format!("http://127.0.0.1:{}/healthz", hookstream.port);
    let mut watched = Watched {
        idle,
        peak: idle,
        health_ok: 0,
        health_failed: 0,
    };
    let started = Instant::now();
    while started.elapsed() < ATTACK {
        tokio::time::sleep(Duration::from_secs(1)).await;
        watched.peak = watched.peak.max(hookstream.rss_kib());
        match health.get(&url).send().await {
            Ok(r) if r.status() == 200 => watched.health_ok += 1,
            _ => watched.health_failed += 1,
        }
    }
    watched
}

fn verdict(watched: &Watched, signed: &Report, warm: &Report, connections: u64) -> Outcome {
    let mut problems = vec![];
    let growth = watched.peak.saturating_sub(watched.idle);
    if growth > MEMORY_BOUND_KIB {
        problems.push(format!(
            "resident memory grew by {} MiB (bound {} MiB)",
            growth / 1024,
            MEMORY_BOUND_KIB / 1024
        ));
    }
    if watched.health_failed > 0 {
        problems.push(format!("/healthz failed {} times", watched.health_failed));
    }
    if signed.count(200) != signed.requests || signed.requests == 0 {
        problems.push(format!("signed webhooks: {}", statuses(signed)));
    }
    if warm.count(200) != warm.requests {
        problems.push(format!("warm-up: {}", statuses(warm)));
    }
    let summary = format!(
        "{CLIENTS} slow clients, {connections} connections in {} s; RSS idle {} MiB, peak {} MiB (+{} MiB, bound +{} MiB); /healthz {}/{} OK; signed webhooks {} ({}), p99 {:.1} ms",
        ATTACK.as_secs(),
        watched.idle / 1024,
        watched.peak / 1024,
        growth / 1024,
        MEMORY_BOUND_KIB / 1024,
        watched.health_ok,
        watched.health_ok + watched.health_failed,
        signed.requests,
        statuses(signed),
        signed.latency_ms(0.99),
    );
    Outcome::judged(summary, &problems)
}
