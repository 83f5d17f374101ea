//! `hookstream load`: a load generator for signed webhooks.
//!
//! Bodies are a provider's golden fixture with a unique event id per request, signed exactly as
//! the provider signs them. Without `rate` every connection sends its next request as soon as
//! the previous one was answered (closed loop); with `rate` requests are sent on a fixed
//! schedule and latency is measured from each request's *scheduled* time, so a stalled server
//! cannot hide its stall by slowing the generator down (no coordinated omission).

mod body;
mod http;
mod report;
mod tls;

pub(crate) use body::event_id_span;
pub use http::Target;
pub use report::{Outcome, Report};
pub use tls::client_config;

use crate::providers::Provider;
use crate::signature::{Secret, SignatureScheme};
use body::BodyTemplate;
use http::Connection;
use report::ConnectionStats;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Send for this long (after the warm-up).
    Duration(Duration),
    /// Send this many requests in all (the warm-up included).
    Requests(u64),
}

pub struct LoadOptions {
    pub target: Target,
    pub provider: &'static dyn Provider,
    /// Sign the provider's fixture with this scheme instead of the provider's own (a receiver
    /// other than hookstream: a benchmark peer).
    pub sign_as: Option<SignatureScheme>,
    pub secret: Secret,
    pub connections: usize,
    pub limit: Limit,
    /// Requests per second across all connections (open loop); `None` is a closed loop.
    pub rate: Option<f64>,
    /// Requests scheduled during the warm-up are sent but not counted.
    pub warmup: Duration,
    /// Sign with a wrong key: measures HTTP + body + HMAC + 401, nothing else.
    pub wrong_signature: bool,
    /// Longest wait for one response (connecting included).
    pub timeout: Duration,
    /// Event ids are `{id_prefix}-{sequence}`.
    pub id_prefix: String,
    /// Keep every request's outcome in the report (for checking which ids were accepted).
    pub record_outcomes: bool,
    /// Show progress on stderr while running.
    pub progress: bool,
    /// Whom to trust when the target is `https://` ([`client_config`]).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// The event id of request number `seq`.
pub fn event_id(prefix: &str, seq: u64) -> String {
    format!("{prefix}-{seq}")
}

/// Counters every connection updates, read by the progress display.
#[derive(Default)]
struct Shared {
    next_seq: AtomicU64,
    answered: AtomicU64,
    failed: AtomicU64,
    finished: AtomicBool,
}

struct Plan {
    options: LoadOptions,
    template: BodyTemplate,
    /// The constant start of every request, up to its signature headers.
    head: String,
    start: Instant,
    measure_from: Instant,
    end: Option<Instant>,
    /// Time between two requests of one connection (open loop).
    interval: Option<Duration>,
}

/// Runs the load and returns the report. Errors only for options that cannot work.
pub async fn run(options: LoadOptions) -> Result<Report, String> {
    if options.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if let Some(rate) = options.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err("--rate must be a positive number".into());
        }
    }
    let template = BodyTemplate::new(
        options.provider,
        options.sign_as,
        options.secret.clone(),
        options.wrong_signature,
    )?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n",
        options.target.path, options.target.host,
    );
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + options.warmup;
    let end = match options.limit {
        Limit::Duration(d) => Some(measure_from + d),
        Limit::Requests(_) => None,
    };
    let interval = options
        .rate
        .map(|rate| Duration::from_secs_f64(options.connections as f64 / rate));
    let plan = Arc::new(Plan {
        options,
        template,
        head,
        start,
        measure_from,
        end,
        interval,
    });
    let shared = Arc::new(Shared::default());
    let progress = plan
        .options
        .progress
        .then(|| tokio::spawn(report::show_progress(shared.clone(), plan.total_hint())));
    let tasks: Vec<_> = (0..plan.options.connections)
        .map(|c| tokio::spawn(drive(c, plan.clone(), shared.clone())))
        .collect();
    let mut stats = Vec::with_capacity(tasks.len());
    for task in tasks {
        stats.push(
            task.await
                .map_err(|e| format!("a connection task failed: {e}"))?,
        );
    }
    shared.finished.store(true, Ordering::Relaxed);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    Ok(Report::merge(stats, plan.options.warmup))
}

