//! Signed bodies that take time to arrive, among 5,000 slow clients with forged signature headers.
//!
//! A provider's delivery can be slow on the wire: a large body over a long path, a client that
//! waits for `100 Continue`, a congested network. Such a body must not lose its body slot to
//! forged bodies that arrive slower still. While the forged crowd of `slow_clients` is connected —
//! first all from 127.0.0.1, then from 127.0.0.2–127.0.0.5 — signed deliveries are sent one after
//! another, alternately a 96 KiB body at 32 KiB/s and an 8 KiB body in two halves 1 s apart.
//! Every one must be answered 200 and be in Kafka, and resident memory must stay within 64 MiB of
//! the idle figure.

use crate::harness::*;
use crate::scenarios::{check_kafka, Outcome};
use crate::slow_clients::{slow_client, Tally, CLIENTS, MEMORY_BOUND_KIB};
use crate::support::{Broker, Storage};
use hookstream::providers;
use hookstream::signature::Secret;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Signed deliveries of each kind per phase.
const ROUNDS: usize = 3;
/// How long the crowd has to take every slot before signed deliveries begin.
const CROWD_LEAD: Duration = Duration::from_secs(4);

/// How a signed body is sent after its headers.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// `bytes` at 32 KiB/s, in 4 KiB pieces.
    PerSecond32KiB { bytes: usize },
    /// `bytes` in two halves, 1 s apart.
    TwoHalves { bytes: usize },
}

/// A LiveSession `js_error` body with event id `id`, padded to about `bytes`.
fn body(id: &str, bytes: usize) -> Vec<u8> {
    let fixture = std::fs::read("tests/fixtures/livesession/js_error.json").expect("fixture");
    let mut json: serde_json::Value = serde_json::from_slice(&fixture).expect("fixture JSON");
    json["message_id"] = id.into();
    json["padding"] = "x".repeat(bytes.saturating_sub(fixture.len())).into();
    serde_json::to_vec(&json).expect("JSON")
}

/// Sends one signed delivery at `pace`; the status it was answered with (0: none).
async fn send_signed(port: u16, id: &str, pace: Pace) -> u16 {
    let bytes = match pace {
        Pace::PerSecond32KiB { bytes } | Pace::TwoHalves { bytes } => bytes,
    };
    let body = body(id, bytes);
    let scheme = providers::built_in("livesession")
        .expect("provider")
        .signature();
    let head = format!(
        "POST /webhooks/livesession HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}: {}\r\n\r\n",
        body.len(),
        scheme.primary_header(),
        scheme.sign_value(&body, &Secret::new(SECRET))
    );
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    if stream.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let pieces: Vec<(&[u8], Duration)> = match pace {
        Pace::PerSecond32KiB { .. } => body
            .chunks(4096)
            .map(|c| (c, Duration::from_millis(125)))
            .collect(),
        Pace::TwoHalves { .. } => {
            let (a, b) = body.split_at(body.len() / 2);
            vec![(a, Duration::from_secs(1)), (b, Duration::ZERO)]
        }
    };
    for (piece, pause) in pieces {
        if stream.write_all(piece).await.is_err() {
            return status_of(&mut stream).await;
        }
        tokio::time::sleep(pause).await;
    }
    status_of(&mut stream).await
}

/// The status code of the response on `stream`, 0 when there is none within 15 s.
async fn status_of(stream: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 1024];
        while head.len() < 12 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    if read.is_err() || head.len() < 12 {
        return 0;
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub async fn slow_signed_bodies() -> Outcome {
    let broker = Broker::start(Storage::Memory).await;
    let hookstream = Hookstream::start(&broker.brokers(), "faults-slow-signed").await;
    let warm = burst(&hookstream.url(), "warm", 500).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = hookstream.rss_kib();
    let mut peak = idle;
    let mut answers: Vec<(String, &'static str, u16)> = Vec::new();
    let phases: [(&str, Vec<Ipv4Addr>); 2] = [
        ("one address", vec![Ipv4Addr::LOCALHOST]),
        (
            "four addresses",
            (2..=5).map(|d| Ipv4Addr::new(127, 0, 0, d)).collect(),
        ),
    ];
    for (phase, addresses) in &phases {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let start_after = Duration::from_micros((i as u64 * 2_000_000) / CLIENTS as u64);
                tokio::spawn(slow_client(
                    hookstream.port,
                    true,
                    stop.clone(),
                    tally.clone(),
                    start_after,
                    addresses[i % addresses.len()],
                ))
            })
            .collect();
        tokio::time::sleep(CROWD_LEAD).await;
        for round in 0..ROUNDS {
            for (kind, pace) in [
                ("32 KiB/s", Pace::PerSecond32KiB { bytes: 96 * 1024 }),
                ("two halves", Pace::TwoHalves { bytes: 8 * 1024 }),
            ] {
                let id = format!(
                    "slow-signed-{}-{round}-{}",
                    phase.replace(' ', "-"),
                    answers.len()
                );
                let status = send_signed(hookstream.port, &id, pace).await;
                answers.push((id, kind, status));
                peak = peak.max(hookstream.rss_kib());
            }
        }
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.abort();
        }
        // Let the aborted clients' connections close before the next phase.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut problems = Vec::new();
    let refused: Vec<String> = answers
        .iter()
        .filter(|(_, _, status)| *status != 200)
        .map(|(id, kind, status)| format!("{id} ({kind}): {status}"))
        .collect();
    if !refused.is_empty() {
        problems.push(format!(
            "signed slow bodies not answered 200: {}",
            refused.join(", ")
        ));
    }
    if warm.count(200) != warm.requests {
        problems.push(format!("warm-up: {}", statuses(&warm)));
    }
    let growth = peak.saturating_sub(idle);
    if growth > MEMORY_BOUND_KIB {
        problems.push(format!(
            "resident memory grew by {} MiB (bound {} MiB)",
            growth / 1024,
            MEMORY_BOUND_KIB / 1024
        ));
    }
    let mut accepted: BTreeSet<String> = answers
        .iter()
        .filter(|(_, _, status)| *status == 200)
        .map(|(id, _, _)| id.clone())
        .collect();
    accepted.extend(accepted_ids(&warm, "warm"));
    let kafka = check_kafka(
        &hookstream,
        &broker.brokers(),
        &accepted,
        false,
        &mut problems,
    )
    .await;
    let ok = answers.iter().filter(|(_, _, s)| *s == 200).count();
    let summary = format!(
        "{CLIENTS} forged slow clients from one address, then from four; signed slow bodies answered 200: {ok}/{} (32 KiB/s and two halves 1 s apart); {kafka}; RSS idle {} MiB, peak {} MiB (+{} MiB, bound +{} MiB)",
        answers.len(),
        idle / 1024,
        peak / 1024,
        growth / 1024,
        MEMORY_BOUND_KIB / 1024,
    );
    Outcome::judged(summary, &problems)
}