impl Plan {
    /// For the progress bar: total requests, or total seconds.
    fn total_hint(&self) -> report::Total {
        match self.options.limit {
            Limit::Requests(n) => report::Total::Requests(n),
            Limit::Duration(d) => report::Total::Seconds((d + self.options.warmup).as_secs_f64()),
        }
    }

    /// When this connection's `k`-th request is due (open loop), staggered across connections.
    fn scheduled(&self, connection: usize, k: u64) -> Option<Instant> {
        let interval = self.interval?;
        let phase = interval.mul_f64(connection as f64 / self.options.connections as f64);
        Some(self.start + phase + interval.mul_f64(k as f64))
    }

    fn request(&self, seq: u64, out: &mut Vec<u8>) {
        let id = event_id(&self.options.id_prefix, seq);
        let body = self.template.body(&id);
        out.clear();
        out.extend_from_slice(self.head.as_bytes());
        for (name, value) in self.template.signature(&body, &id) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&body);
    }
}

/// One connection's loop: schedule, send, record; reconnects after any error.
async fn drive(connection: usize, plan: Arc<Plan>, shared: Arc<Shared>) -> ConnectionStats {
    let mut stats = ConnectionStats::new(plan.options.record_outcomes);
    let mut conn: Option<Connection> = None;
    let mut request = Vec::with_capacity(8 * 1024);
    tokio::time::sleep_until(plan.start).await;
    for k in 0.. {
        let due = match plan.scheduled(connection, k) {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                at
            }
            None => Instant::now(),
        };
        if plan.end.is_some_and(|end| due >= end) {
            break;
        }
        let seq = shared.next_seq.fetch_add(1, Ordering::Relaxed);
        if matches!(plan.options.limit, Limit::Requests(n) if seq >= n) {
            break;
        }
        plan.request(seq, &mut request);
        let answer = exchange(&mut conn, &plan, &request).await;
        let status = match answer {
            Ok(status) => Some(status),
            Err((kind, detail)) => {
                stats.failed(kind, detail);
                None
            }
        };
        let counter = match status {
            Some(s) if (200..300).contains(&s) => &shared.answered,
            _ => &shared.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if due >= plan.measure_from {
            stats.record(Outcome {
                seq,
                sent_at: due.saturating_duration_since(plan.start),
                latency: due.elapsed(),
                status,
            });
        }
        if status.is_none() && plan.interval.is_none() {
            // A closed loop against a refusing server would otherwise spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stats
}

/// Sends one request within the timeout; its status, or the kind of failure and its detail (the
/// connection is then dropped, to be opened again).
async fn exchange(
    conn: &mut Option<Connection>,
    plan: &Plan,
    request: &[u8],
) -> Result<u16, (&'static str, String)> {
    let sent = tokio::time::timeout(plan.options.timeout, send(conn, plan, request)).await;
    match sent {
        Ok(Ok(response)) => {
            if response.close {
                *conn = None;
            }
            Ok(response.status)
        }
        Ok(Err(e)) => {
            *conn = None;
            Err((failure_kind(&e), e.to_string()))
        }
        Err(_) => {
            *conn = None;
            Err((
                "timeout",
                format!(
                    "no response within --timeout {}",
                    humantime::format_duration(plan.options.timeout)
                ),
            ))
        }
    }
}

/// A few kinds a person tells apart when a run fails.
fn failure_kind(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => "connection reset",
        io::ErrorKind::TimedOut => "timeout",
        _ => "I/O error",
    }
}

async fn send(
    conn: &mut Option<Connection>,
    plan: &Plan,
    request: &[u8],
) -> io::Result<http::Response> {
    let connection = match conn {
        Some(c) => c,
        None => {
            conn.insert(Connection::open(&plan.options.target, plan.options.tls.as_ref()).await?)
        }
    };
    connection.round_trip(request).await
}
